-- 0001: each table's sync position, and the history of every move.
--
-- Positions are the JSON form of package watermarks (watermarks.Encode):
-- {"v": 1, "kind": "cdc" | "ct" | "cursor" | "snapshot", ...}. They hold key
-- and cursor values, which are row data: these tables are as sensitive as the
-- synced tables.

CREATE SCHEMA IF NOT EXISTS ehrsync;

-- The current position of each (org, table). No row: never synced, or reset
-- by an operator (the next run starts with a full snapshot).
CREATE TABLE ehrsync.positions (
    org        text        NOT NULL CHECK (org <> ''),
    table_name text        NOT NULL CHECK (table_name <> ''),
    kind       text        NOT NULL CHECK (kind IN ('cdc', 'ct', 'cursor', 'snapshot')),
    position   jsonb       NOT NULL CHECK (jsonb_typeof(position) = 'object' AND position ->> 'kind' = kind),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL,
    PRIMARY KEY (org, table_name)
);

COMMENT ON TABLE ehrsync.positions IS
    'Current sync position per (org, table), written in the transaction that applies the rows it covers (watermarks.Store).';

-- Every move of a position: a sync or snapshot chunk, a backfill, an
-- operator's reset (to_position NULL) or rewind. Append-only; rows outlive
-- the position they describe.
CREATE TABLE ehrsync.position_history (
    id            bigserial   PRIMARY KEY,
    org           text        NOT NULL,
    table_name    text        NOT NULL,
    from_position jsonb,
    to_position   jsonb,
    reason        text        NOT NULL CHECK (reason IN ('sync', 'snapshot', 'backfill', 'reset', 'rewind')),
    actor         text        NOT NULL CHECK (actor <> ''),
    run_id        text,
    rows          bigint      CHECK (rows >= 0),
    note          text,
    at            timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX position_history_table_idx ON ehrsync.position_history (org, table_name, id);

COMMENT ON TABLE ehrsync.position_history IS
    'Every move of a sync position: who or what moved it, from where to where, why, and how many rows it covered.';
