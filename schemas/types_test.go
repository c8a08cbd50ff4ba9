package schemas

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// sqlServerTypes is every SQL Server type with a few parameterizations.
var sqlServerTypes = []string{
	"bit", "tinyint", "smallint", "int", "integer", "bigint",
	"decimal", "decimal(10)", "decimal(5,5)", "dec(9,2)", "numeric(19,2)", "numeric(38,10)", "numeric(12,0)", "numeric(38,0)",
	"money", "smallmoney",
	"float", "float(24)", "float(25)", "float(53)", "double precision", "real",
	"char", "char(4)", "nchar(10)", "varchar", "varchar(8)", "varchar(8000)", "varchar(max)",
	"nvarchar(50)", "nvarchar(max)", "sysname", "text", "ntext",
	"uniqueidentifier", "date",
	"time", "time(0)", "time(3)", "time(6)", "time(7)",
	"datetime",
	"datetime2", "datetime2(0)", "datetime2(3)", "datetime2(6)", "datetime2(7)",
	"smalldatetime",
	"datetimeoffset", "datetimeoffset(0)", "datetimeoffset(3)", "datetimeoffset(7)",
	"binary(16)", "varbinary(100)", "varbinary(max)", "image",
	"rowversion", "timestamp",
	"xml", "sql_variant", "hierarchyid", "geography", "geometry",
	"[nvarchar](max)", "NUMERIC ( 19 , 2 )",
	// Not carried: rendered as errors.
	"cursor", "json",
}

// postgresTypes is every PostgreSQL source type with its aliases.
var postgresTypes = []string{
	"boolean", "bool", "smallint", "int2", "smallserial", "integer", "int", "int4", "serial", "bigint", "int8", "bigserial",
	"numeric", "numeric(19,2)", "numeric(38,10)", "numeric(10)", "decimal(12,4)", "numeric(40,2)", "numeric(5,6)", "numeric(3,-2)",
	"real", "float4", "double precision", "float8", "float", "float(10)", "float(40)",
	"text", "varchar", "varchar(20)", "character varying", "character varying(20)",
	"char", "char(4)", "character(1)", "bpchar(3)",
	"uuid", "date",
	"time", "time(3)", "time without time zone", "time(0) without time zone",
	"timestamp", "timestamp(0)", "timestamp(3)", "timestamp(6) without time zone",
	"timestamptz", "timestamptz(3)", "timestamp with time zone", "timestamp(6) with time zone",
	"bytea", "json", "jsonb",
	// Not carried: rendered as errors.
	"interval", "timetz", "time(3) with time zone", "money", "point", "int[]",
}

func renderMappings(d Dialect, inputs []string) string {
	rows := [][]string{{"source", "arrow", "postgres", "lossy"}}
	for _, in := range inputs {
		src := in
		t, err := ParseType(d, in)
		if err == nil && t.String() != in {
			src = fmt.Sprintf("%s = %s", in, t)
		}
		if err == nil {
			var m Mapping
			m, err = Map(d, t)
			if err == nil {
				rows = append(rows, []string{src, m.Arrow.String(), m.Postgres, m.Lossy})
				continue
			}
		}
		rows = append(rows, []string{src, "-", "-", "error: " + err.Error()})
	}
	return renderTable(rows)
}

func TestMappingGolden(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		inputs  []string
	}{
		{name: "mapping_sqlserver", dialect: SQLServer, inputs: sqlServerTypes},
		{name: "mapping_postgres", dialect: Postgres, inputs: postgresTypes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden(t, tt.name, renderMappings(tt.dialect, tt.inputs))
		})
	}
}

func TestParseTypeRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		inputs  []string
	}{
		{name: "sqlserver", dialect: SQLServer, inputs: sqlServerTypes},
		{name: "postgres", dialect: Postgres, inputs: postgresTypes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, in := range tt.inputs {
				typ, err := ParseType(tt.dialect, in)
				if err != nil {
					continue // the unknown names at the end of the lists
				}
				again, err := ParseType(tt.dialect, typ.String())
				require.NoError(t, err, "reparse %q (from %q)", typ.String(), in)
				require.Equal(t, typ, again, "round trip of %q through %q", in, typ.String())
			}
		})
	}
}

func TestParseType(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		in      string
		want    Type
	}{
		{name: "numeric", dialect: SQLServer, in: "numeric(19,2)", want: Type{Name: "numeric", Precision: 19, Scale: 2}},
		{name: "decimal default", dialect: SQLServer, in: "decimal", want: Type{Name: "decimal", Precision: -1}},
		{name: "decimal precision only", dialect: SQLServer, in: "decimal(10)", want: Type{Name: "decimal", Precision: 10}},
		{name: "varchar", dialect: SQLServer, in: "varchar(8)", want: Type{Name: "varchar", Length: 8}},
		{name: "nvarchar max", dialect: SQLServer, in: "NVARCHAR(MAX)", want: Type{Name: "nvarchar", Length: Max}},
		{name: "bracketed", dialect: SQLServer, in: "[varchar](8)", want: Type{Name: "varchar", Length: 8}},
		{name: "char no length", dialect: SQLServer, in: "char", want: Type{Name: "char"}},
		{name: "datetime2(7)", dialect: SQLServer, in: "datetime2(7)", want: Type{Name: "datetime2", Precision: 7}},
		{name: "datetime2(0)", dialect: SQLServer, in: "datetime2(0)", want: Type{Name: "datetime2", Precision: 0}},
		{name: "datetime2 default", dialect: SQLServer, in: "datetime2", want: Type{Name: "datetime2", Precision: -1}},
		{name: "timestamp is rowversion", dialect: SQLServer, in: "timestamp", want: Type{Name: "rowversion"}},
		{name: "uniqueidentifier", dialect: SQLServer, in: "uniqueidentifier", want: Type{Name: "uniqueidentifier"}},
		{name: "sysname", dialect: SQLServer, in: "sysname", want: Type{Name: "nvarchar", Length: 128}},
		{name: "double precision", dialect: SQLServer, in: "double precision", want: Type{Name: "float", Precision: 53}},
		{name: "float default", dialect: SQLServer, in: "float", want: Type{Name: "float", Precision: -1}},
		{name: "pg varchar", dialect: Postgres, in: "character varying(20)", want: Type{Name: "character varying", Length: 20}},
		{name: "pg int4", dialect: Postgres, in: "int4", want: Type{Name: "integer"}},
		{name: "pg numeric unconstrained", dialect: Postgres, in: "numeric", want: Type{Name: "numeric", Precision: -1}},
		{name: "pg numeric negative scale", dialect: Postgres, in: "numeric(3,-2)", want: Type{Name: "numeric", Precision: 3, Scale: -2}},
		{name: "pg timestamptz", dialect: Postgres, in: "timestamptz(3)", want: Type{Name: "timestamp with time zone", Precision: 3}},
		{name: "pg timestamp with zone after precision", dialect: Postgres, in: "timestamp(3) with time zone", want: Type{Name: "timestamp with time zone", Precision: 3}},
		{name: "pg timestamp", dialect: Postgres, in: "timestamp", want: Type{Name: "timestamp without time zone", Precision: -1}},
		{name: "pg float(10)", dialect: Postgres, in: "float(10)", want: Type{Name: "real"}},
		{name: "pg float", dialect: Postgres, in: "float", want: Type{Name: "double precision"}},
		{name: "pg bpchar", dialect: Postgres, in: "bpchar(3)", want: Type{Name: "character", Length: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseType(tt.dialect, tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseTypeErrors(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		in      string
		want    string // the whole message
		is      error  // optional sentinel
	}{
		{name: "precision too large", dialect: SQLServer, in: "numeric(40,2)", want: `sqlserver type "numeric(40,2)": precision 40 out of range 1..38`},
		{name: "negative length", dialect: SQLServer, in: "varchar(-1)", want: `sqlserver type "varchar(-1)": length -1 out of range 1..8000`},
		{name: "scale above precision", dialect: SQLServer, in: "numeric(5,6)", want: `sqlserver type "numeric(5,6)": scale 6 out of range 0..5 (the precision)`},
		{name: "unknown name", dialect: SQLServer, in: "nosuchtype", want: `sqlserver type "nosuchtype": unknown type`, is: ErrUnknownType},
		{name: "empty", dialect: SQLServer, in: "  ", want: `sqlserver type "  ": empty type`},
		{name: "zero precision", dialect: SQLServer, in: "decimal(0)", want: `sqlserver type "decimal(0)": precision 0 out of range 1..38`},
		{name: "negative precision", dialect: SQLServer, in: "numeric(-1)", want: `sqlserver type "numeric(-1)": precision -1 out of range 1..38`},
		{name: "varchar too long", dialect: SQLServer, in: "varchar(8001)", want: `sqlserver type "varchar(8001)": length 8001 out of range 1..8000`},
		{name: "nvarchar too long", dialect: SQLServer, in: "nvarchar(4001)", want: `sqlserver type "nvarchar(4001)": length 4001 out of range 1..4000`},
		{name: "char max", dialect: SQLServer, in: "char(max)", want: `sqlserver type "char(max)": char does not take (max)`},
		{name: "zero length", dialect: SQLServer, in: "varchar(0)", want: `sqlserver type "varchar(0)": length 0 out of range 1..8000`},
		{name: "datetime2 precision", dialect: SQLServer, in: "datetime2(8)", want: `sqlserver type "datetime2(8)": fractional-second precision 8 out of range 0..7`},
		{name: "negative fraction", dialect: SQLServer, in: "time(-1)", want: `sqlserver type "time(-1)": precision -1 is negative`},
		{name: "float precision", dialect: SQLServer, in: "float(54)", want: `sqlserver type "float(54)": float precision 54 out of range 1..53`},
		{name: "arguments on int", dialect: SQLServer, in: "int(4)", want: `sqlserver type "int(4)": int takes no arguments`},
		{name: "arguments on timestamp", dialect: SQLServer, in: "timestamp(3)", want: `sqlserver type "timestamp(3)": timestamp takes no arguments`},
		{name: "arguments on sysname", dialect: SQLServer, in: "sysname(4)", want: `sqlserver type "sysname(4)": sysname takes no arguments`},
		{name: "not an integer", dialect: SQLServer, in: "numeric(a,2)", want: `sqlserver type "numeric(a,2)": argument "a" is not an integer`},
		{name: "too many arguments", dialect: SQLServer, in: "numeric(1,2,3)", want: `sqlserver type "numeric(1,2,3)": want 1 to 2 arguments, got 3`},
		{name: "unbalanced", dialect: SQLServer, in: "varchar(8", want: `sqlserver type "varchar(8": unbalanced parentheses`},
		{name: "empty arguments", dialect: SQLServer, in: "varchar()", want: `sqlserver type "varchar()": empty arguments`},
		{name: "trailing text", dialect: SQLServer, in: "varchar(8) not null", want: `sqlserver type "varchar(8) not null": unexpected "not null" after the arguments`},
		{name: "unknown dialect", dialect: Dialect("oracle"), in: "number", want: `oracle type "number": unknown dialect "oracle"`},
		{name: "pg timestamp precision", dialect: Postgres, in: "timestamp(7)", want: `postgres type "timestamp(7)": fractional-second precision 7 out of range 0..6`},
		{name: "pg numeric precision", dialect: Postgres, in: "numeric(1001)", want: `postgres type "numeric(1001)": precision 1001 out of range 1..1000`},
		{name: "pg varchar max", dialect: Postgres, in: "varchar(max)", want: `postgres type "varchar(max)": character varying does not take (max)`},
		{name: "pg array", dialect: Postgres, in: "int[]", want: `postgres type "int[]": unknown type`, is: ErrUnknownType},
		{name: "pg float precision", dialect: Postgres, in: "float(54)", want: `postgres type "float(54)": float precision 54 out of range 1..53`},
		{name: "pg bad zone", dialect: Postgres, in: "timestamp(3) with local time zone", want: `postgres type "timestamp(3) with local time zone": unexpected "with local time zone" after the arguments`},
		{name: "pg sqlserver name", dialect: Postgres, in: "uniqueidentifier", want: `postgres type "uniqueidentifier": unknown type`, is: ErrUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseType(tt.dialect, tt.in)
			require.EqualError(t, err, tt.want)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		typ     Type
		want    string
		is      error
	}{
		{name: "interval", dialect: Postgres, typ: Type{Name: "interval", Precision: -1}, want: `postgres type "interval": unsupported type`, is: ErrUnsupportedType},
		{name: "timetz", dialect: Postgres, typ: Type{Name: "time with time zone", Precision: 3}, want: `postgres type "time(3) with time zone": unsupported type`, is: ErrUnsupportedType},
		{name: "hand-built precision out of range", dialect: SQLServer, typ: Type{Name: "numeric", Precision: 40, Scale: 2}, want: `sqlserver type "numeric(40,2)": precision 40 out of range 1..38`},
		{name: "hand-built alias", dialect: SQLServer, typ: Type{Name: "timestamp"}, want: `sqlserver type "timestamp": unknown type`, is: ErrUnknownType},
		{name: "precision on plain type", dialect: SQLServer, typ: Type{Name: "int", Precision: 3}, want: `sqlserver type "int": int takes no precision`},
		{name: "length on numeric", dialect: SQLServer, typ: Type{Name: "numeric", Length: 3, Precision: -1}, want: `sqlserver type "numeric(3)": numeric takes no length`},
		{name: "wrong dialect", dialect: SQLServer, typ: Type{Name: "uuid"}, want: `sqlserver type "uuid": unknown type`, is: ErrUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Map(tt.dialect, tt.typ)
			require.EqualError(t, err, tt.want)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
		})
	}
}

// TestExactTypesNeverFloat guards P13: exact source types map to decimal128
// and numeric, never to a floating-point type.
func TestExactTypesNeverFloat(t *testing.T) {
	tests := []struct {
		name    string
		dialect Dialect
		in      string
		arrow   string
		store   string
	}{
		{name: "numeric(19,2)", dialect: SQLServer, in: "numeric(19,2)", arrow: "decimal(19, 2)", store: "numeric(19,2)"},
		{name: "numeric(38,10)", dialect: SQLServer, in: "numeric(38,10)", arrow: "decimal(38, 10)", store: "numeric(38,10)"},
		{name: "decimal default", dialect: SQLServer, in: "decimal", arrow: "decimal(18, 0)", store: "numeric(18,0)"},
		{name: "money", dialect: SQLServer, in: "money", arrow: "decimal(19, 4)", store: "numeric(19,4)"},
		{name: "smallmoney", dialect: SQLServer, in: "smallmoney", arrow: "decimal(10, 4)", store: "numeric(10,4)"},
		{name: "pg numeric", dialect: Postgres, in: "numeric(12,4)", arrow: "decimal(12, 4)", store: "numeric(12,4)"},
		{name: "pg unconstrained numeric", dialect: Postgres, in: "numeric", arrow: "utf8", store: "numeric"},
		{name: "pg wide numeric", dialect: Postgres, in: "numeric(40,2)", arrow: "utf8", store: "numeric(40,2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, err := ParseType(tt.dialect, tt.in)
			require.NoError(t, err)
			m, err := Map(tt.dialect, typ)
			require.NoError(t, err)
			require.Equal(t, tt.arrow, m.Arrow.String())
			require.Equal(t, tt.store, m.Postgres)
			require.Empty(t, m.Lossy)
		})
	}
}

// TestStoreTypesReparse: every store type Map produces is a PostgreSQL type
// that maps to itself, so a table copied to PostgreSQL (AsPostgres) and
// synced again lands in the same store types.
func TestStoreTypesReparse(t *testing.T) {
	for _, d := range []Dialect{SQLServer, Postgres} {
		inputs := sqlServerTypes
		if d == Postgres {
			inputs = postgresTypes
		}
		for _, in := range inputs {
			typ, err := ParseType(d, in)
			if err != nil {
				continue
			}
			m, err := Map(d, typ)
			if err != nil {
				continue
			}
			t.Run(string(d)+"/"+in, func(t *testing.T) {
				pt, err := ParseType(Postgres, m.Postgres)
				require.NoError(t, err)
				again, err := Map(Postgres, pt)
				require.NoError(t, err)
				require.Equal(t, m.Postgres, again.Postgres)
				require.Equal(t, m.Postgres, pt.String(), "store type is spelled canonically")
			})
		}
	}
}

func TestKindOfNameAgrees(t *testing.T) {
	// A canonical name in both dialects must take the same arguments, or
	// Type.String could not be dialect-free.
	for name, ss := range dialects[SQLServer].specs {
		if pg, ok := dialects[Postgres].specs[name]; ok {
			require.Equal(t, ss.kind, pg.kind, name)
		}
	}
}

func TestParseDialect(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Dialect
		wantErr string
	}{
		{name: "sqlserver", in: "sqlserver", want: SQLServer},
		{name: "postgres upper", in: " Postgres ", want: Postgres},
		{name: "unknown", in: "mysql", wantErr: `unknown dialect "mysql" (want "sqlserver" or "postgres")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDialect(tt.in)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
