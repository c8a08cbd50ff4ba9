-- A read-only analytics role for one organization's tables in the ehrsync
-- store: it may read every table and view of that organization's schema,
-- present and future, and nothing else (no other organization's schema,
-- nothing in schema ehrsync: positions, position history and the audit
-- hold key values). See docs/operations-store.md, "A reader per
-- organization, from deploy/sql".
--
-- Run it with psql, as a superuser (or a role with CREATEROLE that is a
-- member of the writer role), on the store database, once the
-- organization's schema exists (after `ehrsync migrate`, or the
-- organization's first sync), and again whenever you like (it is
-- idempotent):
--
--   psql "$STORE_ADMIN_URL" -X -v ON_ERROR_STOP=1 \
--     -v org_schema=st_mary -v reader=st_mary_reader -v writer=ehrsync_writer \
--     -f deploy/sql/reader-role.sql
--
--   org_schema  the organization's schema: its name with - as _ (st-mary: st_mary)
--   reader      the analytics role; created NOLOGIN when it does not exist
--               (then: ALTER ROLE st_mary_reader LOGIN PASSWORD '...')
--   writer      the role ehrsync writes with (store.url's): the reader may
--               read the tables and views it creates later too
--
-- The variables are psql's: :"name" is the value quoted as an identifier,
-- :'name' as a literal, so any role or schema name is safe here.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I NOLOGIN', :'reader')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader') \gexec

SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reader') \gexec

GRANT USAGE ON SCHEMA :"org_schema" TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA :"org_schema" TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"writer" IN SCHEMA :"org_schema" GRANT SELECT ON TABLES TO :"reader";

-- Nothing of ehrsync's own state, whatever was granted before.
REVOKE ALL ON ALL TABLES IN SCHEMA ehrsync FROM :"reader";
REVOKE ALL ON SCHEMA ehrsync FROM :"reader";
