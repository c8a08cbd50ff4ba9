CREATE SCHEMA IF NOT EXISTS "dbo";

CREATE TABLE IF NOT EXISTS "dbo"."charges" (
    "charge_id" uuid NOT NULL,
    "practice_id" character(4) NOT NULL,
    "source_id" uuid,
    "source_type" character(1),
    "person_id" uuid,
    "service_item_id" character varying(12) NOT NULL,
    "cpt4_code_id" character varying(13),
    "modifier_1" character(2),
    "modifier_2" character(2),
    "icd9cm_code_id" character varying(10),
    "quantity" numeric(19,2),
    "unit_price" numeric(19,2),
    "amt" numeric(19,2) NOT NULL,
    "cob1_amt" numeric(19,2),
    "pat_amt" numeric(19,2),
    "begin_date_of_service" character varying(8),
    "end_date_of_service" character varying(8),
    "status" character(1),
    "link_id" uuid,
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("charge_id")
);
CREATE OR REPLACE FUNCTION "dbo"."charges_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "charges_row_timestamp" ON "dbo"."charges";
CREATE TRIGGER "charges_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."charges" FOR EACH ROW EXECUTE FUNCTION "dbo"."charges_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "charges_row_timestamp_idx" ON "dbo"."charges" ("row_timestamp", "charge_id");
CREATE INDEX IF NOT EXISTS "charges_modify_timestamp_idx" ON "dbo"."charges" ("modify_timestamp", "charge_id");

CREATE TABLE IF NOT EXISTS "dbo"."claims" (
    "claim_id" uuid NOT NULL,
    "practice_id" character(4) NOT NULL,
    "claim_id_nbr" numeric(12,0) NOT NULL,
    "enc_id" uuid NOT NULL,
    "payer_id" uuid,
    "cob" integer NOT NULL,
    "claim_type" character(2),
    "status" character varying(10) NOT NULL,
    "editing_state" character(1),
    "rebill_ind" character(1) NOT NULL,
    "resubmission_code" character(1),
    "payer_claim_control_nbr" character varying(50),
    "cob1_recent_paid_date" character varying(8),
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("claim_id")
);
CREATE OR REPLACE FUNCTION "dbo"."claims_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "claims_row_timestamp" ON "dbo"."claims";
CREATE TRIGGER "claims_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."claims" FOR EACH ROW EXECUTE FUNCTION "dbo"."claims_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "claims_row_timestamp_idx" ON "dbo"."claims" ("row_timestamp", "claim_id");
CREATE INDEX IF NOT EXISTS "claims_modify_timestamp_idx" ON "dbo"."claims" ("modify_timestamp", "claim_id");

CREATE TABLE IF NOT EXISTS "dbo"."patient_encounter" (
    "enc_id" uuid NOT NULL,
    "practice_id" character(4) NOT NULL,
    "person_id" uuid NOT NULL,
    "enc_nbr" numeric(12,0) NOT NULL,
    "enc_timestamp" timestamp(3) without time zone NOT NULL,
    "billable_ind" character(1) NOT NULL,
    "billable_timestamp" timestamp(3) without time zone,
    "enc_status" character(1),
    "cob1_payer_id" uuid,
    "location_id" uuid,
    "rendering_provider_id" uuid,
    "admit_date" character varying(8),
    "discharge_date" character varying(8),
    "remarks" character varying(80),
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("enc_id")
);
CREATE OR REPLACE FUNCTION "dbo"."patient_encounter_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "patient_encounter_row_timestamp" ON "dbo"."patient_encounter";
CREATE TRIGGER "patient_encounter_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."patient_encounter" FOR EACH ROW EXECUTE FUNCTION "dbo"."patient_encounter_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "patient_encounter_row_timestamp_idx" ON "dbo"."patient_encounter" ("row_timestamp", "enc_id");
CREATE INDEX IF NOT EXISTS "patient_encounter_modify_timestamp_idx" ON "dbo"."patient_encounter" ("modify_timestamp", "enc_id");

CREATE TABLE IF NOT EXISTS "dbo"."payer_mstr" (
    "payer_id" uuid NOT NULL,
    "payer_name" character varying(40) NOT NULL,
    "plan_name" character varying(40),
    "payer_nbr" character varying(20),
    "financial_class" uuid,
    "ins_type" character(2),
    "delete_ind" character(1) NOT NULL,
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("payer_id")
);
CREATE OR REPLACE FUNCTION "dbo"."payer_mstr_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "payer_mstr_row_timestamp" ON "dbo"."payer_mstr";
CREATE TRIGGER "payer_mstr_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."payer_mstr" FOR EACH ROW EXECUTE FUNCTION "dbo"."payer_mstr_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "payer_mstr_row_timestamp_idx" ON "dbo"."payer_mstr" ("row_timestamp", "payer_id");
CREATE INDEX IF NOT EXISTS "payer_mstr_modify_timestamp_idx" ON "dbo"."payer_mstr" ("modify_timestamp", "payer_id");

CREATE TABLE IF NOT EXISTS "dbo"."reason_code_links" (
    "trans_id" uuid NOT NULL,
    "charge_id" uuid NOT NULL,
    "reason_code_id" uuid NOT NULL,
    "seq_nbr" smallint NOT NULL,
    "practice_id" character(4) NOT NULL,
    "group_code" character(2) NOT NULL,
    "adj_amt" numeric(19,2),
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    PRIMARY KEY ("trans_id", "charge_id", "reason_code_id", "seq_nbr")
);

CREATE TABLE IF NOT EXISTS "dbo"."reason_code_mstr" (
    "reason_code_id" uuid NOT NULL,
    "code" character varying(10) NOT NULL,
    "code_type" character(1) NOT NULL,
    "description" character varying(255),
    "denial_category" character varying(30),
    "delete_ind" character(1) NOT NULL,
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("reason_code_id")
);
CREATE OR REPLACE FUNCTION "dbo"."reason_code_mstr_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "reason_code_mstr_row_timestamp" ON "dbo"."reason_code_mstr";
CREATE TRIGGER "reason_code_mstr_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."reason_code_mstr" FOR EACH ROW EXECUTE FUNCTION "dbo"."reason_code_mstr_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "reason_code_mstr_row_timestamp_idx" ON "dbo"."reason_code_mstr" ("row_timestamp", "reason_code_id");
CREATE INDEX IF NOT EXISTS "reason_code_mstr_modify_timestamp_idx" ON "dbo"."reason_code_mstr" ("modify_timestamp", "reason_code_id");

CREATE TABLE IF NOT EXISTS "dbo"."tran_code_mstr" (
    "tran_code_id" uuid NOT NULL,
    "type" character(1) NOT NULL,
    "source" character(1) NOT NULL,
    "description" character varying(40) NOT NULL,
    "sign_type" smallint NOT NULL,
    "delete_ind" character(1) NOT NULL,
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("tran_code_id")
);
CREATE OR REPLACE FUNCTION "dbo"."tran_code_mstr_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "tran_code_mstr_row_timestamp" ON "dbo"."tran_code_mstr";
CREATE TRIGGER "tran_code_mstr_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."tran_code_mstr" FOR EACH ROW EXECUTE FUNCTION "dbo"."tran_code_mstr_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "tran_code_mstr_row_timestamp_idx" ON "dbo"."tran_code_mstr" ("row_timestamp", "tran_code_id");
CREATE INDEX IF NOT EXISTS "tran_code_mstr_modify_timestamp_idx" ON "dbo"."tran_code_mstr" ("modify_timestamp", "tran_code_id");

CREATE TABLE IF NOT EXISTS "dbo"."trans_detail" (
    "trans_detail_id" uuid NOT NULL,
    "practice_id" character(4) NOT NULL,
    "trans_id" uuid NOT NULL,
    "charge_id" uuid NOT NULL,
    "source_id" uuid,
    "source_type" character(1),
    "paid_amt" numeric(19,2),
    "adj_amt" numeric(19,2),
    "allowed_amt" numeric(19,2),
    "deduct_amt" numeric(19,2),
    "post_ind" character(1) NOT NULL,
    "trans_status" character(1),
    "rebill_ind" character(1),
    "reason_codes_display_only" character varying(1000),
    "ln_lvl_remarks" character varying(1000),
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("trans_detail_id")
);
CREATE OR REPLACE FUNCTION "dbo"."trans_detail_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "trans_detail_row_timestamp" ON "dbo"."trans_detail";
CREATE TRIGGER "trans_detail_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."trans_detail" FOR EACH ROW EXECUTE FUNCTION "dbo"."trans_detail_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "trans_detail_row_timestamp_idx" ON "dbo"."trans_detail" ("row_timestamp", "trans_detail_id");
CREATE INDEX IF NOT EXISTS "trans_detail_modify_timestamp_idx" ON "dbo"."trans_detail" ("modify_timestamp", "trans_detail_id");

CREATE TABLE IF NOT EXISTS "dbo"."transactions" (
    "trans_id" uuid NOT NULL,
    "practice_id" character(4) NOT NULL,
    "source_id" uuid,
    "source_type" character(1),
    "batch_nbr" character(4),
    "batch_date" character varying(8),
    "person_id" uuid,
    "payer_id" uuid,
    "tran_date" timestamp(3) without time zone NOT NULL,
    "type" character(1) NOT NULL,
    "tran_code_id" uuid NOT NULL,
    "tran_amt" numeric(19,2) NOT NULL,
    "post_ind" character(1) NOT NULL,
    "post_date" character varying(8),
    "era_post_ind" character(1) NOT NULL,
    "reversal_trans_id" uuid,
    "claim_id" uuid,
    "clp_status_code" character varying(2),
    "reason_codes_display_only" character varying(1000),
    "created_by" integer NOT NULL,
    "create_timestamp" timestamp(3) without time zone NOT NULL,
    "modified_by" integer NOT NULL,
    "modify_timestamp" timestamp(3) without time zone NOT NULL,
    "row_timestamp" bigint NOT NULL,
    PRIMARY KEY ("trans_id")
);
CREATE OR REPLACE FUNCTION "dbo"."transactions_set_row_timestamp"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW."row_timestamp" := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS "transactions_row_timestamp" ON "dbo"."transactions";
CREATE TRIGGER "transactions_row_timestamp" BEFORE INSERT OR UPDATE ON "dbo"."transactions" FOR EACH ROW EXECUTE FUNCTION "dbo"."transactions_set_row_timestamp"();
CREATE INDEX IF NOT EXISTS "transactions_row_timestamp_idx" ON "dbo"."transactions" ("row_timestamp", "trans_id");
CREATE INDEX IF NOT EXISTS "transactions_modify_timestamp_idx" ON "dbo"."transactions" ("modify_timestamp", "trans_id");
CREATE TABLE IF NOT EXISTS "dbo"."synth_state" (
    id smallint PRIMARY KEY,
    state text NOT NULL,
    updated_at timestamp with time zone NOT NULL DEFAULT now()
);
