package cdc_test

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path through go-mssqldb: the exact T-SQL and the
// parameter types the server receives on each run, against SQL Server's
// CDC semantics held in a model (capture instances with chosen names,
// change tables with LSNs, seqvals and __$command_id, the capture agent's
// harvest, cleanup) and served over TDS.

// claimID is every test row's id; rows differ by line.
var claimID = uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")

// claimLine is a claim_lines row of practice 0001 as the model holds it.
func claimLine(line int64) map[string]any {
	return map[string]any{
		"id": mssqlmodel.GUIDWire(claimID), "line": line, "practice_id": "0001", "amount": "-125.40", "note": "note",
		"modify_timestamp": time.Date(2026, 11, 1, 8, 30, 0, 3_000_000, time.UTC),
	}
}

// cdcSource is claim_lines in a database with CDC on (the capture agent
// harvesting every commit) and its capture instance claims_v1 (not
// <schema>_<table>), served over TDS, its every request recorded.
type cdcSource struct {
	t   *testing.T
	m   *mssqlmodel.Model
	srv *mssqltest.Server
	rec *mssqltest.Recorder
}

func newCDCSource(t *testing.T) *cdcSource {
	t.Helper()
	s := &cdcSource{t: t, m: mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})}
	s.srv, s.rec = mssqltest.ServeRecorded(t, s.m)
	require.NoError(t, s.m.CreateTable(linesTable(t)))
	s.m.EnableCDCDatabase()
	_, err := s.m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v1"})
	require.NoError(t, err)
	return s
}

// commit runs do in one transaction and returns its commit LSN (the
// change rows' __$start_lsn), harvested.
func (s *cdcSource) commit(do func(tx *mssqlmodel.Tx)) watermarks.LSN {
	s.t.Helper()
	tx := s.m.Begin()
	do(tx)
	require.NoError(s.t, tx.Commit())
	return s.maxLSN()
}

// maxLSN is sys.fn_cdc_get_max_lsn().
func (s *cdcSource) maxLSN() watermarks.LSN {
	s.t.Helper()
	b := s.m.MaxLSN()
	require.Len(s.t, b, 10)
	return watermarks.LSN(b)
}

// idle moves the highest harvested LSN on with commits elsewhere (no
// change to claim_lines) and returns it.
func (s *cdcSource) idle() watermarks.LSN {
	s.t.Helper()
	before := s.maxLSN()
	for range 3 {
		s.m.Touch()
	}
	after := s.maxLSN()
	require.NotEqual(s.t, before, after)
	return after
}

// seqval returns the __$seqval of instance's change row at (lsn, command
// id).
func (s *cdcSource) seqval(instance string, lsn watermarks.LSN, cmd int64) watermarks.LSN {
	s.t.Helper()
	rows, err := s.m.ChangeRows(instance)
	require.NoError(s.t, err)
	for _, r := range rows {
		if watermarks.LSN(r["__$start_lsn"].([]byte)) == lsn && fmt.Sprint(r["__$command_id"]) == fmt.Sprint(cmd) {
			return watermarks.LSN(r["__$seqval"].([]byte))
		}
	}
	s.t.Fatalf("no change row of %s at %x command %d", instance, lsn, cmd)
	return watermarks.LSN{}
}

// extractor opens the source connection (its opening ping left out of the
// recording) and builds the extractor on it.
func (s *cdcSource) extractor(table *schemas.Table, opts cdc.Options) *cdc.Extractor {
	s.t.Helper()
	db := s.srv.Open(s.t)
	s.rec.Reset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	s.t.Cleanup(func() { mem.AssertSize(s.t, 0) })
	opts.Allocator = mem
	ext, err := cdc.New(db, table, opts)
	require.NoError(s.t, err)
	return ext
}

// requireTyped: nothing a change query compares arrives as a plain
// nvarchar (the practice is varchar, LSNs binary; PITFALLS.md P15). The
// catalog's names (schema, table, capture instance) are nvarchar, as
// sysname is.
func (s *cdcSource) requireTyped() {
	s.t.Helper()
	for i, st := range s.rec.Statements() {
		if !strings.HasPrefix(st.SQL, "DECLARE @n") && !strings.HasPrefix(st.SQL, "SELECT TOP") {
			continue
		}
		require.Empty(s.t, st.PlainNVarChar(), "statement %d: an nvarchar parameter without a cast", i+1)
		for _, p := range st.Bound()["practice_id"] {
			require.Equal(s.t, "varchar(4)", p.Type, "statement %d: %s", i+1, p.Name)
		}
	}
}

// maxChunks bounds a run: a resume that does not move on would loop.
const maxChunks = 20

type chunkSummary struct {
	rows int
	to   watermarks.Position
}

func drain(t *testing.T, ext *cdc.Extractor, pos watermarks.Position) []chunkSummary {
	t.Helper()
	chunks := 0
	out, err := extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		chunks++
		require.Less(t, chunks, maxChunks, "the run does not end")
		s := chunkSummary{to: to}
		if batch != nil {
			s.rows = int(batch.NumRows())
			if _, snapshot := to.(watermarks.Snapshot); !snapshot && pos != nil {
				sp := batch.Column(batch.Schema().FieldIndices(schemas.SourcePosColumn)[0]).(*array.Binary)
				require.Len(t, sp.Value(0), cdc.SourcePosLen)
			}
		}
		return s
	})
	require.NoError(t, err)
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	extractortest.Golden(t, *update, name, got)
}

func TestSQLServerGolden(t *testing.T) {
	tests := []struct {
		name string
		rows int // ChunkRows (0: the default)
		// setup writes the scenario and returns the run's start and the
		// chunks it must produce.
		setup func(t *testing.T, s *cdcSource) (*schemas.Table, watermarks.Position, []chunkSummary)
	}{
		{
			name: "P8 first run records the max LSN then snapshots",
			setup: func(t *testing.T, s *cdcSource) (*schemas.Table, watermarks.Position, []chunkSummary) {
				s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(1)))
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(2)))
					other := claimLine(3)
					other["practice_id"] = "0002"
					require.NoError(t, tx.Insert("dbo.claim_lines", other))
				})
				max := s.idle()
				return linesTable(t), nil, []chunkSummary{{rows: 2, to: watermarks.CDC{LSN: max, Instance: "claims_v1"}}}
			},
		},
		{
			// One source transaction of five statements; the saved position
			// is inside it, after command 3 (P4). The next chunk ends at
			// its commit, a transaction boundary, although the next
			// transaction's row was read too.
			name: "P4 resume inside a transaction then a boundary then the bound", rows: 2,
			setup: func(t *testing.T, s *cdcSource) (*schemas.Table, watermarks.Position, []chunkSummary) {
				s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(2)))
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(3)))
				})
				in := s.commit(func(tx *mssqlmodel.Tx) {
					for _, l := range []int64{10, 11, 12, 1} { // commands 1..4
						require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(l)))
					}
					u := claimLine(2) // command 5
					u["note"] = "changed"
					require.NoError(t, tx.Update("dbo.claim_lines", u))
				})
				s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Delete("dbo.claim_lines", claimLine(3)))
				})
				max := s.idle()
				pos := watermarks.CDC{LSN: in, CommandID: 3, Seqval: s.seqval("claims_v1", in, 3), Op: 2, Instance: "claims_v1"}
				return linesTable(t), pos, []chunkSummary{
					{rows: 2, to: watermarks.CDC{LSN: in, Instance: "claims_v1"}},
					{rows: 1, to: watermarks.CDC{LSN: max, Instance: "claims_v1"}},
				}
			},
		},
		{
			// A column is added and a second capture instance created for
			// it mid-window (P7): the old instance is read up to the new
			// one's start, then the new one.
			name: "P7 read the old instance to the new instance start then switch", rows: 10,
			setup: func(t *testing.T, s *cdcSource) (*schemas.Table, watermarks.Position, []chunkSummary) {
				from := s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(1)))
				})
				s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(2)))
				})
				table := mustTable(t, "claim_lines", []string{"id", "line"}, []colSpec{
					{"id", "uniqueidentifier"}, {"line", "int"}, {"practice_id", "char(4)"},
					{"amount", "numeric(19,2)"}, {"note", "varchar(40)"}, {"modify_timestamp", "datetime"}, {"status", "varchar(8)"},
				})
				status, ok := table.Column("status")
				require.True(t, ok)
				require.NoError(t, s.m.AddColumn("dbo.claim_lines", status))
				start, err := s.m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v2"})
				require.NoError(t, err)
				s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Update("dbo.claim_lines", map[string]any{"id": mssqlmodel.GUIDWire(claimID), "line": int64(2), "status": "PAID"}))
				})
				max := s.idle()
				return table, watermarks.CDC{LSN: from, Instance: "claims_v1"}, []chunkSummary{
					{rows: 1, to: watermarks.CDC{LSN: watermarks.LSN(start), Instance: "claims_v2"}},
					{rows: 1, to: watermarks.CDC{LSN: max, Instance: "claims_v2"}},
				}
			},
		},
		{
			name: "P3 idle heartbeat",
			setup: func(t *testing.T, s *cdcSource) (*schemas.Table, watermarks.Position, []chunkSummary) {
				from := s.commit(func(tx *mssqlmodel.Tx) {
					require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(1)))
				})
				max := s.idle()
				return linesTable(t), watermarks.CDC{LSN: from, Instance: "claims_v1"}, []chunkSummary{
					{to: watermarks.CDC{LSN: max, Instance: "claims_v1"}},
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newCDCSource(t)
			table, pos, want := tc.setup(t, s)
			ext := s.extractor(table, cdc.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: tc.rows}})
			got := drain(t, ext, pos)
			if pos == nil {
				require.Len(t, got, 1)
				snap, ok := got[0].to.(watermarks.CDC)
				require.True(t, ok, "a one-chunk snapshot ends at its resume position: %v", got[0].to)
				got[0].to = snap
			}
			require.Equal(t, want, got)
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), s.rec.Transcript())
			s.requireTyped()
		})
	}
}

// TestSQLServerP1Expired: a saved LSN below the minimum of its capture
// instance, raised by the cleanup job, is ErrExpired, and no change table
// is read: cleaned up before the run (the catalog's start_lsn has risen),
// and cleaned up during Open, after the catalog was read and before
// sys.fn_cdc_get_min_lsn(instance), which the run checks on its own.
func TestSQLServerP1Expired(t *testing.T) {
	for _, during := range []bool{false, true} {
		name := "cleanup before the run"
		if during {
			name = "cleanup during Open"
		}
		t.Run(name, func(t *testing.T) {
			s := newCDCSource(t)
			from := s.commit(func(tx *mssqlmodel.Tx) {
				require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(1)))
			})
			low := s.commit(func(tx *mssqlmodel.Tx) {
				require.NoError(t, tx.Insert("dbo.claim_lines", claimLine(2)))
			})
			cleanup := func() { require.NoError(t, s.m.CleanupCDC("claims_v1", low[:])) }
			if !during {
				cleanup()
			}
			ext := s.extractor(linesTable(t), cdc.Options{})
			if during {
				s.rec.Before(func(ev mssqltest.Event) {
					if strings.HasPrefix(ev.SQL, "SELECT sys.fn_cdc_get_min_lsn") {
						cleanup()
						s.rec.Before(nil)
					}
				})
			}
			_, err := ext.Open(context.Background(), watermarks.CDC{LSN: from})
			require.ErrorIs(t, err, extractors.ErrExpired)
			var ee *extractors.ExpiredError
			require.ErrorAs(t, err, &ee)
			if during {
				require.ErrorContains(t, err, fmt.Sprintf("claims_v1's minimum 0x%X", low[:]))
			} else {
				require.ErrorContains(t, err, fmt.Sprintf("below the start LSN 0x%X of capture instance claims_v1", low[:]))
			}
			require.NotEmpty(t, s.rec.Statements())
			for _, st := range s.rec.Statements() {
				require.False(t, strings.HasPrefix(st.SQL, "DECLARE"), "no change table read after an expired check")
			}
		})
	}
}
