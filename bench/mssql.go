package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// The SQL Server read path (snapshot_mssql): the same rows as snapshot's,
// served by a TDS test server (package tdstest) in this process and read
// by `ehrsync sync` through go-mssqldb, as from a hospital's SQL Server.
//
// The server's Handler is purpose-built: it answers exactly the statements
// an hwm first load of dbo.charges sends (go-mssqldb's ping,
// MIN_ACTIVE_ROWVERSION(), and the keyset chunk query without and with its
// key parameter), recognised by their whole text and parameter types, and
// fails any other statement loudly (error 50000 to the engine, recorded by
// the server; the scenario then fails naming it). Rows are generated while
// they are sent (Result.Stream), in key order, by the same generator as
// the PostgreSQL source's COPY: genID sorts alike in both servers' orders,
// so chunk i of both scenarios holds the same rows. Every row carries the
// PostgreSQL source's row_timestamp as its rowversion, so the store ends
// byte for byte as after snapshot, and verify.Table compares it with the
// PostgreSQL source.

// Scenario and ratio names of the SQL Server read path.
const (
	SnapshotMSSQL = "snapshot_mssql"
	// SnapshotMSSQLVsSnapshot is engine CPU per row of snapshot_mssql over
	// snapshot's (the SQL Server path's cost; target at most 1.5).
	SnapshotMSSQLVsSnapshot = "snapshot_mssql_vs_snapshot"
)

const (
	orgMSSQL         = "bench_mssql"
	mssqlDatabase    = "NGProd"
	mssqlUser        = "ehrsync_bench"
	mssqlPasswordEnv = "EHRSYNC_BENCH_MSSQL_PASSWORD"
)

// MSSQL TLS modes (Options.MSSQLTLS).
const (
	// TLSRequire is production's setting: TLS inside TDS for the whole
	// session, the server's certificate verified with a CA file.
	TLSRequire = "require"
	// TLSDisable sends TDS in the clear, to measure what TLS costs.
	TLSDisable = "disable"
)

// serverTB is the testing.TB that tdstest.Start takes, outside a test. It
// embeds a nil TB: tdstest calls only the methods below (Start: Helper,
// Fatalf, Cleanup; a connection: Errorf on a panic, Logf on a Handler's
// error, which Server.Errors also keeps).
type serverTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errs     []string
}

type fatal struct{ msg string }

func (t *serverTB) Helper()             {}
func (t *serverTB) Logf(string, ...any) {}
func (t *serverTB) Errorf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.errs = append(t.errs, fmt.Sprintf(format, args...))
}

func (t *serverTB) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	panic(fatal{fmt.Sprintf(format, args...)})
}

func (t *serverTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

func (t *serverTB) failures() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.errs)
}

// close runs the cleanups, last first (tdstest's closes the server).
func (t *serverTB) close() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// tdsSource is the running SQL Server stand-in.
type tdsSource struct {
	srv      *tdstest.Server
	tb       *serverTB
	h        *chargesServer
	password string
}

// startTDS starts the server answering h.
func startTDS(h *chargesServer, encryption tdstest.Encryption) (src *tdsSource, err error) {
	tb := &serverTB{}
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(fatal)
			if !ok {
				panic(p)
			}
			tb.close()
			src, err = nil, errors.New(f.msg)
		}
	}()
	password := "Bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	srv := tdstest.Start(tb, tdstest.Config{
		Handler:    h,
		Users:      map[string]string{mssqlUser: password},
		Databases:  []string{mssqlDatabase},
		Encryption: encryption,
	})
	return &tdsSource{srv: srv, tb: tb, h: h, password: password}, nil
}

func (s *tdsSource) close() { s.tb.close() }

// failure reports what went wrong at the server so far: a statement the
// Handler does not answer, a value that does not fit its column, a panic.
func (s *tdsSource) failure() error {
	var msgs []string
	for _, err := range s.srv.Errors() {
		msgs = append(msgs, err.Error())
	}
	msgs = append(msgs, s.tb.failures()...)
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("the TDS test server failed: %s", strings.Join(slices.Compact(msgs), "; "))
}

// chargesServer answers the statements of an hwm first load of the bench
// table from the data generator: rows 0..rows-1, in key order.
type chargesServer struct {
	rows    int
	columns []tdstest.Column // sys.columns' answer's columns
	facts   [][]any          // and its rows: the catalog table's columns
	version []byte           // every row's rowversion
	bound   []byte           // MIN_ACTIVE_ROWVERSION(): version + 1
	cols    []tdstest.Column
	// The chunk query's text: the first chunk's, and the next chunks'
	// (after the last key read).
	first, next string

	mu       sync.Mutex
	answered map[string]int // statements answered, by kind
	served   int64          // rows sent
}

// Statement kinds, as chargesServer counts them.
const (
	stmtPing       = "ping"
	stmtColumns    = "columns"
	stmtBound      = "rowversion bound"
	stmtFirstChunk = "first chunk"
	stmtNextChunk  = "next chunk"
)

// newChargesServer serves rows 0..rows-1 of the bench table, projected on
// Columns, each with rowversion version (the PostgreSQL source's
// row_timestamp, so that both stores end equal).
func newChargesServer(rows int, version uint64) (*chargesServer, error) {
	t, ok := schemas.NextGen().Table(table)
	if !ok {
		return nil, fmt.Errorf("%s is not in the catalog", table)
	}
	h := &chargesServer{rows: rows, answered: map[string]int{}}
	h.describe(t)
	t, err := t.Project(Columns)
	if err != nil {
		return nil, err
	}
	h.version = binary.BigEndian.AppendUint64(nil, version)
	h.bound = binary.BigEndian.AppendUint64(nil, version+1)
	quoted := make([]string, len(Columns))
	for i, name := range Columns {
		c, ok := t.Column(name)
		if !ok {
			return nil, fmt.Errorf("%s has no column %s", table, name)
		}
		h.cols = append(h.cols, tdstest.Column{Name: c.Name, Type: c.Type, Nullable: c.Nullable})
		quoted[i] = "[" + name + "]"
	}
	// extractors/internal/dialect's keyset chunk query (snapshot package):
	// the allow-list in table order, TOP bound first, the key after.
	sel := "SELECT TOP (@p1) " + strings.Join(quoted, ", ") + " FROM [dbo].[charges]"
	h.first = sel + " ORDER BY [charge_id]"
	h.next = sel + " WHERE [charge_id] > @p2 ORDER BY [charge_id]"
	return h, nil
}

// describe keeps the answer to the planner's sys.columns query for t: each
// column's name, system type id, max_length, precision, scale and
// nullability, as mssqlmodel's SQL Server declares them.
func (h *chargesServer) describe(t *schemas.Table) {
	typ := func(name string, n int) schemas.Type { return schemas.Type{Name: name, Length: n} }
	h.columns = []tdstest.Column{{Name: "name", Type: typ("nvarchar", 128)}, {Name: "system_type_id", Type: typ("tinyint", 0)},
		{Name: "max_length", Type: typ("smallint", 0)}, {Name: "precision", Type: typ("tinyint", 0)},
		{Name: "scale", Type: typ("tinyint", 0)}, {Name: "is_nullable", Type: typ("bit", 0)}}
	for _, c := range t.Columns {
		id, length, precision, scale := mssqlmodel.ColumnFacts(c.Type)
		h.facts = append(h.facts, []any{c.Name, id, length, precision, scale, c.Nullable})
	}
}

// Handle implements tdstest.Handler.
func (h *chargesServer) Handle(_ context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	kind, res, err := h.answer(req)
	if err == nil {
		h.mu.Lock()
		h.answered[kind]++
		h.mu.Unlock()
	}
	return res, err
}

// Answered returns how many statements of each kind were answered.
func (h *chargesServer) Answered() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.answered))
	for k, v := range h.answered {
		out[k] = v
	}
	return out
}

// summary says what was answered so far: statements by kind, rows sent.
func (h *chargesServer) summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	kinds := make([]string, 0, len(h.answered))
	for k, n := range h.answered {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	return fmt.Sprintf("%s; %d rows sent", strings.Join(kinds, ", "), h.served)
}

func (h *chargesServer) answer(req *tdstest.Request) (string, []tdstest.Result, error) {
	if req.Proc != "" {
		return "", nil, fmt.Errorf("bench: the SQL Server stand-in answers no procedure call (got %s with %d parameters)", req.Proc, len(req.Params))
	}
	switch {
	case (req.SQL == "select 1;" || req.SQL == "SELECT 1") && len(req.Params) == 0:
		return stmtPing, []tdstest.Result{{Columns: []tdstest.Column{{Type: schemas.Type{Name: "int"}}}, Rows: [][]any{{int64(1)}}}}, nil
	case req.SQL == "SELECT MIN_ACTIVE_ROWVERSION()" && len(req.Params) == 0:
		return stmtBound, []tdstest.Result{{Columns: []tdstest.Column{{Type: schemas.Type{Name: "binary", Length: 8}}}, Rows: [][]any{{h.bound}}}}, nil
	case strings.HasPrefix(req.SQL, "SELECT c.name, c.system_type_id") && strings.Contains(req.SQL, "FROM sys.columns c"):
		if len(req.Params) != 1 || req.Params[0].Value != "[dbo].[charges]" {
			return "", nil, fmt.Errorf("bench: the columns of another table asked for; the stand-in has only %s", table)
		}
		return stmtColumns, []tdstest.Result{{Columns: h.columns, Rows: h.facts}}, nil
	case req.SQL == h.first:
		limit, err := h.limit(req, 1)
		if err != nil {
			return "", nil, err
		}
		return stmtFirstChunk, h.chunk(0, limit), nil
	case req.SQL == h.next:
		limit, err := h.limit(req, 2)
		if err != nil {
			return "", nil, err
		}
		p := req.Params[1]
		key, ok := p.Value.([]byte)
		if p.Name != "@p2" || p.Type.Name != "uniqueidentifier" || !ok || len(key) != 16 {
			return "", nil, fmt.Errorf("bench: the next chunk's key parameter is %s %s, not @p2 uniqueidentifier", p.Name, p.Type)
		}
		i, ok := h.index(key)
		if !ok {
			return "", nil, errors.New("bench: the next chunk's key is not a key the bench served")
		}
		return stmtNextChunk, h.chunk(i+1, limit), nil
	}
	var params []string
	for _, p := range req.Params {
		params = append(params, p.Name+" "+p.Type.String())
	}
	return "", nil, fmt.Errorf("bench: the SQL Server stand-in answers only an hwm first load of %s; it does not answer %q (parameters: %s)",
		table, req.SQL, strings.Join(params, ", "))
}

// limit checks a chunk query's parameters (n of them) and returns TOP's.
func (h *chargesServer) limit(req *tdstest.Request, n int) (int, error) {
	if len(req.Params) != n {
		return 0, fmt.Errorf("bench: a chunk query with %d parameters, not %d", len(req.Params), n)
	}
	p := req.Params[0]
	v, ok := p.Value.(int64)
	if p.Name != "@p1" || p.Type.Name != "bigint" || !ok || v <= 0 {
		return 0, fmt.Errorf("bench: the chunk's row limit is %s %s, not a positive @p1 bigint", p.Name, p.Type)
	}
	return int(min(v, int64(h.rows))), nil
}

// index returns the row whose key is key (SQL Server's wire order).
func (h *chargesServer) index(key []byte) (int, bool) {
	n := uint64(0)
	for _, b := range key[10:16] {
		n = n<<8 | uint64(b)
	}
	if n == 0 || n > uint64(h.rows) {
		return 0, false
	}
	i := int(n - 1)
	want := wireGUID(genID(i))
	return i, string(key) == string(want[:])
}

// chunk streams rows from..from+limit-1 (at most to the last row).
func (h *chargesServer) chunk(from, limit int) []tdstest.Result {
	end := min(from+limit, h.rows)
	i := from
	var key, person [16]byte // the server encodes a row before the next call
	return []tdstest.Result{{Columns: h.cols, Stream: func(ctx context.Context, row []any) (bool, error) {
		if i >= end {
			h.mu.Lock()
			h.served += int64(end - from)
			h.mu.Unlock()
			return false, nil
		}
		r := genRow(i, 0)
		key, person = wireGUID(r.id), wireGUID(r.person)
		r.tdsValues(row, key[:], person[:], h.version)
		i++
		return true, nil
	}}}
}

// wireGUID returns a UUID (RFC 4122 byte order) in uniqueidentifier's wire
// order: the first three groups little-endian.
func wireGUID(u [16]byte) [16]byte {
	w := u
	w[0], w[1], w[2], w[3] = u[3], u[2], u[1], u[0]
	w[4], w[5] = u[5], u[4]
	w[6], w[7] = u[7], u[6]
	return w
}

// tdsValues fills row (Columns' order) with r's values in tdstest's Go
// representation: decimals as text, datetimes as UTC times.
func (r *row) tdsValues(row []any, key, person, version []byte) {
	row[0] = key
	row[1] = r.practice
	row[2] = person
	row[3] = r.serviceItem
	row[4] = r.cpt4
	row[5] = decimal2(r.quantity)
	row[6] = decimal2(r.unitPrice)
	row[7] = decimal2(r.amt)
	row[8] = decimal2(r.patAmt)
	row[9] = r.beginDOS
	row[10] = r.endDOS
	row[11] = r.status
	row[12] = int64(r.createdBy)
	row[13] = pgEpoch.Add(time.Duration(r.createTS) * time.Microsecond)
	row[14] = int64(r.modifiedBy)
	row[15] = pgEpoch.Add(time.Duration(r.modifyTS) * time.Microsecond)
	row[16] = version
}

// decimal2 is v/100 as decimal text with two decimals ("-12.05").
func decimal2(v int64) string {
	var b [24]byte
	out := b[:0]
	u := uint64(v)
	if v < 0 {
		out = append(out, '-')
		u = uint64(-v)
	}
	out = strconv.AppendUint(out, u/100, 10)
	out = append(out, '.', byte('0'+u%100/10), byte('0'+u%10))
	return string(out)
}

// writeMSSQLConfig writes the config of the SQL Server scenario: the same
// table and allow-list as the PostgreSQL one's, from a SQL Server source
// reached directly, with TLS as production sets it (required, the
// server's certificate verified with a CA file) unless Options.MSSQLTLS is
// TLSDisable.
func (r *runner) writeMSSQLConfig() error {
	tls := "tls: {mode: disable}"
	if r.opts.MSSQLTLS != TLSDisable {
		ca := filepath.Join(r.dir, "mssql-ca.pem")
		if err := os.WriteFile(ca, r.tds.srv.CertPEM(), 0o600); err != nil {
			return err
		}
		tls = "tls: {mode: require, ca_file: " + strconv.Quote(ca) + "}"
	}
	source := fmt.Sprintf(`dialect: sqlserver
      via: direct
      host: %s
      port: %d
      database: %s
      user: %s
      password: env:%s
      %s`, r.tds.srv.Host(), r.tds.srv.Port(), mssqlDatabase, mssqlUser, mssqlPasswordEnv, tls)
	r.mssqlConfig = filepath.Join(r.dir, "ehrsync-mssql.yaml")
	return r.writeOrgConfig(r.mssqlConfig, orgMSSQL, source)
}

// startMSSQL starts the SQL Server stand-in serving the source's rows as
// they are now (the initial load: one transaction id in row_timestamp).
func (r *runner) startMSSQL(ctx context.Context) error {
	var lo, hi int64
	if err := r.src.QueryRow(ctx, "SELECT min(row_timestamp), max(row_timestamp) FROM dbo.charges").Scan(&lo, &hi); err != nil {
		return err
	}
	if lo != hi || lo <= 0 {
		return fmt.Errorf("the source's rows carry row versions %d..%d, not one", lo, hi)
	}
	h, err := newChargesServer(r.opts.Rows, uint64(lo))
	if err != nil {
		return err
	}
	enc := tdstest.EncryptOn // "Force Encryption", as a server with a certificate
	if r.opts.MSSQLTLS == TLSDisable {
		enc = tdstest.EncryptOff
	}
	if r.tds, err = startTDS(h, enc); err != nil {
		return err
	}
	return r.writeMSSQLConfig()
}
