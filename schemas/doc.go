// Package schemas holds what ehrsync knows about source tables: parsed source
// column types and where each lands in Apache Arrow and in the PostgreSQL
// store (Map), the table catalog (the NextGen denied-claims tables ship as
// embedded YAML files, see NextGen and LoadCatalog), and the change-batch
// contract every extractor produces and the sink consumes (ChangeSchema,
// ValidateChangeBatch).
//
// It is a leaf: it imports no other package of this module.
//
// # Type mapping
//
// Every source type maps to one Arrow type (the type of the column in change
// batches) and one store type, spelled as PostgreSQL's format_type() prints
// it. Exact types stay exact: decimal, numeric, money and smallmoney travel as
// Arrow decimal128 with the source precision and scale and land in
// numeric(p,s), never through floating point (PITFALLS.md P13).
//
// SQL Server source:
//
//	source                       arrow                     store                            notes
//	bit                          bool                      boolean
//	tinyint                      uint8                     smallint                         0..255; PostgreSQL has no 1-byte integer
//	smallint/int/bigint          int16/int32/int64         smallint/integer/bigint
//	decimal/numeric(p,s)         decimal128(p,s)           numeric(p,s)                     no arguments: (18,0)
//	money / smallmoney           decimal128(19,4)/(10,4)   numeric(19,4)/numeric(10,4)
//	float(1..24) / real          float32                   real
//	float, float(25..53)         float64                   double precision
//	char(n), nchar(n)            utf8                      character(n)                     blank padding kept; both sides compare without it
//	varchar/nvarchar(n|max)      utf8                      text                             lengths not enforced in the store (widening needs no DDL)
//	text, ntext, xml             utf8                      text                             xml as its serialized text (see below)
//	uniqueidentifier             arrow.uuid extension      uuid                             RFC 4122 byte order (P12)
//	date                         date32                    date
//	time(0..6)                   time64[us]                time(n) without time zone
//	time, time(7)                time64[us]                time(6) without time zone        LOSSY: 100 ns digit truncated
//	datetime                     timestamp[us]             timestamp(3) without time zone   1/300 s ticks as .000/.003/.007 ms (below)
//	datetime2(0..6)              timestamp[us]             timestamp(n) without time zone
//	datetime2, datetime2(7)      timestamp[us]             timestamp(6) without time zone   LOSSY: 100 ns digit truncated
//	smalldatetime                timestamp[us]             timestamp(0) without time zone
//	datetimeoffset(n)            timestamp[us, tz=UTC]     timestamp(min(n,6)) with tz      LOSSY: offset lost, instant kept (+100 ns at n=7)
//	binary/varbinary(n|max)      binary                    bytea
//	image                        binary                    bytea
//	rowversion (timestamp)       fixed_size_binary[8]      bytea                            big-endian; bytewise order is version order
//	sql_variant                  utf8                      text                             LOSSY: base type lost
//	hierarchyid                  binary                    bytea                            LOSSY(opaque): native serialization
//	geography, geometry          binary                    bytea                            LOSSY(opaque): native CLR serialization
//
// PostgreSQL source (the synthetic source of the demo and tests, and EHRs on
// PostgreSQL): boolean, smallint, integer, bigint, real and double precision
// map to their Arrow twins and to themselves; numeric(p,s) with p <= 38 and
// 0 <= s <= p maps to decimal128(p,s) / numeric(p,s); any other numeric
// (unconstrained numeric, p > 38, negative scale) does not fit decimal128, so
// its exact decimal text travels as utf8 into a store numeric of the same
// declaration (NaN and Infinity included); text and character varying(n) map
// to utf8 / text; character(n) to utf8 / character(n); uuid to the
// arrow.uuid extension / uuid; date to date32 / date; time(n),
// timestamp(n) and timestamptz(n) to time64[us], timestamp[us] and
// timestamp[us, tz=UTC] with the same declaration in the store; bytea to
// binary / bytea; json to utf8 / json (kept verbatim) and jsonb to utf8 /
// jsonb. time with time zone and interval are refused (ErrUnsupportedType):
// exclude such columns with the column allow-list. No PostgreSQL mapping is
// lossy.
//
// # Decisions
//
//   - Every date-time travels as microseconds (the store's resolution): one
//     Arrow unit per kind keeps the sink to one conversion each. Sub-microsecond
//     digits (datetime2(7), time(7), datetimeoffset(7)) are truncated toward
//     the past, as time.Time.Truncate(time.Microsecond) does; never rounded, so
//     23:59:59.9999999 never becomes the next day. Cursor values for the
//     high-water mark keep the source's full precision in the watermarks
//     package; only row values are truncated. A key column must map exactly,
//     so Validate refuses a datetime2(7) key.
//   - datetime ticks are 1/300 s. go-mssqldb returns each tick as the
//     millisecond SQL Server itself displays (.000, .003, .007); distinct ticks
//     stay distinct and convert back to the same tick, so the mapping is
//     treated as exact and the store keeps timestamp(3).
//   - Zone-less date-times (datetime, datetime2, smalldatetime, PostgreSQL
//     timestamp) keep the source's wall-clock reading, with no zone in Arrow
//     or the store. go-mssqldb labels them UTC; extractors take the wall-clock
//     fields as they are and never shift them. The source's time zone is
//     connection configuration, not data.
//   - datetimeoffset keeps its instant in timestamptz (UTC in Arrow); its
//     offset is lost. arrow-go's timestamp_with_offset extension could carry
//     it, but the store has nowhere to put it without an extra column.
//   - uniqueidentifier is the canonical arrow.uuid extension type
//     (extensions.NewUUIDType, storage fixed_size_binary[16]) holding the
//     bytes in RFC 4122 order, the order of the string form. go-mssqldb hands
//     GUIDs over in SQL Server's mixed-endian wire order: extractors convert
//     with mssql.UniqueIdentifier. SQL Server sorts GUIDs by byte group, the
//     store sorts uuid bytewise: paging compares at the source, never in Go.
//   - Strings: char(n) and nchar(n) keep their blank padding and land in
//     character(n), which pads and compares the way SQL Server does; all
//     varying strings land in text. The store cannot hold U+0000 in text: a
//     value containing it is an error at the sink, never silently altered.
//     Keys compare by collation at the source (usually case- and
//     trailing-blank-insensitive) but bytewise in the store.
//   - xml is carried as its serialized text into text: SQL Server keeps no
//     more of an xml value than that, and PostgreSQL's xml input can reject
//     fragments and encoding declarations or be missing (no libxml).
//   - sql_variant is carried as text (the extractor renders the value with
//     its column type's canonical form: decimals at full scale, date-times in
//     ISO 8601 with all fractional digits); its base type is lost. A SQL
//     Server variant holding binary or uniqueidentifier data is refused with
//     the fix (go-mssqldb hands both over as bytes that cannot be told from
//     a decimal's text): convert it at the source, or leave the column out.
//   - hierarchyid, geography and geometry are carried as their native SQL
//     Server serialization in bytea: nothing is dropped, but the store cannot
//     interpret them; convert at the source (ToString, STAsBinary) with a view
//     if they are needed downstream.
//   - rowversion is fixed_size_binary[8], big-endian as SQL Server sends it,
//     so bytewise comparison is version order.
//   - Arrow utf8 and binary (32-bit offsets) are used even for (max) types;
//     batches are bounded in bytes far below 2 GiB.
//
// # Catalog
//
// The NextGen catalog follows DOMAIN.md §3. Each column carries a provenance
// tag: C (published), I (inferred) or X (invented for the synthetic source),
// so that invented names are easy to find and rename; invented key choices
// and value sets are noted in each table's Description.
package schemas
