package changetracking_test

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceSQLServer runs the shared conformance suite against a live
// SQL Server (a test database: the suite creates and drops its own tables).
// It turns change tracking on for the database (ALTER DATABASE … SET
// CHANGE_TRACKING = ON) and for each table the suite creates (ALTER TABLE …
// ENABLE CHANGE_TRACKING) before its first run.
//
// Two cases are weaker here than in TestConformanceModel: the suite's idle
// heartbeat moves the database by writing an untracked table, which does
// not move CHANGE_TRACKING_CURRENT_VERSION() (P3 is proven against the
// model); and the expired-position case needs a cleanup a live run cannot
// force, and skips. The foreign-position case does not offer a CT
// position (Native), which is this extractor's own kind.
func TestConformanceSQLServer(t *testing.T) {
	dsn := os.Getenv(extractortest.EnvMSSQLDSN)
	if dsn == "" {
		t.Skip(extractortest.EnvMSSQLDSN + " is not set: no SQL Server to run against")
	}
	src := extractortest.SQLServer(t, dsn)
	db := src.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var cur sql.NullInt64
	require.NoError(t, db.QueryRowContext(ctx, "SELECT CHANGE_TRACKING_CURRENT_VERSION()").Scan(&cur))
	if !cur.Valid {
		_, err := db.ExecContext(ctx, "ALTER DATABASE CURRENT SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 2 DAYS, AUTO_CLEANUP = ON)")
		require.NoError(t, err)
	}
	extractortest.Run(t, src, extractortest.Subject{
		New: func(db *sql.DB, _ schemas.Dialect, tb *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			enableTracking(t, db, tb)
			return changetracking.NewSQLServer(db, tb, changetracking.Options{
				Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator},
			})
		},
		SeesDeletes: true,
		Native:      watermarks.CT{},
	})
}

// enableTracking turns change tracking on for tb unless it is on.
func enableTracking(t *testing.T, db *sql.DB, tb *schemas.Table) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "[" + strings.ReplaceAll(tb.Schema, "]", "]]") + "].[" + strings.ReplaceAll(tb.Name, "]", "]]") + "]"
	var on bool
	require.NoError(t, db.QueryRowContext(ctx,
		"SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(@p1)) THEN 1 ELSE 0 END AS bit)",
		name).Scan(&on))
	if !on {
		_, err := db.ExecContext(ctx, "ALTER TABLE "+name+" ENABLE CHANGE_TRACKING")
		require.NoError(t, err)
	}
}
