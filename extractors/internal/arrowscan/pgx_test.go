package arrowscan

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgxCase is one table read both ways: its columns (name, catalog type,
// source type), and rows as SQL value lists.
type pgxCase struct {
	name    string
	dialect schemas.Dialect
	cols    [][3]string
	rows    []string
	valid   int // the first valid rows can be read; the others are rejected
}

func pgxCases() []pgxCase {
	pg := [][3]string{
		{"b", "boolean", "boolean"},
		{"i2", "smallint", "smallint"},
		{"i4", "integer", "integer"},
		{"i8", "bigint", "bigint"},
		{"n", "numeric(19,2)", "numeric(19,2)"},
		{"n38", "numeric(38,10)", "numeric(38,10)"},
		{"n0", "numeric(5,0)", "numeric(5,0)"},
		{"n4", "numeric(10,4)", "numeric(10,4)"},
		{"nu", "numeric", "numeric"},
		{"r", "real", "real"},
		{"d", "double precision", "double precision"},
		{"t", "text", "text"},
		{"vc", "character varying(20)", "varchar(20)"},
		{"c", "character(4)", "char(4)"},
		{"u", "uuid", "uuid"},
		{"dt", "date", "date"},
		{"tm", "time without time zone", "time"},
		{"ts", "timestamp without time zone", "timestamp(6)"},
		{"ts3", "timestamp(3) without time zone", "timestamp(3)"},
		{"tz", "timestamp with time zone", "timestamptz"},
		{"by", "bytea", "bytea"},
		{"j", "json", "json"},
		{"jb", "jsonb", "jsonb"},
	}
	// The synthetic NextGen source: SQL Server types held in their closest
	// PostgreSQL types (pkg/synth).
	ss := [][3]string{
		{"guid", "uniqueidentifier", "uuid"},
		{"practice_id", "char(4)", "char(4)"},
		{"amt", "numeric(19,2)", "numeric(19,2)"},
		{"fee", "money", "numeric(19,4)"},
		{"small_fee", "smallmoney", "numeric(10,4)"},
		{"cnt", "tinyint", "smallint"},
		{"small", "smallint", "smallint"},
		{"num", "int", "integer"},
		{"big", "bigint", "bigint"},
		{"flag", "bit", "boolean"},
		{"modified", "datetime", "timestamp(3)"},
		{"precise", "datetime2(7)", "timestamp(6)"},
		{"posted", "datetimeoffset(7)", "timestamptz"},
		{"day", "date", "date"},
		{"code", "varchar(8)", "varchar(8)"},
		{"note", "nvarchar(max)", "text"},
		{"rv", "rowversion", "bigint"},
		{"narrow", "numeric(5,2)", "numeric(19,2)"},
	}
	return []pgxCase{
		{name: "postgres types", dialect: schemas.Postgres, cols: pg, valid: 7, rows: []string{
			// NULLs everywhere.
			strings.TrimSuffix(strings.Repeat("NULL, ", len(pg)), ", "),
			`true, 1, 2, 3, 1.50, 1.5, 7, 0.0001, 1.50, 1.5, 2.25, 'a', 'b', 'c', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
			 '2026-01-05', '08:00:01.5', '2026-01-05 08:00:00.123456', '2026-01-05 08:00:00.123', '2026-01-05 08:00:00.123456+02',
			 '\x00ff', '{"b": 1,  "a": 2}', '{"b": 1, "a": 2}'`,
			// Extremes.
			`false, -32768, -2147483648, -9223372036854775808, -99999999999999999.99,
			 -9999999999999999999999999999.9999999999, -99999, -999999.9999, -123456789012345678901234567890.123456789,
			 -3.4e38, -1.7976931348623157e308, '', '', '    ', '00000000-0000-0000-0000-000000000000',
			 '0001-01-01', '00:00:00', '0001-01-01 00:00:00', '1900-01-01 00:00:00', '0001-01-01 00:00:00+00',
			 '\x', '[]', 'null'`,
			`true, 32767, 2147483647, 9223372036854775807, 99999999999999999.99,
			 9999999999999999999999999999.9999999999, 99999, 999999.9999, 0.000000000000000000001,
			 3.4e38, 1.7976931348623157e308, 'ünïcødé ✓', 'héllo', 'x', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
			 '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999', '9999-12-31 23:59:59.999999+00',
			 '\xdeadbeef', '{"k": "v"}', '{"k": [1, 2]}'`,
			`true, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 'z', 'z', 'z', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12',
			 '1970-01-01', '12:00', '1970-01-01 00:00:00', '1999-12-31 23:59:59.999', '1970-01-01 00:00:00+00',
			 '\x00', '1', '2'`,
			`true, 1, 1, 92233720368547758, 0.01, 0.0000000001, 1, 12345.6789, 1e-20, 1.17549435e-38, 5e-324,
			 'tab	x', 'q''uote', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13',
			 '2000-01-01', '00:00:00.000001', '2000-01-01 00:00:00', '2000-01-01 00:00:00.001', '2000-01-01 00:00:00+00',
			 '\x01', '"s"', '"s"'`,
			`true, -1, -1, -1, -0.01, -0.0000000001, -1, -0.0001, -1e20, 'NaN', 'Infinity', 't', 'v', 'cc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14',
			 '1999-12-31', '23:59:59', '1999-12-31 23:59:59.999999', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999+00',
			 '\x02', '{}', '{}'`,
			// Values neither path carries: one per row.
			`true, -1, -1, -1, 'NaN', 1, -1, 100000, 1, '-Infinity', '-Infinity', 't', 'v', 'cc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15',
			 '1999-12-31', '23:59:59', '1999-12-31 23:59:59', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999+00',
			 '\x02', '{}', '{}'`,
			`true, -1, -1, -1, 1, 1, -1, 100000, 1, '-Infinity', '-Infinity', 't', 'v', 'cc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15',
			 'infinity', '23:59:59', '1999-12-31 23:59:59', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999+00',
			 '\x02', '{}', '{}'`,
			`true, -1, -1, -1, 1, 1, -1, 100000, 1, '-Infinity', '-Infinity', 't', 'v', 'cc', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15',
			 '1999-12-31', '23:59:59', '-infinity', '1969-12-31 23:59:59.999', '1969-12-31 23:59:59.999999+00',
			 '\x02', '{}', '{}'`,
		}},
		{name: "synthetic source", dialect: schemas.SQLServer, cols: ss, valid: 3, rows: []string{
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0`,
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', '0001', -125.40, 922337203685477.5807, 214748.3647, 255, 32767, 2147483647, 9223372036854775807, true,
			 '2026-01-05 08:00:00.003', '2026-01-05 08:00:00.123456', '2026-01-05 08:00:00.123456-05', '2026-01-05', '20260105', 'n', 9223372036854775807, 999.99`,
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a13', 'ab  ', -99999999999999999.99, -922337203685477.5808, -214748.3648, 0, -32768, -2147483648, -9223372036854775808, false,
			 '1753-01-01 00:00:00', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '0001-01-01', '', '', 1, -999.99`,
			// Values neither path carries: one per row.
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a14', NULL, NULL, NULL, NULL, 256, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL`,
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a15', NULL, NULL, NULL, NULL, -1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL`,
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a16', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, 1000.00`,
			`'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a17', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, -1, NULL`,
		}},
	}
}

// TestReadPgxEqualsRead reads the same rows through database/sql (Read, the
// oracle) and through pgx's raw values (ReadPgx), whole and in chunks that
// stop at the row and the byte bounds, and requires the same batches, the
// same last-row values and the same errors.
func TestReadPgxEqualsRead(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	db, err := sql.Open("pgx", url)
	require.NoError(t, err)
	defer db.Close()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)

	for ci, tc := range pgxCases() {
		t.Run(tc.name, func(t *testing.T) {
			table := &schemas.Table{Schema: "public", Name: fmt.Sprintf("pgx_%d", ci), Dialect: tc.dialect, Key: []string{"k"}}
			typ, err := schemas.ParseType(tc.dialect, map[schemas.Dialect]string{schemas.Postgres: "integer", schemas.SQLServer: "int"}[tc.dialect])
			require.NoError(t, err)
			table.Columns = append(table.Columns, schemas.Column{Name: "k", Type: typ})
			defs := []string{"k integer PRIMARY KEY"}
			for _, c := range tc.cols {
				typ, err := schemas.ParseType(tc.dialect, c[1])
				require.NoError(t, err, c[1])
				table.Columns = append(table.Columns, schemas.Column{Name: c[0], Type: typ, Nullable: true})
				defs = append(defs, pgx.Identifier{c[0]}.Sanitize()+" "+c[2])
			}
			require.NoError(t, table.Validate())
			name := pgx.Identifier{table.Name}.Sanitize()
			_, err = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+name+"; CREATE TABLE "+name+" ("+strings.Join(defs, ", ")+")")
			require.NoError(t, err)
			for i, r := range tc.rows {
				_, err := db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s VALUES (%d, %s)", name, i, r))
				require.NoError(t, err, "row %d", i)
			}
			s, err := New(schemas.Postgres, table)
			require.NoError(t, err)
			var cols []string
			for _, c := range table.Columns {
				cols = append(cols, pgx.Identifier{c.Name}.Sanitize())
			}
			// Each row alone (so that a row one path rejects does not hide
			// the others), then every row in chunks.
			var queries []string
			for i := range tc.rows {
				queries = append(queries, fmt.Sprintf("SELECT %s FROM %s WHERE k = %d", strings.Join(cols, ", "), name, i))
			}
			all := fmt.Sprintf("SELECT %s FROM %s WHERE k < %d ORDER BY k", strings.Join(cols, ", "), name, tc.valid)
			for i, q := range queries {
				require.Equal(t, i < tc.valid, compareReads(t, ctx, db, conn, s, q, Limits{Rows: 1000}), "row %d", i)
			}
			for _, lim := range []Limits{{Rows: 1000}, {Rows: 2}, {Rows: 1000, Bytes: 150}} {
				require.True(t, compareReads(t, ctx, db, conn, s, all, lim), "all rows with limits %+v", lim)
			}
		})
	}
}

// compareReads runs query both ways, reading up to lim, and reports
// whether the rows were read (both paths must agree on that too).
func compareReads(t *testing.T, ctx context.Context, db *sql.DB, conn *pgx.Conn, s *Scanner, query string, lim Limits) bool {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	var oldSeq, newSeq int64 = 10, 10
	rows, err := db.QueryContext(ctx, query)
	require.NoError(t, err)
	ob := s.NewBatch(mem)
	defer ob.Release()
	oldRes, oldErr := s.Read(rows, ob, schemas.OpUpdate, &oldSeq, lim)
	require.NoError(t, rows.Close())

	prows, err := conn.Query(ctx, query, PgxResultFormats)
	require.NoError(t, err)
	nb := s.NewBatch(mem)
	defer nb.Release()
	newRes, newErr := s.ReadPgx(prows, conn.TypeMap(), nb, schemas.OpUpdate, &newSeq, lim)
	prows.Close()
	require.NoError(t, prows.Err())

	if oldErr != nil || newErr != nil {
		require.Error(t, oldErr, "%s: only the pgx path failed: %v", query, newErr)
		require.Error(t, newErr, "%s: only the database/sql path failed: %v", query, oldErr)
		require.Equal(t, oldErr.Error(), newErr.Error(), query)
		return false
	}
	require.Equal(t, oldRes.Rows, newRes.Rows, query)
	require.Equal(t, oldRes.Stopped, newRes.Stopped, query)
	require.Equal(t, oldSeq, newSeq)
	require.Equal(t, ob.Bytes(), nb.Bytes(), "%s: batch byte counts differ", query)
	require.Equal(t, len(oldRes.Last), len(newRes.Last))
	for i := range oldRes.Last {
		on, err := s.Native(i, oldRes.Last[i])
		require.NoError(t, err)
		nn, err := s.Native(i, newRes.Last[i])
		require.NoError(t, err)
		if f, isFloat := on.(float64); isFloat && f != f { // NaN
			on, nn = fmt.Sprint(on), fmt.Sprint(nn)
		}
		require.Equal(t, on, nn, "%s: last value of column %s", query, s.cols[i].name)
	}
	orec, nrec := ob.NewRecordBatch(), nb.NewRecordBatch()
	defer orec.Release()
	defer nrec.Release()
	require.NoError(t, schemas.ValidateChangeBatch(s.Table(), nrec))
	for c := 0; c < int(orec.NumCols()); c++ {
		// Exact equality, except that NaN equals NaN.
		require.True(t, array.ApproxEqual(orec.Column(c), nrec.Column(c), array.WithNaNsEqual(true), array.WithAbsTolerance(0)),
			"%s: column %s differs:\n%v\n%v", query, orec.ColumnName(c), orec.Column(c), nrec.Column(c))
	}
	require.True(t, orec.Schema().Equal(nrec.Schema()))
	return oldRes.Rows > 0
}

// TestReadPgxReportsTheQuerysOwnFailure: a query that fails before it
// describes its columns (here at planning; in production, a connection
// lost mid-way) reports its own error, not a column-count mismatch, so the
// error's class (transient, permission, ...) is right.
func TestReadPgxReportsTheQuerysOwnFailure(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.URL(t))
	require.NoError(t, err)
	defer conn.Close(ctx)
	typ, err := schemas.ParseType(schemas.Postgres, "integer")
	require.NoError(t, err)
	table := &schemas.Table{Schema: "public", Name: "t", Dialect: schemas.Postgres, Key: []string{"k"},
		Columns: []schemas.Column{{Name: "k", Type: typ}}}
	s, err := New(schemas.Postgres, table)
	require.NoError(t, err)
	rows, err := conn.Query(ctx, "SELECT 1/0 AS k", PgxResultFormats)
	if err == nil {
		b := s.NewBatch(memory.NewGoAllocator())
		defer b.Release()
		var seq int64
		_, err = s.ReadPgx(rows, conn.TypeMap(), b, schemas.OpInsert, &seq, Limits{Rows: 10})
		rows.Close()
	}
	var pg *pgconn.PgError
	require.ErrorAs(t, err, &pg, "got %v", err)
	require.Equal(t, "22012", pg.Code)
}

// TestNumericToDecimal: the binary numeric fast path converts what it
// takes as ParseDecimal (the text path, the oracle) does, takes the common
// values, and leaves to the text path what is not exact or does not fit.
func TestNumericToDecimal(t *testing.T) {
	m := pgtype.NewMap()
	tests := []struct {
		text             string
		precision, scale int32
		fast             bool // the fast path takes it
	}{
		{"0", 19, 2, true},
		{"1.50", 19, 2, true},
		{"-125.40", 19, 2, true},
		{"0.01", 19, 2, true},
		{"999999999999999.99", 19, 2, true},
		{"9999999999999999.99", 19, 2, false}, // 20 digits with the 00 beyond scale of the last base-10000 digit: more than 64 bits
		{"-999999999999999.99", 19, 2, true},
		{"922337203685477.5807", 19, 4, true},
		{"12345.6789", 10, 4, true},
		{"0.0000000001", 38, 10, true},
		{"100000", 6, 0, true},
		{"999.99", 5, 2, true},
		{"1000.00", 5, 2, false},   // beyond precision
		{"1.234", 19, 2, false},    // digits beyond scale
		{"1.230", 19, 2, true},     // zeros beyond scale
		{"0.001", 19, 2, false},    // likewise
		{"123.4567", 19, 3, false}, // digits beyond scale: a division that is not exact
		{"123.4560", 19, 3, true},  // one that is
		{"922337203685477.5807", 38, 4, true},
		{"922337203685477.5808", 38, 4, false}, // beyond int64
		{"1844674407370955161.5", 38, 0, false},
		{"18446744073709551616", 38, 0, false}, // 2^64: would wrap to 0
		{"123456789012345678901234567890", 38, 0, false},
		{"12.5", 19, 1, true},
		{"NaN", 19, 2, false},
		{"Infinity", 19, 2, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s(%d,%d)", tc.text, tc.precision, tc.scale), func(t *testing.T) {
			var n pgtype.Numeric
			require.NoError(t, n.Scan(tc.text))
			raw, err := m.Encode(pgtype.NumericOID, pgx.BinaryFormatCode, n, nil)
			require.NoError(t, err)
			got, ok := numericToDecimal(raw, tc.precision, tc.scale)
			require.Equal(t, tc.fast, ok)
			want, err := ParseDecimal(tc.text, tc.precision, tc.scale)
			if ok {
				require.NoError(t, err)
				require.Equal(t, want, got)
			}
		})
	}
}
