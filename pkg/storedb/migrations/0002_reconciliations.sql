-- When each table's keys were last reconciled with the source (PITFALLS P11),
-- and what that found.
CREATE TABLE ehrsync.reconciliations (
    org         text NOT NULL,
    table_name  text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    source_keys bigint NOT NULL,
    deleted     bigint NOT NULL,
    actor       text NOT NULL CHECK (actor <> ''),
    PRIMARY KEY (org, table_name)
);
