-- 0009: the change lake's catalog and state.
--
-- Schema ehrsync_lake holds the Iceberg SQL catalog (the tables and
-- columns of Apache Iceberg's JDBC catalog, which iceberg-go's SQL catalog
-- shares): which metadata file is each lake table's current one. Spark,
-- Trino and others open the lake through a JDBC catalog on this schema.
-- No row values: names and file locations.

CREATE SCHEMA ehrsync_lake;

CREATE TABLE ehrsync_lake.iceberg_tables (
    catalog_name               varchar(255)  NOT NULL,
    table_namespace            varchar(255)  NOT NULL,
    table_name                 varchar(255)  NOT NULL,
    iceberg_type               varchar(5),
    metadata_location          varchar(1000),
    previous_metadata_location varchar(1000),
    PRIMARY KEY (catalog_name, table_namespace, table_name)
);

CREATE TABLE ehrsync_lake.iceberg_namespace_properties (
    catalog_name   varchar(255)  NOT NULL,
    namespace      varchar(255)  NOT NULL,
    property_key   varchar(255)  NOT NULL,
    property_value varchar(1000),
    PRIMARY KEY (catalog_name, namespace, property_key)
);

-- One row per lake table: its last commit as ehrsync made it, for status
-- and the admin API. The Iceberg table's own ehrsync.claim property is
-- what a flush trusts; this row follows it.
CREATE TABLE ehrsync.lake_tables (
    org          text        NOT NULL CHECK (org <> ''),
    table_name   text        NOT NULL CHECK (table_name <> ''),
    claim        bigint      NOT NULL,
    snapshot_id  bigint      NOT NULL,
    position     bytea,       -- NULL until a commit moved the table's position
    rows         bigint      NOT NULL,
    committed_at timestamptz NOT NULL,
    PRIMARY KEY (org, table_name)
);

COMMENT ON TABLE ehrsync.lake_tables IS
    'The change lake''s last commit per table: claim number, Iceberg snapshot, the position it covers, rows. Never row values beyond a position.';

-- Lake commits are audited (action lake).
ALTER TABLE ehrsync.audit DROP CONSTRAINT audit_action_check;
ALTER TABLE ehrsync.audit ADD CONSTRAINT audit_action_check CHECK (action IN ('run', 'backfill', 'admin', 'lake'));

-- The store's identity: a lake table records the store that writes it
-- (its ehrsync.store property), and a flush from another store refuses it
-- (two stores counting claims on one table would lose rows).
CREATE TABLE ehrsync.store_identity (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now(),
    one        boolean     NOT NULL DEFAULT true UNIQUE CHECK (one)
);
INSERT INTO ehrsync.store_identity DEFAULT VALUES;
