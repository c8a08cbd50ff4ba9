-- 0008: the indexes a first snapshot builds after its load.
--
-- A table empty at the start of its first snapshot is loaded without its
-- primary key and secondary indexes, which are built when the snapshot pass
-- ends, in the transaction of its last chunk. One row per such table while
-- its pass runs: the statements that build its indexes again, and the
-- position of the last chunk loaded, which a resumed pass continues from.
-- It holds no row data: names, index definitions and a position (which
-- names a key only as the snapshot's last key, like ehrsync.positions).

CREATE TABLE ehrsync.deferred_indexes (
    schema_name text    NOT NULL CHECK (schema_name <> ''),
    table_name  text    NOT NULL CHECK (table_name <> ''),
    -- ALTER TABLE … ADD CONSTRAINT … and CREATE INDEX … statements, in
    -- the order they run (the primary key first).
    definitions text[]  NOT NULL,
    -- The encoded position of the last chunk loaded; NULL before the first.
    loaded_to   bytea,
    deferred_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);

COMMENT ON TABLE ehrsync.deferred_indexes IS
    'Tables in their first snapshot, loaded without indexes: the statements that build them at the pass''s end, and the last chunk loaded. Never row values.';
