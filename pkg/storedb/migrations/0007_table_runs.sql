-- 0007: each table's last run, for `ehrsync status`.
--
-- One row per (org, table), replaced by the engine at the end of each
-- attempt of the table (a retry is an attempt; a source that could not be
-- reached fails an attempt of every table the run was to sync). It holds
-- no row data: names, the run's id and actor, times, the outcome, the error
-- class (engine.Class, never an error's text) and row counts. The audit
-- keeps every run; this keeps the last one, and what status needs across
-- runs: when the table last succeeded and since when it has been failing.

CREATE TABLE ehrsync.table_runs (
    org           text        NOT NULL CHECK (org <> ''),
    table_name    text        NOT NULL CHECK (table_name <> ''),
    run_id        text        NOT NULL,
    actor         text        NOT NULL CHECK (actor <> ''),
    strategy      text        NOT NULL DEFAULT '',
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    -- ok; expired: the position had expired and the table was
    -- re-snapshotted (a success); failed; canceled.
    outcome       text        NOT NULL CHECK (outcome IN ('ok', 'expired', 'failed', 'canceled')),
    error_class   text,
    rows          bigint      NOT NULL CHECK (rows >= 0),
    rows_inserted bigint      NOT NULL CHECK (rows_inserted >= 0),
    rows_updated  bigint      NOT NULL CHECK (rows_updated >= 0),
    rows_deleted  bigint      NOT NULL CHECK (rows_deleted >= 0),
    -- When the last successful attempt (ok or expired) finished.
    last_ok_at    timestamptz,
    -- Failed attempts since the last successful one (a canceled attempt
    -- neither counts nor resets them), and when the first of them began.
    failures      integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    failing_since timestamptz,
    PRIMARY KEY (org, table_name)
);

COMMENT ON TABLE ehrsync.table_runs IS
    'The last run of each (org, table): outcome, error class, rows; last success and failing streak (ehrsync status). Never row values.';
