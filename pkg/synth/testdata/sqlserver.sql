-- Synthetic NextGen source (ehrsync pkg/synth). Generated: do not edit.
-- Run in the target database; CDC needs sysadmin and SQL Server Agent.
IF OBJECT_ID(N'dbo.charges', N'U') IS NULL
CREATE TABLE [dbo].[charges] (
    [charge_id] uniqueidentifier NOT NULL,
    [practice_id] char(4) NOT NULL,
    [source_id] uniqueidentifier NULL,
    [source_type] char(1) NULL,
    [person_id] uniqueidentifier NULL,
    [service_item_id] varchar(12) NOT NULL,
    [cpt4_code_id] varchar(13) NULL,
    [modifier_1] char(2) NULL,
    [modifier_2] char(2) NULL,
    [icd9cm_code_id] varchar(10) NULL,
    [quantity] numeric(19,2) NULL,
    [unit_price] numeric(19,2) NULL,
    [amt] numeric(19,2) NOT NULL,
    [cob1_amt] numeric(19,2) NULL,
    [pat_amt] numeric(19,2) NULL,
    [begin_date_of_service] varchar(8) NULL,
    [end_date_of_service] varchar(8) NULL,
    [status] char(1) NULL,
    [link_id] uniqueidentifier NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_charges] PRIMARY KEY CLUSTERED ([charge_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.charges') AND name = N'IX_charges_row_timestamp')
CREATE INDEX [IX_charges_row_timestamp] ON [dbo].[charges] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.charges') AND name = N'IX_charges_modify_timestamp')
CREATE INDEX [IX_charges_modify_timestamp] ON [dbo].[charges] ([modify_timestamp], [charge_id]);
GO
IF OBJECT_ID(N'dbo.claims', N'U') IS NULL
CREATE TABLE [dbo].[claims] (
    [claim_id] uniqueidentifier NOT NULL,
    [practice_id] char(4) NOT NULL,
    [claim_id_nbr] numeric(12,0) NOT NULL,
    [enc_id] uniqueidentifier NOT NULL,
    [payer_id] uniqueidentifier NULL,
    [cob] int NOT NULL,
    [claim_type] char(2) NULL,
    [status] varchar(10) NOT NULL,
    [editing_state] char(1) NULL,
    [rebill_ind] char(1) NOT NULL,
    [resubmission_code] char(1) NULL,
    [payer_claim_control_nbr] varchar(50) NULL,
    [cob1_recent_paid_date] varchar(8) NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_claims] PRIMARY KEY CLUSTERED ([claim_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.claims') AND name = N'IX_claims_row_timestamp')
CREATE INDEX [IX_claims_row_timestamp] ON [dbo].[claims] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.claims') AND name = N'IX_claims_modify_timestamp')
CREATE INDEX [IX_claims_modify_timestamp] ON [dbo].[claims] ([modify_timestamp], [claim_id]);
GO
IF OBJECT_ID(N'dbo.patient_encounter', N'U') IS NULL
CREATE TABLE [dbo].[patient_encounter] (
    [enc_id] uniqueidentifier NOT NULL,
    [practice_id] char(4) NOT NULL,
    [person_id] uniqueidentifier NOT NULL,
    [enc_nbr] numeric(12,0) NOT NULL,
    [enc_timestamp] datetime NOT NULL,
    [billable_ind] char(1) NOT NULL,
    [billable_timestamp] datetime NULL,
    [enc_status] char(1) NULL,
    [cob1_payer_id] uniqueidentifier NULL,
    [location_id] uniqueidentifier NULL,
    [rendering_provider_id] uniqueidentifier NULL,
    [admit_date] varchar(8) NULL,
    [discharge_date] varchar(8) NULL,
    [remarks] varchar(80) NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_patient_encounter] PRIMARY KEY CLUSTERED ([enc_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.patient_encounter') AND name = N'IX_patient_encounter_row_timestamp')
CREATE INDEX [IX_patient_encounter_row_timestamp] ON [dbo].[patient_encounter] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.patient_encounter') AND name = N'IX_patient_encounter_modify_timestamp')
CREATE INDEX [IX_patient_encounter_modify_timestamp] ON [dbo].[patient_encounter] ([modify_timestamp], [enc_id]);
GO
IF OBJECT_ID(N'dbo.payer_mstr', N'U') IS NULL
CREATE TABLE [dbo].[payer_mstr] (
    [payer_id] uniqueidentifier NOT NULL,
    [payer_name] varchar(40) NOT NULL,
    [plan_name] varchar(40) NULL,
    [payer_nbr] varchar(20) NULL,
    [financial_class] uniqueidentifier NULL,
    [ins_type] char(2) NULL,
    [delete_ind] char(1) NOT NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_payer_mstr] PRIMARY KEY CLUSTERED ([payer_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.payer_mstr') AND name = N'IX_payer_mstr_row_timestamp')
CREATE INDEX [IX_payer_mstr_row_timestamp] ON [dbo].[payer_mstr] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.payer_mstr') AND name = N'IX_payer_mstr_modify_timestamp')
CREATE INDEX [IX_payer_mstr_modify_timestamp] ON [dbo].[payer_mstr] ([modify_timestamp], [payer_id]);
GO
IF OBJECT_ID(N'dbo.reason_code_links', N'U') IS NULL
CREATE TABLE [dbo].[reason_code_links] (
    [trans_id] uniqueidentifier NOT NULL,
    [charge_id] uniqueidentifier NOT NULL,
    [reason_code_id] uniqueidentifier NOT NULL,
    [seq_nbr] smallint NOT NULL,
    [practice_id] char(4) NOT NULL,
    [group_code] char(2) NOT NULL,
    [adj_amt] numeric(19,2) NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    CONSTRAINT [PK_reason_code_links] PRIMARY KEY CLUSTERED ([trans_id], [charge_id], [reason_code_id], [seq_nbr])
);
GO
IF OBJECT_ID(N'dbo.reason_code_mstr', N'U') IS NULL
CREATE TABLE [dbo].[reason_code_mstr] (
    [reason_code_id] uniqueidentifier NOT NULL,
    [code] varchar(10) NOT NULL,
    [code_type] char(1) NOT NULL,
    [description] varchar(255) NULL,
    [denial_category] varchar(30) NULL,
    [delete_ind] char(1) NOT NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_reason_code_mstr] PRIMARY KEY CLUSTERED ([reason_code_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.reason_code_mstr') AND name = N'IX_reason_code_mstr_row_timestamp')
CREATE INDEX [IX_reason_code_mstr_row_timestamp] ON [dbo].[reason_code_mstr] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.reason_code_mstr') AND name = N'IX_reason_code_mstr_modify_timestamp')
CREATE INDEX [IX_reason_code_mstr_modify_timestamp] ON [dbo].[reason_code_mstr] ([modify_timestamp], [reason_code_id]);
GO
IF OBJECT_ID(N'dbo.tran_code_mstr', N'U') IS NULL
CREATE TABLE [dbo].[tran_code_mstr] (
    [tran_code_id] uniqueidentifier NOT NULL,
    [type] char(1) NOT NULL,
    [source] char(1) NOT NULL,
    [description] varchar(40) NOT NULL,
    [sign_type] smallint NOT NULL,
    [delete_ind] char(1) NOT NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_tran_code_mstr] PRIMARY KEY CLUSTERED ([tran_code_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.tran_code_mstr') AND name = N'IX_tran_code_mstr_row_timestamp')
CREATE INDEX [IX_tran_code_mstr_row_timestamp] ON [dbo].[tran_code_mstr] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.tran_code_mstr') AND name = N'IX_tran_code_mstr_modify_timestamp')
CREATE INDEX [IX_tran_code_mstr_modify_timestamp] ON [dbo].[tran_code_mstr] ([modify_timestamp], [tran_code_id]);
GO
IF OBJECT_ID(N'dbo.trans_detail', N'U') IS NULL
CREATE TABLE [dbo].[trans_detail] (
    [trans_detail_id] uniqueidentifier NOT NULL,
    [practice_id] char(4) NOT NULL,
    [trans_id] uniqueidentifier NOT NULL,
    [charge_id] uniqueidentifier NOT NULL,
    [source_id] uniqueidentifier NULL,
    [source_type] char(1) NULL,
    [paid_amt] numeric(19,2) NULL,
    [adj_amt] numeric(19,2) NULL,
    [allowed_amt] numeric(19,2) NULL,
    [deduct_amt] numeric(19,2) NULL,
    [post_ind] char(1) NOT NULL,
    [trans_status] char(1) NULL,
    [rebill_ind] char(1) NULL,
    [reason_codes_display_only] varchar(1000) NULL,
    [ln_lvl_remarks] varchar(1000) NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_trans_detail] PRIMARY KEY CLUSTERED ([trans_detail_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.trans_detail') AND name = N'IX_trans_detail_row_timestamp')
CREATE INDEX [IX_trans_detail_row_timestamp] ON [dbo].[trans_detail] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.trans_detail') AND name = N'IX_trans_detail_modify_timestamp')
CREATE INDEX [IX_trans_detail_modify_timestamp] ON [dbo].[trans_detail] ([modify_timestamp], [trans_detail_id]);
GO
IF OBJECT_ID(N'dbo.transactions', N'U') IS NULL
CREATE TABLE [dbo].[transactions] (
    [trans_id] uniqueidentifier NOT NULL,
    [practice_id] char(4) NOT NULL,
    [source_id] uniqueidentifier NULL,
    [source_type] char(1) NULL,
    [batch_nbr] char(4) NULL,
    [batch_date] varchar(8) NULL,
    [person_id] uniqueidentifier NULL,
    [payer_id] uniqueidentifier NULL,
    [tran_date] datetime NOT NULL,
    [type] char(1) NOT NULL,
    [tran_code_id] uniqueidentifier NOT NULL,
    [tran_amt] numeric(19,2) NOT NULL,
    [post_ind] char(1) NOT NULL,
    [post_date] varchar(8) NULL,
    [era_post_ind] char(1) NOT NULL,
    [reversal_trans_id] uniqueidentifier NULL,
    [claim_id] uniqueidentifier NULL,
    [clp_status_code] varchar(2) NULL,
    [reason_codes_display_only] varchar(1000) NULL,
    [created_by] int NOT NULL,
    [create_timestamp] datetime NOT NULL,
    [modified_by] int NOT NULL,
    [modify_timestamp] datetime NOT NULL,
    [row_timestamp] rowversion NOT NULL,
    CONSTRAINT [PK_transactions] PRIMARY KEY CLUSTERED ([trans_id])
);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.transactions') AND name = N'IX_transactions_row_timestamp')
CREATE INDEX [IX_transactions_row_timestamp] ON [dbo].[transactions] ([row_timestamp]);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(N'dbo.transactions') AND name = N'IX_transactions_modify_timestamp')
CREATE INDEX [IX_transactions_modify_timestamp] ON [dbo].[transactions] ([modify_timestamp], [trans_id]);
GO
IF OBJECT_ID(N'dbo.synth_state', N'U') IS NULL
CREATE TABLE [dbo].[synth_state] (
    [id] smallint NOT NULL PRIMARY KEY,
    [state] nvarchar(max) NOT NULL,
    [updated_at] datetime2(3) NOT NULL DEFAULT SYSUTCDATETIME()
);
GO
ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())
    ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 3 DAYS, AUTO_CLEANUP = ON);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.charges'))
    ALTER TABLE [dbo].[charges] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.transactions'))
    ALTER TABLE [dbo].[transactions] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.trans_detail'))
    ALTER TABLE [dbo].[trans_detail] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(N'dbo.reason_code_links'))
    ALTER TABLE [dbo].[reason_code_links] ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF);
GO
IF (SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()) = 0
    EXEC sys.sp_cdc_enable_db;
GO
IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'dbo_claims')
    EXEC sys.sp_cdc_enable_table
        @source_schema = N'dbo',
        @source_name = N'claims',
        @capture_instance = N'dbo_claims',
        @role_name = NULL,
        @supports_net_changes = 1;
GO
IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = N'dbo_reason_code_links')
    EXEC sys.sp_cdc_enable_table
        @source_schema = N'dbo',
        @source_name = N'reason_code_links',
        @capture_instance = N'dbo_reason_code_links',
        @role_name = NULL,
        @supports_net_changes = 1;
GO
