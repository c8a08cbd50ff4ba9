package tdstest_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/golang-sql/civil"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// capture records the requests and answers each with no rows.
func capture() (tdstest.Handler, <-chan *tdstest.Request) {
	reqs := make(chan *tdstest.Request, 16)
	return tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		reqs <- req
		return []tdstest.Result{{RowsAffected: 1}}, nil
	}), reqs
}

func TestParameters(t *testing.T) {
	ist := time.FixedZone("", 5*3600+30*60)
	guid := mssql.UniqueIdentifier{0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	wireGUID, err := guid.Value()
	require.NoError(t, err)
	cases := []struct {
		name  string
		arg   any
		typ   string
		value any
		raw   []byte // nil: not checked
	}{
		{"int64", int64(-5), "bigint", int64(-5), []byte{0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"int32", int32(7), "int", int64(7), []byte{7, 0, 0, 0}},
		{"int16", int16(-2), "smallint", int64(-2), nil},
		{"byte", byte(200), "tinyint", int64(200), nil},
		{"string", "José 😀", "nvarchar(7)", "José 😀", nil},
		{"empty string", "", "nvarchar(max)", "", []byte{}},
		{"VarChar", mssql.VarChar("abc"), "varchar(3)", "abc", []byte("abc")},
		{"VarChar UTF-8 read as CP1252", mssql.VarChar("José"), "varchar(5)", "JosÃ©", []byte("José")},
		{"NVarCharMax", mssql.NVarCharMax("long"), "nvarchar(max)", "long", nil},
		{"VarCharMax", mssql.VarCharMax("long"), "varchar(max)", "long", []byte("long")},
		{"NChar", mssql.NChar("ab"), "nchar(2)", "ab", nil},
		{"bytes", []byte{1, 2, 3}, "varbinary(3)", []byte{1, 2, 3}, []byte{1, 2, 3}},
		{"UniqueIdentifier", guid, "uniqueidentifier", wireGUID, wireGUID.([]byte)},
		{"DateTime1", mssql.DateTime1(utc(2020, 1, 2, 3, 4, 5, 7_000_000)), "datetime", utc(2020, 1, 2, 3, 4, 5, 7_000_000), nil},
		{"time.Time", time.Date(2021, 3, 4, 5, 6, 7, 123_456_700, ist), "datetimeoffset(7)", time.Date(2021, 3, 4, 5, 6, 7, 123_456_700, ist), nil},
		{"DateTimeOffset", mssql.DateTimeOffset(time.Date(2021, 3, 4, 5, 6, 7, 0, ist)), "datetimeoffset(7)", time.Date(2021, 3, 4, 5, 6, 7, 0, ist), nil},
		{"civil.Date", civil.Date{Year: 2020, Month: 2, Day: 29}, "date", utc(2020, 2, 29, 0, 0, 0, 0), nil},
		{"civil.Time", civil.Time{Hour: 13, Minute: 14, Second: 15, Nanosecond: 100}, "time(7)", utc(1, 1, 1, 13, 14, 15, 100), nil},
		{"civil.DateTime", civil.DateTime{Date: civil.Date{Year: 9999, Month: 12, Day: 31}, Time: civil.Time{Hour: 23, Minute: 59, Second: 59, Nanosecond: 999_999_900}}, "datetime2(7)", utc(9999, 12, 31, 23, 59, 59, 999_999_900), nil},
		{"float64", 2.5, "float", 2.5, nil},
		{"float32", float32(1.25), "real", 1.25, nil},
		{"bool", true, "bit", true, []byte{1}},
		{"nil", nil, "nvarchar(1)", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, reqs := capture()
			s := tdstest.Start(t, tdstest.Config{Handler: h})
			_, err := open(t, s).Exec("insert t values (@p1)", tc.arg)
			require.NoError(t, err)
			req := <-reqs
			require.Equal(t, "insert t values (@p1)", req.SQL)
			require.Empty(t, req.Proc)
			require.Len(t, req.Params, 1)
			p := req.Params[0]
			require.Equal(t, "@p1", p.Name)
			want := typ(t, tc.typ)
			if tc.typ == "time(7)" {
				want = schemas.Type{Name: "time", Precision: -1} // declared as "time"
			}
			require.Equal(t, want, p.Type)
			if wt, ok := tc.value.(time.Time); ok {
				gt, ok := p.Value.(time.Time)
				require.True(t, ok, "value of type %T", p.Value)
				require.True(t, wt.Equal(gt), "got %v, want %v", gt, wt)
				_, wo := wt.Zone()
				_, gotOff := gt.Zone()
				require.Equal(t, wo, gotOff)
			} else {
				require.Equal(t, tc.value, p.Value)
			}
			if tc.value == nil {
				require.Nil(t, p.Raw)
			}
			if tc.raw != nil {
				require.Equal(t, tc.raw, p.Raw)
			}
			require.False(t, p.Output)
		})
	}
}

func TestVarCharParameterCollation(t *testing.T) {
	h, reqs := capture()
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	_, err := open(t, s).Exec("select @p1, @p2", mssql.VarChar("€"), "x")
	require.NoError(t, err)
	req := <-reqs
	require.Len(t, req.Params, 2)
	// go-mssqldb sends VarChar with a collation of zeros: SQL Server reads
	// it in the database's code page.
	require.NotNil(t, req.Params[0].Collation)
	require.Equal(t, 1252, req.Params[0].Collation.CodePage)
	require.Zero(t, req.Params[0].Collation.SortID)
	require.Equal(t, "â‚¬", req.Params[0].Value)
	require.Nil(t, req.Params[1].Collation)
}

func TestNamedParametersAndProcedures(t *testing.T) {
	h, reqs := capture()
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)

	_, err := db.Exec("select @id, @name", sql.Named("id", int64(5)), sql.Named("name", "x"))
	require.NoError(t, err)
	req := <-reqs
	require.Equal(t, []string{"@id", "@name"}, []string{req.Params[0].Name, req.Params[1].Name})

	_, err = db.Exec("dbo.GetPatient", sql.Named("id", int64(5)))
	require.NoError(t, err)
	req = <-reqs
	require.Equal(t, "dbo.GetPatient", req.Proc)
	require.Empty(t, req.SQL)
	require.Len(t, req.Params, 1)
	require.Equal(t, "@id", req.Params[0].Name)

	// sp_executesql called by name, its declarations checked.
	_, err = db.Exec("sp_executesql", "select @a", "@a int", sql.Named("a", int64(1)))
	require.NoError(t, err)
	req = <-reqs
	require.Equal(t, "select @a", req.SQL)
	require.Len(t, req.Params, 1)

	_, err = db.Exec("sp_executesql", "select @a", "@a int", sql.Named("b", int64(1)))
	require.EqualValues(t, 8145, mssqlError(t, err).Number)
	_, err = db.Exec("sp_executesql", "select @a, @b", "@a int, @b decimal(10, 2)", sql.Named("a", int64(1)))
	e := mssqlError(t, err)
	require.EqualValues(t, 8178, e.Number)
	require.Contains(t, e.Message, "'@b'")
	_, err = db.Exec("sp_executesql", mssql.VarChar("select 1"))
	require.EqualValues(t, 214, mssqlError(t, err).Number, "@statement must be nvarchar")
	require.Empty(t, reqs, "the Handler is not called for a request SQL Server rejects")
}
