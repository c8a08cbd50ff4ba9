package schemas

import (
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/extensions"
)

// Mapping is where one source type lands in Arrow and in the store.
type Mapping struct {
	// Arrow is the type of the column in change batches. Shared instances:
	// never modify.
	Arrow arrow.DataType
	// Postgres is the store column type, spelled exactly as PostgreSQL's
	// format_type() prints it ("numeric(19,2)",
	// "timestamp(3) without time zone", "uuid", "bytea"), so that drift
	// checks can compare it with the live catalog as text.
	Postgres string
	// Lossy is empty when every source value survives the trip unchanged;
	// otherwise one sentence saying what is lost and why.
	Lossy string
}

// Arrow types shared by the mappings.
var (
	// UUIDType is the Arrow type of uniqueidentifier and uuid columns: the
	// canonical arrow.uuid extension type over fixed_size_binary[16], the 16
	// bytes in RFC 4122 (big-endian, string) order.
	UUIDType arrow.DataType = extensions.NewUUIDType()
	// RowVersionType is the Arrow type of rowversion columns: the 8 bytes as
	// SQL Server sends them (big-endian; bytewise order is version order).
	RowVersionType arrow.DataType = &arrow.FixedSizeBinaryType{ByteWidth: 8}
	// LocalTimestampType is the Arrow type of zone-less date-times (datetime,
	// datetime2, smalldatetime, PostgreSQL timestamp): microseconds, no zone,
	// the wall-clock reading as stored at the source.
	LocalTimestampType arrow.DataType = &arrow.TimestampType{Unit: arrow.Microsecond}
	// InstantType is the Arrow type of datetimeoffset and timestamptz:
	// microseconds since the Unix epoch, zone "UTC".
	InstantType arrow.DataType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	// TimeOfDayType is the Arrow type of time columns: microseconds since
	// midnight.
	TimeOfDayType arrow.DataType = &arrow.Time64Type{Unit: arrow.Microsecond}
)

// Lossy sentences, one per documented decision (see the package comment).
const (
	lossy100ns = "The source keeps 100 ns but Arrow and PostgreSQL stop at microseconds, " +
		"so the 7th fractional digit is truncated"
	lossyOffset = "The instant is kept (as UTC) but the source's UTC offset is lost, " +
		"because PostgreSQL timestamptz stores no offset"
	lossyOffset100ns = lossyOffset + "; and the 7th fractional digit (100 ns) is truncated, " +
		"because Arrow and PostgreSQL stop at microseconds"
	lossyVariant = "Each value is carried as its text rendering, so its base type is lost " +
		"and the store can neither tell 1 from '1' nor compare values by type"
	lossyHierarchyID = "Kept as SQL Server's native binary serialization: nothing is dropped, " +
		"but PostgreSQL cannot read the path without converting it back in SQL Server"
	lossySpatial = "Kept as SQL Server's native CLR serialization (SRID included): nothing is dropped, " +
		"but PostgreSQL cannot use it as a spatial value without a converter"
)

// Map returns where a source type of dialect d lands in Arrow and in the
// store. Exact source types (decimal, numeric, money) always map to exact
// Arrow and store types, never to floating point. The error wraps
// ErrUnsupportedType (or a ParseType-style argument error) and names the
// type and the dialect.
func Map(d Dialect, t Type) (Mapping, error) {
	if err := checkType(d, t); err != nil {
		return Mapping{}, fmt.Errorf("%s type %q: %w", d, t.String(), err)
	}
	var (
		m  Mapping
		ok bool
	)
	switch d {
	case SQLServer:
		m, ok = mapSQLServer(t)
	case Postgres:
		m, ok = mapPostgres(t)
	}
	if !ok {
		return Mapping{}, fmt.Errorf("%s type %q: %w", d, t.String(), ErrUnsupportedType)
	}
	if m.Lossy != "" {
		m.Lossy += "."
	}
	return m, nil
}

func mapSQLServer(t Type) (Mapping, bool) {
	switch t.Name {
	case "bit":
		return Mapping{Arrow: arrow.FixedWidthTypes.Boolean, Postgres: "boolean"}, true
	case "tinyint":
		// 0..255: exact in uint8; PostgreSQL has no unsigned or 1-byte
		// integer, smallint holds the range.
		return Mapping{Arrow: arrow.PrimitiveTypes.Uint8, Postgres: "smallint"}, true
	case "smallint":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int16, Postgres: "smallint"}, true
	case "int":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int32, Postgres: "integer"}, true
	case "bigint":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int64, Postgres: "bigint"}, true
	case "decimal", "numeric":
		p, s := t.Precision, t.Scale
		if p == -1 {
			p, s = 18, 0
		}
		return decimal(p, s), true
	case "money":
		return decimal(19, 4), true
	case "smallmoney":
		return decimal(10, 4), true
	case "float":
		if t.Precision >= 1 && t.Precision <= 24 {
			return Mapping{Arrow: arrow.PrimitiveTypes.Float32, Postgres: "real"}, true
		}
		return Mapping{Arrow: arrow.PrimitiveTypes.Float64, Postgres: "double precision"}, true
	case "real":
		return Mapping{Arrow: arrow.PrimitiveTypes.Float32, Postgres: "real"}, true
	case "char", "nchar":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: character(t.Length)}, true
	case "varchar", "nvarchar", "text", "ntext":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "text"}, true
	case "uniqueidentifier":
		return Mapping{Arrow: UUIDType, Postgres: "uuid"}, true
	case "date":
		return Mapping{Arrow: arrow.FixedWidthTypes.Date32, Postgres: "date"}, true
	case "time":
		p := fraction(t.Precision, 7)
		return Mapping{Arrow: TimeOfDayType, Postgres: withPrecision("time", min(p, 6), " without time zone"), Lossy: lossyIf(p == 7, lossy100ns)}, true
	case "datetime":
		// 1/300 s ticks; the driver hands back the millisecond SQL Server
		// displays (.000, .003, .007), which timestamp(3) holds exactly.
		return Mapping{Arrow: LocalTimestampType, Postgres: "timestamp(3) without time zone"}, true
	case "datetime2":
		p := fraction(t.Precision, 7)
		return Mapping{Arrow: LocalTimestampType, Postgres: withPrecision("timestamp", min(p, 6), " without time zone"), Lossy: lossyIf(p == 7, lossy100ns)}, true
	case "smalldatetime":
		return Mapping{Arrow: LocalTimestampType, Postgres: "timestamp(0) without time zone"}, true
	case "datetimeoffset":
		p := fraction(t.Precision, 7)
		lossy := lossyOffset
		if p == 7 {
			lossy = lossyOffset100ns
		}
		return Mapping{Arrow: InstantType, Postgres: withPrecision("timestamp", min(p, 6), " with time zone"), Lossy: lossy}, true
	case "binary", "varbinary", "image":
		return Mapping{Arrow: arrow.BinaryTypes.Binary, Postgres: "bytea"}, true
	case "rowversion":
		return Mapping{Arrow: RowVersionType, Postgres: "bytea"}, true
	case "xml":
		// The serialized text is all SQL Server keeps of an xml value (it
		// drops the prolog and insignificant whitespace itself); text never
		// rejects a fragment or an encoding declaration the way PostgreSQL's
		// xml input can.
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "text"}, true
	case "sql_variant":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "text", Lossy: lossyVariant}, true
	case "hierarchyid":
		return Mapping{Arrow: arrow.BinaryTypes.Binary, Postgres: "bytea", Lossy: lossyHierarchyID}, true
	case "geography", "geometry":
		return Mapping{Arrow: arrow.BinaryTypes.Binary, Postgres: "bytea", Lossy: lossySpatial}, true
	}
	return Mapping{}, false
}

func mapPostgres(t Type) (Mapping, bool) {
	switch t.Name {
	case "boolean":
		return Mapping{Arrow: arrow.FixedWidthTypes.Boolean, Postgres: "boolean"}, true
	case "smallint":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int16, Postgres: "smallint"}, true
	case "integer":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int32, Postgres: "integer"}, true
	case "bigint":
		return Mapping{Arrow: arrow.PrimitiveTypes.Int64, Postgres: "bigint"}, true
	case "numeric":
		if t.Precision >= 1 && t.Precision <= 38 && t.Scale >= 0 && t.Scale <= t.Precision {
			return decimal(t.Precision, t.Scale), true
		}
		// Unconstrained numeric (and precision over 38, negative scale,
		// scale over precision) does not fit decimal128: the exact decimal
		// text travels as utf8 into a store numeric of the same declaration.
		store := "numeric"
		if t.Precision != -1 {
			store = "numeric(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
		}
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: store}, true
	case "real":
		return Mapping{Arrow: arrow.PrimitiveTypes.Float32, Postgres: "real"}, true
	case "double precision":
		return Mapping{Arrow: arrow.PrimitiveTypes.Float64, Postgres: "double precision"}, true
	case "text", "character varying":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "text"}, true
	case "character":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: character(t.Length)}, true
	case "uuid":
		return Mapping{Arrow: UUIDType, Postgres: "uuid"}, true
	case "date":
		return Mapping{Arrow: arrow.FixedWidthTypes.Date32, Postgres: "date"}, true
	case "time without time zone":
		return Mapping{Arrow: TimeOfDayType, Postgres: withPrecision("time", t.Precision, " without time zone")}, true
	case "timestamp without time zone":
		return Mapping{Arrow: LocalTimestampType, Postgres: withPrecision("timestamp", t.Precision, " without time zone")}, true
	case "timestamp with time zone":
		return Mapping{Arrow: InstantType, Postgres: withPrecision("timestamp", t.Precision, " with time zone")}, true
	case "bytea":
		return Mapping{Arrow: arrow.BinaryTypes.Binary, Postgres: "bytea"}, true
	case "json":
		// json keeps its text exactly (whitespace, key order, duplicate
		// keys); jsonb would normalize it.
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "json"}, true
	case "jsonb":
		return Mapping{Arrow: arrow.BinaryTypes.String, Postgres: "jsonb"}, true
	}
	// time with time zone and interval are known but not carried.
	return Mapping{}, false
}

func decimal(p, s int) Mapping {
	return Mapping{
		Arrow:    &arrow.Decimal128Type{Precision: int32(p), Scale: int32(s)},
		Postgres: "numeric(" + strconv.Itoa(p) + "," + strconv.Itoa(s) + ")",
	}
}

// character is the store type of char(n) and nchar(n): blank-padded like the
// source, comparing without trailing blanks like the source. An undeclared
// length is 1 in both dialects.
func character(n int) string {
	if n == 0 {
		n = 1
	}
	return "character(" + strconv.Itoa(n) + ")"
}

// fraction resolves an unspecified fractional-second precision.
func fraction(p, dflt int) int {
	if p == -1 {
		return dflt
	}
	return p
}

// withPrecision spells a PostgreSQL time type: "timestamp(3) with time zone",
// or "timestamp with time zone" when p is -1.
func withPrecision(base string, p int, zone string) string {
	if p == -1 {
		return base + zone
	}
	return base + "(" + strconv.Itoa(p) + ")" + zone
}

func lossyIf(cond bool, s string) string {
	if cond {
		return s
	}
	return ""
}
