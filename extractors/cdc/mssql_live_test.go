package cdc_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceSQLServer runs the conformance suite against a live SQL
// Server test database. The login must be able to enable CDC
// (sys.sp_cdc_enable_db needs sysadmin, sys.sp_cdc_enable_table db_owner)
// and SQL Server Agent must run the capture job. Each suite table gets CDC
// enabled when the suite first builds its extractor, and the test waits
// for the capture instance's start LSN; the suite's convergence loop then
// waits for the capture job to harvest each change.
//
// Heartbeat is off: the suite's idle bump writes a table without CDC, which
// need not move the highest harvested LSN of a live capture job;
// TestConformanceModel and TestP3IdleTableAdvancesToWindowBound prove P3
// for CDC. The expired-position case needs a cleanup a live run cannot
// force, and skips.
func TestConformanceSQLServer(t *testing.T) {
	dsn := os.Getenv(extractortest.EnvMSSQLDSN)
	if dsn == "" {
		t.Skip(extractortest.EnvMSSQLDSN + " is not set: no SQL Server to run against")
	}
	src := extractortest.SQLServer(t, dsn)
	db := src.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := db.ExecContext(ctx, `IF (SELECT is_cdc_enabled FROM sys.databases WHERE database_id = DB_ID()) = 0
	EXEC sys.sp_cdc_enable_db`)
	require.NoError(t, err)
	extractortest.Run(t, src, extractortest.Subject{
		New: func(db *sql.DB, _ schemas.Dialect, table *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			enableTable(t, db, table)
			return cdc.New(db, table, cdc.Options{Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator}})
		},
		SeesDeletes: true,
		ErrPosition: cdc.ErrPosition,
		Native:      watermarks.CDC{},
	})
}

// enableTable enables CDC on table (capturing every column, no gating
// role) unless it is, and waits until its capture instance has a start LSN.
func enableTable(t *testing.T, db *sql.DB, table *schemas.Table) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := db.ExecContext(ctx, `IF NOT EXISTS (SELECT 1 FROM cdc.change_tables WHERE source_object_id = OBJECT_ID(QUOTENAME(@p1) + '.' + QUOTENAME(@p2)))
	EXEC sys.sp_cdc_enable_table @source_schema = @p1, @source_name = @p2, @role_name = NULL, @supports_net_changes = 0`,
		table.Schema, table.Name)
	require.NoError(t, err)
	src := &cdc.SQLServer{DB: db}
	require.Eventually(t, func() bool {
		ins, err := src.Instances(ctx, table.Schema, table.Name)
		return err == nil && len(ins) > 0 && !ins[0].StartLSN.IsZero()
	}, 50*time.Second, 500*time.Millisecond, "capture instance of %s has no start LSN: is SQL Server Agent running?", table.QualifiedName())
}
