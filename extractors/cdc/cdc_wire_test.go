package cdc_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// CDC's permissions and capture-agent health over the wire: the extractor
// reads a SQL Server model (package mssqlmodel) served over TDS on
// loopback, through ehrsync's own source connection and go-mssqldb. The
// login is mssqltest.User with only the roles and grants each case names.

// wireServer is a model served over TDS whose handler can run a hook
// before each statement (to change the model between two statements of
// one run).
type wireServer struct {
	*mssqltest.Server
	pool *sql.DB // ehrsync's source connection to it
	h    *mssqlmodel.Handler
	mu   sync.Mutex
	hook func(req *tdstest.Request)
}

func (s *wireServer) setHook(f func(req *tdstest.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = f
}

func (s *wireServer) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(req)
	}
	return s.h.Handle(ctx, req)
}

func (s *wireServer) Begin(ss *tdstest.Session, iso tdstest.Isolation) error {
	return s.h.Begin(ss, iso)
}
func (s *wireServer) Commit(ss *tdstest.Session) error   { return s.h.Commit(ss) }
func (s *wireServer) Rollback(ss *tdstest.Session) error { return s.h.Rollback(ss) }

func serveCDC(t *testing.T, opts mssqlmodel.Options) *wireServer {
	t.Helper()
	m := mssqlmodel.New(opts)
	s := &wireServer{h: m.Handler()}
	s.Server = mssqltest.ServeHandler(t, m, s)
	s.pool = s.Open(t)
	return s
}

// wireTable is the table of these tests, dbo.t.
func wireTable(t *testing.T) *schemas.Table {
	return extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"id"}},
		[]extractortest.Column{{Name: "id", Type: "int"}, {Name: "note", Type: "varchar(20)", Nullable: true}})
}

func wireInsert(t *testing.T, m *mssqlmodel.Model, ids ...int) {
	t.Helper()
	tx := m.Begin()
	for _, id := range ids {
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": id, "note": "n"}))
	}
	require.NoError(t, tx.Commit())
}

// wireRun runs a CDC extractor of tb over the wire from *pos to the end.
func wireRun(t *testing.T, s *wireServer, tb *schemas.Table, pos *watermarks.Position) (rows int, err error) {
	t.Helper()
	ext, err := cdc.New(s.pool, tb, cdc.Options{Bounds: extractors.Bounds{ChunkRows: 10}})
	require.NoError(t, err)
	_, err = extractortest.SyncRun(t, ext, tb, pos, 0, "empty batch", func(b arrow.RecordBatch, _ watermarks.Reason) error {
		if b != nil {
			rows += int(b.NumRows())
		}
		return nil
	})
	return rows, err
}

// TestWireD9MinLSNWithoutSelectNamesTheGrant (D9): sys.fn_cdc_get_min_lsn
// answers zero both for a capture instance that is gone and for a login
// without SELECT on the captured table. Without SELECT the run fails with
// a *cdc.PermissionError naming GRANT SELECT ON [dbo].[t], never with an
// ExpiredError (which would re-snapshot, and fail again, every run); with
// SELECT, an instance really gone is an ExpiredError.
func TestWireD9MinLSNWithoutSelectNamesTheGrant(t *testing.T) {
	cases := []struct {
		name string
		// change runs after the first run, before the incremental one.
		change  func(t *testing.T, s *wireServer)
		perm    string // the PermissionError's grant; "" for none
		expired string // the ExpiredError's reason holds it; "" for none
		tracked bool   // errors.Is(err, cdc.ErrNotTracked)
	}{
		{name: "SELECT revoked, the table still visible",
			change: func(t *testing.T, s *wireServer) {
				// VIEW DEFINITION keeps the table in sys.tables, so the
				// capture instance is listed and only the min LSN says no.
				require.NoError(t, s.Model.Grant(mssqltest.User, "VIEW DEFINITION", "dbo.t"))
				require.NoError(t, s.Model.Revoke(mssqltest.User, "SELECT", "dbo.t"))
			},
			perm: "GRANT SELECT ON [dbo].[t] TO <login>"},
		{name: "SELECT revoked, the table hidden",
			change: func(t *testing.T, s *wireServer) {
				// No permission at all: sys.tables hides the table, so no
				// capture instance is listed either.
				require.NoError(t, s.Model.Revoke(mssqltest.User, "SELECT", "dbo.t"))
			},
			perm: "GRANT SELECT ON [dbo].[t] TO <login>"},
		{name: "SELECT denied",
			change: func(t *testing.T, s *wireServer) {
				require.NoError(t, s.Model.Grant(mssqltest.User, "VIEW DEFINITION", "dbo.t"))
				require.NoError(t, s.Model.Deny(mssqltest.User, "SELECT", "dbo.t"))
			},
			perm: "GRANT SELECT ON [dbo].[t] TO <login>"},
		{name: "with SELECT, the instance dropped after it was listed",
			change: func(t *testing.T, s *wireServer) {
				// Dropped between the run's listing of the instances and
				// its minimum-LSN check.
				var once sync.Once
				s.setHook(func(req *tdstest.Request) {
					if strings.Contains(req.SQL, "sys.fn_cdc_get_min_lsn") {
						once.Do(func() { s.Model.DisableCDC("t_v1") })
					}
				})
			},
			expired: "sys.fn_cdc_get_min_lsn answers no LSN for capture instance t_v1: it no longer exists"},
		{name: "with SELECT, the position's instance dropped for a newer one",
			change: func(t *testing.T, s *wireServer) {
				_, err := s.Model.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.t", Name: "t_v2"})
				require.NoError(t, err)
				s.Model.DisableCDC("t_v1")
			},
			expired: "below the start LSN"},
		{name: "with SELECT, the only instance dropped",
			change:  func(t *testing.T, s *wireServer) { s.Model.DisableCDC("t_v1") },
			tracked: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := serveCDC(t, mssqlmodel.Options{AutoHarvest: true})
			tb := wireTable(t)
			require.NoError(t, s.Model.CreateTable(tb))
			s.Model.EnableCDCDatabase()
			_, err := s.Model.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.t", Name: "t_v1"})
			require.NoError(t, err)
			s.Model.AddLogin(mssqltest.User)
			require.NoError(t, s.Model.Grant(mssqltest.User, "SELECT", "SCHEMA::cdc"))
			require.NoError(t, s.Model.Grant(mssqltest.User, "SELECT", "dbo.t"))
			wireInsert(t, s.Model, 1, 2)

			var pos watermarks.Position
			n, err := wireRun(t, s, tb, &pos)
			require.NoError(t, err)
			require.Equal(t, 2, n, "the first run's snapshot")
			_, ok := pos.(watermarks.CDC)
			require.True(t, ok, "the first run ends on a CDC position: %v", pos)

			c.change(t, s)
			wireInsert(t, s.Model, 3)
			_, err = wireRun(t, s, tb, &pos)
			require.Error(t, err)
			t.Log(err)
			var pe *cdc.PermissionError
			var ee *extractors.ExpiredError
			switch {
			case c.perm != "":
				require.ErrorAs(t, err, &pe)
				require.Equal(t, c.perm, pe.Grant)
				require.NotErrorAs(t, err, &ee, "a missing grant is not an expired position")
				require.NotContains(t, err.Error(), "no longer exists")
			case c.expired != "":
				require.ErrorAs(t, err, &ee)
				require.ErrorIs(t, err, extractors.ErrExpired)
				require.Contains(t, ee.Reason, c.expired)
				require.NotErrorAs(t, err, &pe)
			case c.tracked:
				require.ErrorIs(t, err, cdc.ErrNotTracked)
				require.NotErrorAs(t, err, &pe)
			}
		})
	}
}

// TestWireP17GatingRole (P17): a login outside a capture instance's gating
// role gets a *cdc.PermissionError from CheckReadable naming the role and
// the statements that fix it, and a run of the extractor stops with it
// instead of reading "no changes" or re-snapshotting an "expired" position
// every run; a member reads. A login without SELECT on the cdc schema gets
// the schema grant.
func TestWireP17GatingRole(t *testing.T) {
	cases := []struct {
		name  string
		login func(t *testing.T, m *mssqlmodel.Model)
		grant string // "" when readable
	}{
		{name: "member of the gating role", login: func(t *testing.T, m *mssqlmodel.Model) {
			m.AddLogin(mssqltest.User, "db_datareader", "cdc_gate")
		}},
		{name: "db_owner", login: func(t *testing.T, m *mssqlmodel.Model) { m.AddLogin(mssqltest.User, "db_owner") }},
		{name: "outside the gating role", login: func(t *testing.T, m *mssqlmodel.Model) {
			m.AddLogin(mssqltest.User, "db_datareader")
		}, grant: "ALTER ROLE [cdc_gate] ADD MEMBER <login>; GRANT SELECT ON SCHEMA::cdc TO <login>"},
		{name: "cdc schema denied", login: func(t *testing.T, m *mssqlmodel.Model) {
			m.AddLogin(mssqltest.User, "db_datareader", "cdc_gate")
			require.NoError(t, m.Deny(mssqltest.User, "SELECT", "SCHEMA::cdc"))
		}, grant: "GRANT SELECT ON SCHEMA::cdc TO <login>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := serveCDC(t, mssqlmodel.Options{AutoHarvest: true})
			tb := wireTable(t)
			require.NoError(t, s.Model.CreateTable(tb))
			s.Model.EnableCDCDatabase()
			_, err := s.Model.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.t", Name: "t_v1", Role: "cdc_gate"})
			require.NoError(t, err)
			wireInsert(t, s.Model, 1)
			// The first run as an owner, so the position is a CDC one.
			var pos watermarks.Position
			_, err = wireRun(t, s, tb, &pos)
			require.NoError(t, err)
			c.login(t, s.Model)
			wireInsert(t, s.Model, 2)

			err = (&cdc.SQLServer{DB: s.pool}).CheckReadable(context.Background(), "t_v1")
			if c.grant == "" {
				require.NoError(t, err)
				n, err := wireRun(t, s, tb, &pos)
				require.NoError(t, err)
				require.Equal(t, 1, n)
				return
			}
			var pe *cdc.PermissionError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, c.grant, pe.Grant)
			t.Log(err)

			_, err = wireRun(t, s, tb, &pos)
			t.Log(err)
			require.ErrorAs(t, err, &pe, "the run names the missing grant")
			var ee *extractors.ExpiredError
			require.NotErrorAs(t, err, &ee)
		})
	}
}
