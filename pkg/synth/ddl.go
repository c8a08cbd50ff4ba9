package synth

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/schemas"
)

// StateTable is the table, in the catalog tables' schema, that holds a
// simulation's State (one row). It is not part of the catalog [X].
const StateTable = "synth_state"

// PostgresType returns the PostgreSQL source type of column c of t: the
// closest type to its SQL Server type (varchar(n) stays varchar(n); the
// rest as the store maps it), and bigint for the rowversion column.
func PostgresType(t *schemas.Table, c schemas.Column) (string, error) {
	if t.Dialect == schemas.Postgres {
		return c.Type.String(), nil
	}
	if strings.EqualFold(c.Name, t.RowVersion) {
		return "bigint", nil
	}
	switch c.Type.Name {
	case "varchar", "nvarchar":
		if c.Type.Length > 0 {
			return fmt.Sprintf("character varying(%d)", c.Type.Length), nil
		}
		return "text", nil
	}
	m, err := schemas.Map(t.Dialect, c.Type)
	if err != nil {
		return "", fmt.Errorf("table %s column %s: %w", t.QualifiedName(), c.Name, err)
	}
	return m.Postgres, nil
}

func pgIdent(parts ...string) string { return pgx.Identifier(parts).Sanitize() }

// schemasOf returns the distinct schemas of the catalog's tables, in order.
func schemasOf(cat *schemas.Catalog) []string {
	var out []string
	for _, t := range cat.Tables() {
		if !containsFold(out, t.Schema) {
			out = append(out, t.Schema)
		}
	}
	return out
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// PostgresDDL returns the statements that create the catalog's tables in
// PostgreSQL (see the package comment), and the synth_state table in the
// schema of the first table. Statements end with ";\n"; the text runs as
// one multi-statement Exec. Creating is idempotent.
func PostgresDDL(cat *schemas.Catalog) (string, error) {
	var b strings.Builder
	for _, s := range schemasOf(cat) {
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\n", pgIdent(s))
	}
	for _, t := range cat.Tables() {
		if err := pgTable(&b, t); err != nil {
			return "", err
		}
	}
	if ts := cat.Tables(); len(ts) > 0 {
		fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s (\n    id smallint PRIMARY KEY,\n    state text NOT NULL,\n    updated_at timestamp with time zone NOT NULL DEFAULT now()\n);\n",
			pgIdent(ts[0].Schema, StateTable))
	}
	return b.String(), nil
}

func pgTable(b *strings.Builder, t *schemas.Table) error {
	name := pgIdent(t.Schema, t.Name)
	fmt.Fprintf(b, "\nCREATE TABLE IF NOT EXISTS %s (\n", name)
	for _, c := range t.Columns {
		typ, err := PostgresType(t, c)
		if err != nil {
			return err
		}
		null := ""
		if !c.Nullable {
			null = " NOT NULL"
		}
		fmt.Fprintf(b, "    %s %s%s,\n", pgIdent(c.Name), typ, null)
	}
	key := make([]string, len(t.Key))
	for i, k := range t.Key {
		key[i] = pgIdent(k)
	}
	fmt.Fprintf(b, "    PRIMARY KEY (%s)\n);\n", strings.Join(key, ", "))
	if t.RowVersion != "" {
		fn := pgIdent(t.Schema, t.Name+"_set_"+t.RowVersion)
		fmt.Fprintf(b, "CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$\n"+
			"BEGIN\n    NEW.%s := pg_current_xact_id()::text::bigint;\n    RETURN NEW;\nEND\n$$;\n", fn, pgIdent(t.RowVersion))
		trg := pgIdent(t.Name + "_" + t.RowVersion)
		fmt.Fprintf(b, "DROP TRIGGER IF EXISTS %s ON %s;\n", trg, name)
		fmt.Fprintf(b, "CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s();\n", trg, name, fn)
		// All rows of one transaction share the row version, so high-water
		// marks page by (row version, key): the index serves that order.
		fmt.Fprintf(b, "CREATE INDEX IF NOT EXISTS %s ON %s (%s, %s);\n", pgIdent(t.Name+"_"+t.RowVersion+"_idx"), name, pgIdent(t.RowVersion), strings.Join(key, ", "))
	}
	if t.ModifiedAt != "" {
		fmt.Fprintf(b, "CREATE INDEX IF NOT EXISTS %s ON %s (%s, %s);\n", pgIdent(t.Name+"_"+t.ModifiedAt+"_idx"), name, pgIdent(t.ModifiedAt), strings.Join(key, ", "))
	}
	return nil
}

// CreatePostgres creates the catalog's tables (and synth_state) in the
// database of pool, in one transaction.
func CreatePostgres(ctx context.Context, pool *pgxpool.Pool, cat *schemas.Catalog) error {
	ddl, err := PostgresDDL(cat)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, ddl)
		return err
	})
	if err != nil {
		return fmt.Errorf("create synthetic source: %w", err)
	}
	return nil
}

// SQLServerOptions choose what SQLServerDDL enables.
type SQLServerOptions struct {
	// CDCTables get a CDC capture instance (sys.sp_cdc_enable_table); default
	// claims and reason_code_links. Set to an empty non-nil slice for none.
	CDCTables []string
	// CTTables get Change Tracking; default charges, transactions,
	// trans_detail and reason_code_links. Empty non-nil: none.
	CTTables []string
	// CTRetentionDays is the Change Tracking retention; default 3.
	CTRetentionDays int
	// NoSnapshotIsolation leaves ALLOW_SNAPSHOT_ISOLATION alone; by default
	// it is turned on, as Change Tracking readers need snapshot isolation
	// for consistent reads.
	NoSnapshotIsolation bool
}

func (o SQLServerOptions) withDefaults() SQLServerOptions {
	if o.CDCTables == nil {
		o.CDCTables = []string{tClaims, tReasonLinks}
	}
	if o.CTTables == nil {
		o.CTTables = []string{tCharges, tTransactions, tTransDetail, tReasonLinks}
	}
	if o.CTRetentionDays <= 0 {
		o.CTRetentionDays = 3
	}
	return o
}

func msIdent(parts ...string) string {
	q := make([]string, len(parts))
	for i, p := range parts {
		q[i] = "[" + strings.ReplaceAll(p, "]", "]]") + "]"
	}
	return strings.Join(q, ".")
}

func msString(s string) string { return "N'" + strings.ReplaceAll(s, "'", "''") + "'" }

// SQLServerStatements returns the T-SQL batches that create the catalog's
// tables with their exact types, primary keys and rowversion columns, the
// synth_state table, and enable CDC and Change Tracking as opts say, in the
// current database. Each runs as one batch (ExecContext), in order, and
// each is idempotent, so the script can run again on a staging database.
// Enabling CDC needs sysadmin (sp_cdc_enable_db) and SQL Server Agent for
// the capture job.
func SQLServerStatements(cat *schemas.Catalog, opts SQLServerOptions) ([]string, error) {
	opts = opts.withDefaults()
	var out []string
	for _, s := range schemasOf(cat) {
		if strings.EqualFold(s, "dbo") {
			continue
		}
		out = append(out, fmt.Sprintf("IF SCHEMA_ID(%s) IS NULL EXEC(%s)", msString(s), msString("CREATE SCHEMA "+msIdent(s))))
	}
	tables := cat.Tables()
	for _, t := range tables {
		if t.Dialect != schemas.SQLServer {
			return nil, fmt.Errorf("table %s is in dialect %s, not sqlserver", t.QualifiedName(), t.Dialect)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "IF OBJECT_ID(%s, N'U') IS NULL\nCREATE TABLE %s (\n", msString(t.Schema+"."+t.Name), msIdent(t.Schema, t.Name))
		for _, c := range t.Columns {
			null := " NULL"
			if !c.Nullable {
				null = " NOT NULL"
			}
			fmt.Fprintf(&b, "    %s %s%s,\n", msIdent(c.Name), c.Type.String(), null)
		}
		key := make([]string, len(t.Key))
		for i, k := range t.Key {
			key[i] = msIdent(k)
		}
		fmt.Fprintf(&b, "    CONSTRAINT %s PRIMARY KEY CLUSTERED (%s)\n)", msIdent("PK_"+t.Name), strings.Join(key, ", "))
		out = append(out, b.String())
		index := func(name, cols string) {
			out = append(out, fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE object_id = OBJECT_ID(%s) AND name = %s)\n"+
				"CREATE INDEX %s ON %s (%s)", msString(t.Schema+"."+t.Name), msString(name), msIdent(name), msIdent(t.Schema, t.Name), cols))
		}
		if t.RowVersion != "" {
			index("IX_"+t.Name+"_"+t.RowVersion, msIdent(t.RowVersion))
		}
		if t.ModifiedAt != "" {
			index("IX_"+t.Name+"_"+t.ModifiedAt, msIdent(t.ModifiedAt)+", "+strings.Join(key, ", "))
		}
	}
	if len(tables) > 0 {
		out = append(out, fmt.Sprintf("IF OBJECT_ID(%s, N'U') IS NULL\nCREATE TABLE %s (\n    [id] smallint NOT NULL PRIMARY KEY,\n    [state] nvarchar(max) NOT NULL,\n    [updated_at] datetime2(3) NOT NULL DEFAULT SYSUTCDATETIME()\n)",
			msString(tables[0].Schema+"."+StateTable), msIdent(tables[0].Schema, StateTable)))
	}
	if !opts.NoSnapshotIsolation {
		out = append(out, "ALTER DATABASE CURRENT SET ALLOW_SNAPSHOT_ISOLATION ON")
	}
	find := func(name string) (*schemas.Table, error) {
		t, ok := cat.Table(name)
		if !ok {
			var names []string
			for _, t := range cat.Tables() {
				names = append(names, t.QualifiedName())
			}
			return nil, fmt.Errorf("table %s is not in the catalog (want one of %s)", name, strings.Join(names, ", "))
		}
		return t, nil
	}
	if len(opts.CTTables) > 0 {
		out = append(out, fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_databases WHERE database_id = DB_ID())\n"+
			"    ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = %d DAYS, AUTO_CLEANUP = ON)", opts.CTRetentionDays))
		for _, name := range opts.CTTables {
			t, err := find(name)
			if err != nil {
				return nil, err
			}
			out = append(out, fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(%s))\n"+
				"    ALTER TABLE %s ENABLE CHANGE_TRACKING WITH (TRACK_COLUMNS_UPDATED = OFF)", msString(t.Schema+"."+t.Name), msIdent(t.Schema, t.Name)))
		}
	}
	if len(opts.CDCTables) > 0 {
		out = append(out, "IF (SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()) = 0\n    EXEC sys.sp_cdc_enable_db")
		for _, name := range opts.CDCTables {
			t, err := find(name)
			if err != nil {
				return nil, err
			}
			instance := msString(t.Schema + "_" + t.Name)
			out = append(out, fmt.Sprintf("IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE capture_instance = %s)\n"+
				"    EXEC sys.sp_cdc_enable_table\n"+
				"        @source_schema = %s,\n        @source_name = %s,\n        @capture_instance = %s,\n"+
				"        @role_name = NULL,\n        @supports_net_changes = 1",
				instance, msString(t.Schema), msString(t.Name), instance))
		}
	}
	return out, nil
}

// SQLServerDDL returns SQLServerStatements as one script, the batches
// separated by GO lines (for sqlcmd or SSMS).
func SQLServerDDL(cat *schemas.Catalog, opts SQLServerOptions) (string, error) {
	stmts, err := SQLServerStatements(cat, opts)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("-- Synthetic NextGen source (ehrsync pkg/synth). Generated: do not edit.\n")
	b.WriteString("-- Run in the target database; CDC needs sysadmin and SQL Server Agent.\n")
	for _, s := range stmts {
		b.WriteString(s)
		b.WriteString(";\nGO\n")
	}
	return b.String(), nil
}
