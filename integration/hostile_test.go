package integration

// Bad and hostile input: names that need quoting,
// data at the types' limits, and source tables whose schema changes between
// runs, all through the real binary from a PostgreSQL source into the store,
// compared row by row. The tables are not NextGen's: they come from extra
// catalog files named by the configuration's catalog list.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

// customEnv is a PostgreSQL source with tables of the test's own catalog
// files, a store, and a configuration syncing them.
type customEnv struct {
	src, store       *pgxpool.Pool
	srcURL, storeURL string
	dir              string // the configuration's directory
	config           string
	tables           []*schemas.Table
}

// customTable is one table of a customEnv: its catalog entry and its
// configuration line's settings beyond the name.
type customTable struct {
	table    *schemas.Table
	settings string // YAML flow-mapping entries, e.g. "strategy: snapshot"
}

// yamlQuote quotes s as a single-quoted YAML scalar.
func yamlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// hostileTable builds a PostgreSQL-dialect catalog table from {name, type}
// column specs: the first column is the key, the others (but the
// modified-at column) are nullable.
func hostileTable(t *testing.T, schema, name, modifiedAt string, cols ...[2]string) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: schema, Name: name, Dialect: schemas.Postgres, ModifiedAt: modifiedAt}
	for i, c := range cols {
		typ, err := schemas.ParseType(schemas.Postgres, c[1])
		require.NoError(t, err, c[1])
		tb.Columns = append(tb.Columns, schemas.Column{Name: c[0], Type: typ, Nullable: i > 0 && c[0] != modifiedAt})
	}
	tb.Key = []string{cols[0][0]}
	require.NoError(t, tb.Validate())
	return tb
}

// catalogYAML renders t as a catalog file.
func catalogYAML(t *schemas.Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema: %s\nname: %s\ndialect: %s\nkey: [%s]\n", yamlQuote(t.Schema), yamlQuote(t.Name), t.Dialect, yamlQuote(t.Key[0]))
	if t.ModifiedAt != "" {
		fmt.Fprintf(&b, "modified_at: %s\n", yamlQuote(t.ModifiedAt))
	}
	b.WriteString("columns:\n")
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "  - {name: %s, type: %s, nullable: %t}\n", yamlQuote(c.Name), yamlQuote(c.Type.String()), c.Nullable)
	}
	return b.String()
}

func newCustomEnv(t *testing.T, batchRows int, tables ...customTable) *customEnv {
	t.Helper()
	ctx := context.Background()
	e := &customEnv{srcURL: pgtest.URL(t), storeURL: pgtest.URL(t), dir: t.TempDir()}
	var err error
	e.src, err = pgxpool.New(ctx, e.srcURL)
	require.NoError(t, err)
	t.Cleanup(e.src.Close)
	e.store, err = pgxpool.New(ctx, e.storeURL)
	require.NoError(t, err)
	t.Cleanup(e.store.Close)
	require.NoError(t, storedb.Migrate(ctx, e.store))

	var catalog, lines strings.Builder
	for i, ct := range tables {
		e.tables = append(e.tables, ct.table)
		file := fmt.Sprintf("tables/%d.yaml", i)
		require.NoError(t, os.MkdirAll(filepath.Join(e.dir, "tables"), 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(e.dir, file), []byte(catalogYAML(ct.table)), 0o600))
		fmt.Fprintf(&catalog, "  - %s\n", file)
		settings := ct.settings
		if settings != "" {
			settings = ", " + settings
		}
		fmt.Fprintf(&lines, "      - {name: %s%s}\n", yamlQuote(ct.table.QualifiedName()), settings)
	}
	cat, err := schemas.NewCatalog(e.tables...)
	require.NoError(t, err)
	require.NoError(t, synth.CreatePostgres(ctx, e.src, cat))

	u, err := url.Parse(e.srcURL)
	require.NoError(t, err)
	cfg := oneOrgConfig(u, "catalog:\n"+catalog.String(), batchRows, lines.String())
	e.config = filepath.Join(e.dir, "ehrsync.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))
	return e
}

// run runs `ehrsync sync` and returns its output and error.
func (e *customEnv) run() (string, error) {
	var out bytes.Buffer
	cmd := exec.Command(binary, "--log-format", "json", "sync", "--config", e.config)
	cmd.Env = append(os.Environ(), "TEST_STORE_URL="+e.storeURL)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (e *customEnv) sync(t *testing.T) string {
	t.Helper()
	out, err := e.run()
	require.NoError(t, err, "ehrsync sync:\n%s", out)
	return out
}

// requireEqual compares every row of the given tables (default: all)
// between source and store and returns the rows compared.
func (e *customEnv) requireEqual(t *testing.T, tables ...*schemas.Table) int64 {
	t.Helper()
	if len(tables) == 0 {
		tables = e.tables
	}
	var rows int64
	for _, tb := range tables {
		d, err := verify.Table(context.Background(), e.src, e.store, tb.Schema, sink.SchemaFor(org), tb)
		require.NoError(t, err)
		require.True(t, d.Equal(), "%s", d)
		rows += d.SourceRows
	}
	return rows
}

// insert writes rows (one value per column, in column order) with COPY.
func (e *customEnv) insert(t *testing.T, tb *schemas.Table, rows [][]any) {
	t.Helper()
	if len(rows) == 0 {
		return
	}
	cols := make([]string, len(tb.Columns))
	for i, c := range tb.Columns {
		cols[i] = c.Name
	}
	_, err := e.src.CopyFrom(context.Background(), pgx.Identifier{tb.Schema, tb.Name}, cols, pgx.CopyFromRows(rows))
	require.NoError(t, err)
}

// hostileNames are table and column names that break SQL written without
// quoting: quotes of both dialects, brackets, semicolons, spaces, comment
// and statement text, mixed case, and Unicode in and beyond the BMP.
var hostileNames = struct {
	schema, table1, table2 string
	columns                []string
}{
	schema: `sch"ema [1]`,
	table1: `we"ird [t];able 𝄞`,
	table2: `Ünïcode täble ]"; --`,
	columns: []string{
		`key "id"`, `[bracketed]`, `semi;colon`, `with space`, `O'Brien`,
		`ünïcödé`, `emoji 😀 𝄞`, `DROP TABLE x; --`, `MixedCase`, `a]]b"";`,
	},
}

// TestReliabilityHostileIdentifiers syncs two tables whose schema, table and
// column names need quoting everywhere (a high-water mark with a change log,
// and a keyset snapshot with key reconciliation), through inserts, updates
// and deletes, and compares them row by row.
func TestReliabilityHostileIdentifiers(t *testing.T) {
	const section = "Hostile identifiers"
	h := hostileNames
	cols := [][2]string{{h.columns[0], "bigint"}}
	for _, c := range h.columns[1:] {
		cols = append(cols, [2]string{c, "text"})
	}
	modified := `modified "at"`
	cols = append(cols, [2]string{modified, "timestamp(6) without time zone"})
	t1 := hostileTable(t, h.schema, h.table1, modified, cols...)
	t2 := hostileTable(t, "dbo", h.table2, "", [2]string{`id]"`, "uuid"}, [2]string{`väl 𝄞`, "text"}, [2]string{`n;`, "integer"})
	e := newCustomEnv(t, 50,
		customTable{table: t1, settings: "strategy: auto, change_log: true"},
		customTable{table: t2, settings: "strategy: snapshot, reconcile_every: 1ms"},
	)
	ctx := context.Background()
	seed := testSeed(t.Name())
	rng := rand.New(rand.NewPCG(seed, 4))
	n := scale(300, 5000)
	words := []string{"", "plain", `quote " and ' and ]`, "😀𝄞 beyond the BMP", "tab\tnew\nline", "ünïcödé", "; DROP TABLE x; --"}
	word := func() any {
		if rng.IntN(8) == 0 {
			return nil
		}
		return words[rng.IntN(len(words))] + fmt.Sprint(rng.IntN(1000))
	}
	row1 := func(id int64, modifiedAt any) []any {
		r := []any{id}
		for range h.columns[1:] {
			r = append(r, word())
		}
		return append(r, modifiedAt)
	}
	var rows1, rows2 [][]any
	for i := range n {
		rows1 = append(rows1, row1(int64(i+1), hostileTime(rng)))
		rows2 = append(rows2, []any{hostileUUID(rng), word(), rng.Int32()})
	}
	e.insert(t, t1, rows1)
	e.insert(t, t2, rows2)
	e.sync(t)
	compared := e.requireEqual(t)

	// Updates, inserts and deletes, then a second run.
	_, err := e.src.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s = %s || ' updated', %s = now()::timestamp WHERE %s %% 3 = 0`,
		pgx.Identifier{t1.Schema, t1.Name}.Sanitize(), pgx.Identifier{h.columns[1]}.Sanitize(), pgx.Identifier{h.columns[2]}.Sanitize(),
		pgx.Identifier{modified}.Sanitize(), pgx.Identifier{h.columns[0]}.Sanitize()))
	require.NoError(t, err)
	later := time.Now().UTC().Add(time.Hour) // after every mark so far
	e.insert(t, t1, [][]any{row1(int64(n+1), later), row1(int64(n+2), later)})
	tag, err := e.src.Exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE %s %% 5 = 0`, pgx.Identifier{t2.Schema, t2.Name}.Sanitize(), pgx.Identifier{`n;`}.Sanitize()))
	require.NoError(t, err)
	require.Positive(t, tag.RowsAffected())
	e.sync(t)
	compared += e.requireEqual(t)

	// The change log holds each change of the hostile table once.
	var logged int64
	require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{sink.SchemaFor(org), sink.TableName(t1) + sink.ChangeLogSuffix}.Sanitize()).Scan(&logged))
	require.GreaterOrEqual(t, logged, int64(n+2))

	figure(section, "hostile identifiers (schema, tables, columns)", 3+len(h.columns)+1+3)
	figure(section, "rows compared", compared)
	figure(section, "seed", seed)
}

// hostileTime is a random timestamp (microseconds) for a modified-at column.
func hostileTime(rng *rand.Rand) any {
	return time.Date(2024, time.Month(1+rng.IntN(12)), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(1000000)*1000, time.UTC)
}

func hostileUUID(rng *rand.Rand) [16]byte {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// extremesColumns are the columns of the data-extremes table: every
// PostgreSQL type the mapping carries, with room for its limits.
var extremesColumns = [][2]string{
	{"id", "bigint"},
	{"t", "text"}, {"e", "text"}, {"big", "text"}, {"uni", "text"},
	{"vc", "character varying(8)"}, {"ch", "character(3)"},
	{"n", "numeric(19,2)"}, {"nbig", "numeric(38,10)"}, {"num", "numeric"},
	{"bi", "bigint"}, {"i", "integer"}, {"si", "smallint"},
	{"f", "double precision"}, {"r", "real"},
	{"d", "date"}, {"ts", "timestamp(6) without time zone"}, {"tz", "timestamp(6) with time zone"}, {"tm", "time(6) without time zone"},
	{"b", "boolean"}, {"u", "uuid"}, {"by", "bytea"}, {"j", "jsonb"},
}

// extremesRows are SQL literals for the extremes table, one row per entry,
// in extremesColumns order after the key; nil is a row of NULLs.
var extremesRows = map[int64][]string{
	1: nil, // NULL in every non-key column
	2: { // the maxima
		`'x'`, `''`, `repeat('a😀𝄞', 116509)`, `'😀𝄞' || chr(1114111)`,
		`'𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞'`, `'ab '`,
		`99999999999999999.99`, `9999999999999999999999999999.9999999999`, `'Infinity'`,
		`9223372036854775807`, `2147483647`, `32767`,
		`'Infinity'`, `'Infinity'`,
		`'9999-12-31'`, `'9999-12-31 23:59:59.999999'`, `'9999-12-31 23:59:59.999999+00'`, `'23:59:59.999999'`,
		`true`, `'ffffffff-ffff-ffff-ffff-ffffffffffff'`, `'\xff00fe'::bytea`, `'{"k": "😀𝄞", "n": 1e308, "e": ""}'`,
	},
	3: { // the minima and empties
		`''`, `''`, `''`, `''`,
		`''`, `''`,
		`-99999999999999999.99`, `-9999999999999999999999999999.9999999999`, `'-Infinity'`,
		`-9223372036854775808`, `-2147483648`, `-32768`,
		`'-Infinity'`, `'-Infinity'`,
		`'0001-01-01'`, `'0001-01-01 00:00:00'`, `'0001-01-01 00:00:00+00'`, `'00:00:00'`,
		`false`, `'00000000-0000-0000-0000-000000000000'`, `''::bytea`, `'[]'`,
	},
	4: { // NaN, the smallest magnitudes, negative zero, control characters
		`E'\x01\x02\t\n\r\x1f\x7f'`, `' '`, `repeat(' ', 1000)`, `'\'`,
		`'        '`, `'   '`,
		`0.01`, `0.0000000001`, `'NaN'`,
		`0`, `0`, `0`,
		`'NaN'`, `'NaN'`,
		`'2000-02-29'`, `'1970-01-01 00:00:00.000001'`, `'1969-12-31 23:59:59.999999+00'`, `'00:00:00.000001'`,
		`true`, `'6f9619ff-8b86-d011-b42d-00c04fc964ff'`, `decode(repeat('00', 1000), 'hex')`, `'null'`,
	},
	5: {
		`'Zoë'`, `''`, `''`, `'𐍈𐌰𐌹𐍃'`,
		`''`, `'ü'`,
		`-0.01`, `0`, `'123456789012345678901234567890123456789012345678901234567890.123456789012345678901234567890'`,
		`1`, `-1`, `1`,
		`'-0'`, `'1.4e-45'`,
		`'1582-10-10'`, `'1900-02-28 12:00:00'`, `'2038-01-19 03:14:08+00'`, `'12:00:00'`,
		`false`, `'6f9619ff-8b86-d011-b42d-00c04fc964fe'`, `'\x00'::bytea`, `'{"a": [1, 2.5, -0, 1e-300]}'`,
	},
	6: {
		`'5e-324'`, `''`, `''`, `''`, `''`, `''`,
		`0`, `0`, `'0.0000000000000000000000000000000000000001'`,
		`0`, `0`, `0`,
		`'4.9e-324'`, `'-3.4028235e38'`,
		`'1999-12-31'`, `'2000-01-01 00:00:00'`, `'2000-01-01 00:00:00+00'`, `'23:59:59'`,
		`true`, `'6f9619ff-8b86-d011-b42d-00c04fc964fd'`, `'\x'::bytea`, `'{}'`,
	},
}

// insertLiterals inserts the rows of literals (nil: NULLs) into tb, whose
// columns are some of extremesColumns.
func (e *customEnv) insertLiterals(t *testing.T, tb *schemas.Table, rows map[int64][]string) {
	t.Helper()
	for id, lits := range rows {
		vals := []string{fmt.Sprint(id)}
		for _, c := range tb.Columns[1:] {
			i := slices.IndexFunc(extremesColumns, func(ec [2]string) bool { return ec[0] == c.Name })
			if lits == nil {
				vals = append(vals, "NULL")
				continue
			}
			vals = append(vals, lits[i-1])
		}
		_, err := e.src.Exec(context.Background(), fmt.Sprintf("INSERT INTO %s VALUES (%s)",
			pgx.Identifier{tb.Schema, tb.Name}.Sanitize(), strings.Join(vals, ", ")))
		require.NoError(t, err, "row %d", id)
	}
}

// TestReliabilityDataExtremes syncs rows at the limits of every mapped type
// (NULL in every column, empty strings, Unicode beyond the BMP, 1 MB of
// text, numeric(19,2) and numeric(38,10) maxima and minima, bigint, integer
// and smallint limits, float NaN, infinities, negative zero and subnormals,
// numeric NaN and infinities, dates and timestamps at 0001-01-01 and
// 9999-12-31, and PostgreSQL's BC and far-future dates) with both
// strategies and both of the sink's copy paths, and compares them row by
// row. A timestamp of infinity, which the mapping cannot carry, stops its
// table with an error naming the table, the column and the fix, while the
// other tables sync in the same run. (Text holding NUL cannot come from a
// PostgreSQL source; the sink's refusal of it is TestTextWithNULIsAClear
// ErrorWithoutTheValue in pkg/sink.)
func TestReliabilityDataExtremes(t *testing.T) {
	const section = "Data extremes"
	hwm := hostileTable(t, "dbo", "extremes_hwm", "", extremesColumns...)
	hwm.ModifiedAt = "ts"
	snap := hostileTable(t, "dbo", "extremes_snap", "", extremesColumns...)
	// The sink copies batches straight from Arrow when it has a direct
	// encoding for every column, else through pgx's encoder (unconstrained
	// numeric, jsonb): this table takes the direct path.
	var direct [][2]string
	for _, c := range extremesColumns {
		if c[1] != "numeric" && c[1] != "jsonb" {
			direct = append(direct, c)
		}
	}
	fast := hostileTable(t, "dbo", "extremes_direct", "", direct...)
	// PostgreSQL's own limits go beyond SQL Server's: BC dates and years
	// past 9999 fit Arrow and the store exactly; ±infinity does not.
	timeCols := [][2]string{{"id", "bigint"}, {"d", "date"}, {"ts", "timestamp(6) without time zone"}, {"tz", "timestamp(6) with time zone"}}
	beyond := hostileTable(t, "dbo", "extremes_beyond", "", timeCols...)
	infinite := hostileTable(t, "dbo", "extremes_infinite", "", timeCols...)
	e := newCustomEnv(t, 2,
		customTable{table: hwm, settings: "strategy: hwm, cursor: ts"},
		customTable{table: snap, settings: "strategy: snapshot"},
		customTable{table: fast, settings: "strategy: snapshot"},
		customTable{table: beyond, settings: "strategy: snapshot"},
		customTable{table: infinite, settings: "strategy: snapshot"},
	)
	synced := []*schemas.Table{hwm, snap, fast}
	for _, tb := range synced {
		e.insertLiterals(t, tb, extremesRows)
	}
	ctx := context.Background()
	_, err := e.src.Exec(ctx, `INSERT INTO dbo.extremes_beyond VALUES
		(1, '4713-01-01 BC', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC'),
		(2, '5874897-12-31', '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00')`)
	require.NoError(t, err)
	_, err = e.src.Exec(ctx, `INSERT INTO dbo.extremes_infinite VALUES (1, '2026-01-01', 'infinity', NULL)`)
	require.NoError(t, err)
	synced = append(synced, beyond)

	// The infinite timestamp stops its table, with an error naming the
	// table, the column and the fix; the other tables sync in the same run.
	compared := int64(0)
	for range 2 { // and a second run changes nothing
		out, err := e.run()
		require.Error(t, err, out)
		var failed []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, `"table sync failed"`) {
				failed = append(failed, line)
			}
		}
		require.Len(t, failed, 1, out)
		require.Contains(t, failed[0], `"table":"dbo.extremes_infinite"`)
		require.Contains(t, failed[0], "column ts: ")
		require.Contains(t, failed[0], "columns allow-list")
		compared += e.requireEqual(t, synced...)
	}
	require.EqualValues(t, 2*(3*len(extremesRows)+2), compared)

	figure(section, "types at their limits", len(extremesColumns)-1)
	figure(section, "unrepresentable values refused with a clear error (±infinity)", 1)
	figure(section, "rows compared", compared)
}

// editConfig replaces old with new in the configuration file (an operator
// editing it between runs).
func (e *customEnv) editConfig(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	require.Contains(t, string(b), old)
	require.NoError(t, os.WriteFile(e.config, []byte(strings.Replace(string(b), old, new, 1)), 0o600))
}

// storeType is a store column's type as format_type spells it.
func (e *customEnv) storeType(t *testing.T, table, column string) string {
	t.Helper()
	var typ string
	require.NoError(t, e.store.QueryRow(context.Background(), `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
		WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped`,
		pgx.Identifier{sink.SchemaFor(org), table}.Sanitize(), column).Scan(&typ))
	return typ
}

// TestReliabilitySchemaChanges changes source tables between runs: a column
// added (not read, then read once allow-listed, the store column added),
// a column dropped (that table stops with an error naming the column and
// the fix while the org's other tables sync in the same run, and syncs again
// once the operator leaves the column out), a type widened (the store
// column altered) and a type narrowed (values still fit: the store column
// stays wide). Every table is compared row by row after every run.
func TestReliabilitySchemaChanges(t *testing.T) {
	const section = "Source schema changes"
	added := hostileTable(t, "dbo", "drift_added", "", [2]string{"id", "bigint"}, [2]string{"a", "text"})
	allowed := hostileTable(t, "dbo", "drift_allowed", "", [2]string{"id", "bigint"}, [2]string{"a", "text"})
	dropped := hostileTable(t, "dbo", "drift_dropped", "", [2]string{"id", "bigint"}, [2]string{"a", "text"}, [2]string{"gone", "text"})
	widened := hostileTable(t, "dbo", "drift_widened", "", [2]string{"id", "bigint"}, [2]string{"n", "integer"}, [2]string{"m", "numeric(10,2)"}, [2]string{"r", "real"})
	narrowed := hostileTable(t, "dbo", "drift_narrowed", "", [2]string{"id", "bigint"}, [2]string{"n", "bigint"}, [2]string{"m", "numeric(19,2)"}, [2]string{"r", "double precision"})
	e := newCustomEnv(t, 100,
		customTable{table: added, settings: "strategy: snapshot"},
		customTable{table: allowed, settings: "strategy: snapshot, columns: [id, a]"},
		customTable{table: dropped, settings: "strategy: snapshot"},
		customTable{table: widened, settings: "strategy: snapshot"},
		customTable{table: narrowed, settings: "strategy: snapshot"},
	)
	ctx := context.Background()
	exec := func(sql string) {
		t.Helper()
		_, err := e.src.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	n := scale(200, 5000)
	for _, tb := range []string{"drift_added", "drift_allowed", "drift_dropped"} {
		extra := ""
		if tb == "drift_dropped" {
			extra = ", 'to be dropped ' || g"
		}
		exec(fmt.Sprintf("INSERT INTO dbo.%s SELECT g, 'row ' || g%s FROM generate_series(1, %d) g", tb, extra, n))
	}
	exec(fmt.Sprintf("INSERT INTO dbo.drift_widened SELECT g, g, g / 100.0, g / 8.0 FROM generate_series(1, %d) g", n))
	exec(fmt.Sprintf("INSERT INTO dbo.drift_narrowed SELECT g, g, g / 100.0, g / 8.0 FROM generate_series(1, %d) g", n))
	e.sync(t)
	compared := e.requireEqual(t)

	// The source changes.
	exec("ALTER TABLE dbo.drift_added ADD COLUMN extra text")
	exec("ALTER TABLE dbo.drift_allowed ADD COLUMN extra text")
	exec("UPDATE dbo.drift_added SET extra = 'new ' || id, a = a || '+'")
	exec("UPDATE dbo.drift_allowed SET extra = 'new ' || id, a = a || '+'")
	exec("ALTER TABLE dbo.drift_dropped DROP COLUMN gone")
	exec("ALTER TABLE dbo.drift_widened ALTER COLUMN n TYPE bigint, ALTER COLUMN m TYPE numeric(19,2), ALTER COLUMN r TYPE double precision")
	exec(fmt.Sprintf("INSERT INTO dbo.drift_widened VALUES (%d, 1099511627776, 12345678901234567.89, 0.1)", n+1))
	exec("ALTER TABLE dbo.drift_narrowed ALTER COLUMN n TYPE integer, ALTER COLUMN m TYPE numeric(10,2), ALTER COLUMN r TYPE real")
	exec(fmt.Sprintf("INSERT INTO dbo.drift_narrowed VALUES (%d, 2147483647, 99999999.99, 0.5)", n+1))

	// The source as it is now, for the row-by-row comparisons.
	widenedNow := hostileTable(t, "dbo", "drift_widened", "", [2]string{"id", "bigint"}, [2]string{"n", "bigint"}, [2]string{"m", "numeric(19,2)"}, [2]string{"r", "double precision"})
	narrowedNow := hostileTable(t, "dbo", "drift_narrowed", "", [2]string{"id", "bigint"}, [2]string{"n", "integer"}, [2]string{"m", "numeric(10,2)"}, [2]string{"r", "real"})
	allowedNow := hostileTable(t, "dbo", "drift_allowed", "", [2]string{"id", "bigint"}, [2]string{"a", "text"}, [2]string{"extra", "text"})
	droppedNow := hostileTable(t, "dbo", "drift_dropped", "", [2]string{"id", "bigint"}, [2]string{"a", "text"})

	// Run 2: the dropped column stops its table, with the column and the
	// fix named; every other table syncs in the same run.
	out, err := e.run()
	require.Error(t, err, out)
	var failed []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"table sync failed"`) {
			failed = append(failed, line)
		}
	}
	require.Len(t, failed, 1, out)
	require.Contains(t, failed[0], `"table":"dbo.drift_dropped"`)
	require.Contains(t, failed[0], "column gone is in the catalog but no longer at the source")
	require.Contains(t, failed[0], "columns allow-list")
	require.NotContains(t, out, "to be dropped", "a row value reached the output")
	compared += e.requireEqual(t, added, allowed, widenedNow, narrowedNow)
	require.Equal(t, "bigint", e.storeType(t, "drift_widened", "n"), "a widened source column widens the store column")
	require.Equal(t, "numeric(19,2)", e.storeType(t, "drift_widened", "m"))
	require.Equal(t, "double precision", e.storeType(t, "drift_widened", "r"))
	require.Equal(t, "bigint", e.storeType(t, "drift_narrowed", "n"), "a narrowed source column keeps the wider store column")
	require.Equal(t, "numeric(19,2)", e.storeType(t, "drift_narrowed", "m"))
	var extraInStore int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM pg_attribute WHERE attname = 'extra' AND NOT attisdropped
		AND attrelid IN ('st_mary.drift_added'::regclass, 'st_mary.drift_allowed'::regclass)`).Scan(&extraInStore))
	require.Zero(t, extraInStore, "a new source column is not read unless allowed")

	// The operator allows the new column and leaves the dropped one out.
	e.editConfig(t, "{name: 'dbo.drift_allowed', strategy: snapshot, columns: [id, a]}", "{name: 'dbo.drift_allowed', strategy: snapshot, columns: [id, a, extra]}")
	e.editConfig(t, "{name: 'dbo.drift_dropped', strategy: snapshot}", "{name: 'dbo.drift_dropped', strategy: snapshot, columns: [id, a]}")
	e.sync(t)
	compared += e.requireEqual(t, added, allowedNow, droppedNow, widenedNow, narrowedNow)

	figure(section, "schema changes between runs (added, allowed, dropped, widened, narrowed)", 5)
	figure(section, "tables stopped with a clear error (dropped column)", 1)
	figure(section, "rows compared", compared)
}

// TestReliabilityFuzzSeeds runs the fuzz targets of the configuration and
// position codecs over their kept seeds (fixtures, and the crashers fuzzing
// found), and counts them for the report; the soak run also fuzzes each
// target for a while and reports the executions.
func TestReliabilityFuzzSeeds(t *testing.T) {
	const section = "Bad input: fuzzing"
	targets := []struct{ pkg, fuzz string }{
		{"../pkg/config", "FuzzConfig"},
		{"../watermarks", "FuzzPosition"},
		{"../watermarks", "FuzzDecode"},
	}
	// One go test for all targets: the packages build and run in parallel.
	out, err := exec.Command("go", "test", "-count=1", "-v", "-run", "^(FuzzConfig|FuzzPosition|FuzzDecode)$", "../pkg/config", "../watermarks").CombinedOutput()
	require.NoError(t, err, "%s", out)
	seeds := 0
	for _, tg := range targets {
		n := strings.Count(string(out), "--- PASS: "+tg.fuzz+"/")
		require.Positive(t, n, "%s ran no seeds:\n%s", tg.fuzz, out)
		seeds += n
		if soak {
			out, err := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+tg.fuzz+"$", "-fuzztime", "60s", "-parallel", "1", tg.pkg).CombinedOutput()
			require.NoError(t, err, "%s found a failure (its input is now in the package's testdata/fuzz):\n%s", tg.fuzz, out)
			var execs int64
			for _, line := range strings.Split(string(out), "\n") {
				if i := strings.Index(line, "execs: "); i >= 0 {
					fmt.Sscan(line[i+len("execs: "):], &execs)
				}
			}
			figure(section, tg.fuzz+" executions (60 s)", execs)
		}
	}
	figure(section, "fuzz seeds run", seeds)
}
