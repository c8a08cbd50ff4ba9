package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
)

// otherSentinel is in every text value of another practice's rows: no
// store table, change log or output may hold it.
const otherSentinel = "OtherPr4ctice-S3ntinel"

// TestPracticesStayApartEveryStrategy: one organization
// (practice 0001) syncs a SQL Server database shared with practice 0002,
// through the real binary and go-mssqldb, with each strategy (CDC, Change
// Tracking, the rowversion high-water mark, the keyset snapshot) and a
// change log on every table. Another practice's rows, updates, deletes and
// a row moved out of the organization never leave a trace in the
// organization's schema: its tables hold exactly the organization's rows,
// and its change logs only their changes.
func TestPracticesStayApartEveryStrategy(t *testing.T) {
	ctx := context.Background()
	storeURL := pgtest.URL(t)
	store, err := pgxpool.New(ctx, storeURL)
	require.NoError(t, err)
	t.Cleanup(store.Close)
	require.NoError(t, storedb.Migrate(ctx, store))

	m := mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true, SnapshotIsolation: true})
	m.EnableCDCDatabase()
	m.EnableCTDatabase()
	strategies := []struct{ table, strategy string }{
		{"visits_cdc", "cdc"}, {"visits_ct", "change_tracking"}, {"visits_rv", "hwm"}, {"visits_snap", "snapshot"},
	}
	dir := t.TempDir()
	var catalogs []string
	var tables strings.Builder
	for _, s := range strategies {
		cols := []extractortest.Column{{Name: "id", Type: "int"}, {Name: "practice_id", Type: "char(4)"}, {Name: "note", Type: "varchar(80)", Nullable: true}}
		tb := &schemas.Table{Schema: "dbo", Name: s.table, Dialect: schemas.SQLServer, Key: []string{"id"}, Practice: "practice_id"}
		if s.strategy == "hwm" {
			cols = append(cols, extractortest.Column{Name: "row_timestamp", Type: "rowversion"})
			tb.RowVersion = "row_timestamp"
		}
		tb = extractortest.DeclareTable(t, tb, cols)
		require.NoError(t, m.CreateTable(tb))
		switch s.strategy {
		case "cdc":
			_, err := m.EnableCDC(mssqlmodel.CaptureInstance{Table: tb.QualifiedName()})
			require.NoError(t, err)
		case "change_tracking":
			require.NoError(t, m.EnableCT(tb.QualifiedName()))
		}
		path := filepath.Join(dir, s.table+".yaml")
		require.NoError(t, os.WriteFile(path, []byte(catalogFile(tb)), 0o600))
		catalogs = append(catalogs, path)
		reconcile := ""
		if s.strategy == "hwm" || s.strategy == "snapshot" {
			reconcile = ", reconcile_every: 1ns" // blind to deletes
		}
		fmt.Fprintf(&tables, "      - {name: dbo.%s, strategy: %s, change_log: true%s}\n", s.table, s.strategy, reconcile)
	}
	srv := mssqltest.Serve(t, m)
	config := filepath.Join(dir, "ehrsync.yaml")
	require.NoError(t, os.WriteFile(config, []byte(tdsConfig(srv.Source, catalogs, 3, "0001", tables.String())), 0o600))
	sync := func() {
		t.Helper()
		require.NotContains(t, syncTDS(t, config, storeURL), otherSentinel, "another practice's value reached the output")
	}
	write := func(do func(tx *mssqlmodel.Tx, table string)) {
		t.Helper()
		tx := m.Begin()
		for _, s := range strategies {
			do(tx, "dbo."+s.table)
		}
		require.NoError(t, tx.Commit())
	}
	row := func(id int, practice, note string) map[string]any {
		if practice != "0001" {
			note += " " + otherSentinel
		}
		return map[string]any{"id": int64(id), "practice_id": practice, "note": note}
	}
	ins := func(tx *mssqlmodel.Tx, table string, rows ...map[string]any) {
		for _, r := range rows {
			require.NoError(t, tx.Insert(table, r))
		}
	}

	// Day one: both practices' rows; the first sync snapshots.
	write(func(tx *mssqlmodel.Tx, table string) {
		ins(tx, table, row(1, "0001", "ours"), row(2, "0002", "theirs"), row(3, "0001", "ours, moving out"),
			row(4, "0002", "theirs, deleted"), row(5, "0001", "ours, deleted"), row(6, "0002", "theirs, updated"))
	})
	sync()
	// Day two: changes in both practices, and a row moved out.
	write(func(tx *mssqlmodel.Tx, table string) {
		ins(tx, table, row(7, "0001", "ours, new"), row(8, "0002", "theirs, new"))
		require.NoError(t, tx.Update(table, row(1, "0001", "ours, updated")))
		require.NoError(t, tx.Update(table, row(6, "0002", "theirs, updated again")))
		require.NoError(t, tx.Update(table, row(3, "0002", "moved out")))
		require.NoError(t, tx.Delete(table, row(4, "0002", "")))
		require.NoError(t, tx.Delete(table, row(5, "0001", "")))
	})
	sync()

	schema := pgx.Identifier{strings.ReplaceAll(org, "-", "_")}
	for _, s := range strategies {
		t.Run(s.strategy, func(t *testing.T) {
			// The source's rows of practice 0001.
			var want []string
			rows, err := m.Rows("dbo." + s.table)
			require.NoError(t, err)
			for _, r := range rows {
				if r["practice_id"] == "0001" {
					want = append(want, fmt.Sprintf("%v|%v|%v", r["id"], r["practice_id"], r["note"]))
				}
			}
			sort.Strings(want)
			got := queryStrings(t, store, "SELECT id::text || '|' || practice_id || '|' || note FROM "+
				append(schema, s.table).Sanitize()+" ORDER BY 1")
			require.Equal(t, want, got, "the store holds exactly the organization's rows")

			// The change log: only changes of rows the organization held,
			// and no value of another practice.
			log := queryStrings(t, store, "SELECT id::text || ':' || _ehrsync_op || ':' || coalesce(practice_id, '') || ':' || coalesce(note, '') FROM "+
				append(schema, s.table+"__changes").Sanitize()+" ORDER BY _ehrsync_change_id")
			require.NotEmpty(t, log)
			for _, l := range log {
				require.NotContains(t, l, otherSentinel, "another practice's value is in the change log")
				require.False(t, strings.HasPrefix(l, "2:") || strings.HasPrefix(l, "4:") || strings.HasPrefix(l, "6:") || strings.HasPrefix(l, "8:"),
					"a change of a row the organization never held is in the change log: %s", l)
			}
			// The moved-out row left the store, and its removal is logged.
			require.Contains(t, strings.Join(log, "\n"), "3:delete:")
		})
	}
	// Nothing anywhere in the organization's schema holds another
	// practice's value.
	crossed := 0
	for _, s := range strategies {
		for _, tbl := range []string{s.table, s.table + "__changes"} {
			n := queryStrings(t, store, "SELECT count(*)::text FROM "+append(schema, tbl).Sanitize()+" t WHERE t::text LIKE '%"+otherSentinel+"%'")
			require.Equal(t, []string{"0"}, n, "%s holds another practice's value", tbl)
			if n[0] != "0" {
				crossed++
			}
		}
	}
	const section = "Security: practices stay apart"
	figure(section, "strategies (each with a change log)", "cdc, change_tracking, hwm, snapshot")
	figure(section, "tables isolated (tables and change logs)", 2*len(strategies))
	figure(section, "practices crossed (rows or change-log entries of another practice in the schema)", crossed)
}

// queryStrings runs a query of one text column and returns its values.
func queryStrings(t *testing.T, pool *pgxpool.Pool, query string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), query)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}
