-- 0003: the audit trail of every run, backfill and admin action, and the
-- backfills in progress (so a crashed backfill resumes instead of restarting).
--
-- Audit records never hold row values. from_position and to_position are the
-- JSON form of package watermarks, as in ehrsync.positions: they can hold key
-- and cursor values, so this table is as sensitive as position_history.

CREATE TABLE ehrsync.audit (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL CHECK (actor <> ''),
    action         text        NOT NULL CHECK (action IN ('run', 'backfill', 'admin')),
    what           text        NOT NULL DEFAULT '',
    org            text,
    table_name     text,
    run_id         text,
    columns        text[],
    chunks         bigint,
    rows_inserted  bigint,
    rows_updated   bigint,
    rows_deleted   bigint,
    rows_unchanged bigint,
    from_position  jsonb,
    to_position    jsonb,
    outcome        text        NOT NULL,
    error_class    text,
    duration_ms    bigint
);

CREATE INDEX audit_table_idx ON ehrsync.audit (org, table_name, id);

COMMENT ON TABLE ehrsync.audit IS
    'Who ran or changed what: every table run, backfill and admin action. Never row values.';

-- A backfill in progress per (org, table): started by an operator, finished
-- when its re-snapshot completes. A backfill started again while its row is
-- unfinished resumes from the saved snapshot position.
CREATE TABLE ehrsync.backfills (
    org         text        NOT NULL,
    table_name  text        NOT NULL,
    actor       text        NOT NULL CHECK (actor <> ''),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (org, table_name)
);
