-- 0005: a tamper-evident audit that cannot be skipped (issue 17).
--
-- ehrsync.audit and ehrsync.position_history are append-only: a trigger
-- refuses UPDATE, DELETE and TRUNCATE on them, whoever asks. The role
-- ehrsync writes with (store.url) does not own them when the schema is
-- migrated by a separate owner role (store.owner_url, ehrsync migrate), so
-- it can neither drop nor disable these triggers; the owner can, and does
-- so only inside `ehrsync audit prune`'s own transaction.
--
-- Each audit row carries the sha256 of a canonical encoding of its fields
-- and of the row before it (prev_hash), computed here by a trigger, so
-- that every insert is chained whoever makes it. Inserting transactions
-- serialize on the one row of ehrsync.audit_chain (locked FOR UPDATE until
-- they commit), which also gives each row its id: ids increase along the
-- chain. `ehrsync audit verify` recomputes every hash in Go, independently
-- of these functions (package audit, Hash).
--
-- The canonical encoding (version 1): the bytes 'ehrsync.audit v1', the
-- previous hash (32 bytes), then each field in the order below as
--   NULL:   0x00
--   text:   0x01, its UTF-8 length (4 bytes, big-endian), its UTF-8 bytes
--   bigint: 0x01, the value (8 bytes, big-endian two's complement)
--   text[]: 0x01, the element count (4 bytes), each element as text
-- with `at` as microseconds since the Unix epoch (bigint) and the
-- positions as the text of their jsonb. A later migration that adds a
-- column to the audit defines version 2 for the rows it writes.

CREATE FUNCTION ehrsync.audit_text(v text) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\x00'::bytea
        ELSE '\x01'::bytea || int4send(octet_length(convert_to(v, 'UTF8'))) || convert_to(v, 'UTF8') END
$$;

CREATE FUNCTION ehrsync.audit_int(v bigint) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\x00'::bytea ELSE '\x01'::bytea || int8send(v) END
$$;

CREATE FUNCTION ehrsync.audit_texts(v text[]) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL THEN '\x00'::bytea
        ELSE '\x01'::bytea || int4send(coalesce(cardinality(v), 0))
            || coalesce((SELECT string_agg(ehrsync.audit_text(e), ''::bytea ORDER BY i)
                         FROM unnest(v) WITH ORDINALITY AS u(e, i)), ''::bytea) END
$$;

ALTER TABLE ehrsync.audit
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;

CREATE FUNCTION ehrsync.audit_hash(prev bytea, a ehrsync.audit) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to('ehrsync.audit v1', 'UTF8') || prev
        || ehrsync.audit_int(a.id)
        || ehrsync.audit_int((extract(epoch FROM a.at) * 1000000)::bigint)
        || ehrsync.audit_text(a.actor)
        || ehrsync.audit_text(a.action)
        || ehrsync.audit_text(a.what)
        || ehrsync.audit_text(a.org)
        || ehrsync.audit_text(a.table_name)
        || ehrsync.audit_text(a.run_id)
        || ehrsync.audit_texts(a.columns)
        || ehrsync.audit_int(a.chunks)
        || ehrsync.audit_int(a.rows_inserted)
        || ehrsync.audit_int(a.rows_updated)
        || ehrsync.audit_int(a.rows_deleted)
        || ehrsync.audit_int(a.rows_unchanged)
        || ehrsync.audit_text(a.from_position::text)
        || ehrsync.audit_text(a.to_position::text)
        || ehrsync.audit_text(a.outcome)
        || ehrsync.audit_text(a.error_class)
        || ehrsync.audit_int(a.duration_ms))
$$;

-- The chain's state, one row: its head (the last row and its hash) and its
-- anchor (the last row `ehrsync audit prune` removed and its hash, which
-- the first row kept names as prev_hash; 32 zero bytes before any prune).
CREATE TABLE ehrsync.audit_chain (
    one         boolean     PRIMARY KEY DEFAULT true CHECK (one),
    head_id     bigint,
    head_hash   bytea       NOT NULL CHECK (octet_length(head_hash) = 32),
    anchor_id   bigint,
    anchor_hash bytea       NOT NULL CHECK (octet_length(anchor_hash) = 32),
    pruned_at   timestamptz
);

COMMENT ON TABLE ehrsync.audit_chain IS
    'The head and anchor of the hash chain of ehrsync.audit (ehrsync audit verify).';

-- Chain the rows written before this migration, in id order.
DO $$
DECLARE
    r    ehrsync.audit;
    prev bytea := decode(repeat('00', 32), 'hex');
    last bigint;
BEGIN
    FOR r IN SELECT * FROM ehrsync.audit ORDER BY id LOOP
        UPDATE ehrsync.audit SET prev_hash = prev, hash = ehrsync.audit_hash(prev, r) WHERE id = r.id
            RETURNING hash INTO prev;
        last := r.id;
    END LOOP;
    INSERT INTO ehrsync.audit_chain (head_id, head_hash, anchor_hash)
        VALUES (last, prev, decode(repeat('00', 32), 'hex'));
END
$$;

ALTER TABLE ehrsync.audit
    ALTER COLUMN prev_hash SET NOT NULL,
    ALTER COLUMN hash SET NOT NULL,
    -- The chain trigger draws the id under the chain's lock.
    ALTER COLUMN id DROP DEFAULT;

-- Runs as the schema's owner (SECURITY DEFINER): the writer role needs no
-- privilege on audit_chain, and cannot move its head.
CREATE FUNCTION ehrsync.audit_chain_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    head ehrsync.audit_chain;
BEGIN
    SELECT * INTO head FROM ehrsync.audit_chain FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ehrsync.audit_chain has no row: the audit chain cannot be extended';
    END IF;
    NEW.id := nextval('ehrsync.audit_id_seq');
    NEW.at := now();
    NEW.prev_hash := head.head_hash;
    NEW.hash := ehrsync.audit_hash(NEW.prev_hash, NEW);
    UPDATE ehrsync.audit_chain SET head_id = NEW.id, head_hash = NEW.hash;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_chain BEFORE INSERT ON ehrsync.audit
    FOR EACH ROW EXECUTE FUNCTION ehrsync.audit_chain_insert();

CREATE FUNCTION ehrsync.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'ehrsync audit prune removes rows past their retention, run as the schema owner';
END
$$;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ehrsync.audit
    FOR EACH STATEMENT EXECUTE FUNCTION ehrsync.refuse_change();
CREATE TRIGGER position_history_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ehrsync.position_history
    FOR EACH STATEMENT EXECUTE FUNCTION ehrsync.refuse_change();
CREATE TRIGGER audit_chain_append_only BEFORE DELETE OR TRUNCATE ON ehrsync.audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION ehrsync.refuse_change();

CREATE INDEX audit_at_idx ON ehrsync.audit (at);
CREATE INDEX position_history_at_idx ON ehrsync.position_history (at);
