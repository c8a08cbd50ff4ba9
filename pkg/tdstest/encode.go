package tdstest

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// TDS data type ids (MS-TDS 2.2.5.4).
const (
	tdsNull           = 0x1F
	tdsInt1           = 0x30
	tdsBit            = 0x32
	tdsInt2           = 0x34
	tdsInt4           = 0x38
	tdsDateTim4       = 0x3A
	tdsFlt4           = 0x3B
	tdsMoney          = 0x3C
	tdsDateTime       = 0x3D
	tdsFlt8           = 0x3E
	tdsMoney4         = 0x7A
	tdsInt8           = 0x7F
	tdsGUID           = 0x24
	tdsIntN           = 0x26
	tdsDecimal        = 0x37
	tdsNumeric        = 0x3F
	tdsBitN           = 0x68
	tdsDecimalN       = 0x6A
	tdsNumericN       = 0x6C
	tdsFltN           = 0x6D
	tdsMoneyN         = 0x6E
	tdsDateTimeN      = 0x6F
	tdsDateN          = 0x28
	tdsTimeN          = 0x29
	tdsDateTime2N     = 0x2A
	tdsDateTimeOffset = 0x2B
	tdsChar           = 0x2F
	tdsVarChar        = 0x27
	tdsBinary         = 0x2D
	tdsVarBinary      = 0x25
	tdsBigVarBin      = 0xA5
	tdsBigVarChar     = 0xA7
	tdsBigBinary      = 0xAD
	tdsBigChar        = 0xAF
	tdsNVarChar       = 0xE7
	tdsNChar          = 0xEF
	tdsXML            = 0xF1
	tdsUDT            = 0xF0
	tdsText           = 0x23
	tdsImage          = 0x22
	tdsNText          = 0x63
	tdsVariant        = 0x62
)

const (
	plpNull    = 0xFFFFFFFFFFFFFFFF
	plpChunk   = 8000
	usNull     = 0xFFFF
	maxShort   = 8000
	userTypeTS = 80 // SQL Server's user type of timestamp (rowversion)
)

// encKind is how a column's values are written.
type encKind uint8

const (
	kInt encKind = iota
	kBit
	kDecimal
	kMoney
	kFloat
	kGUID
	kDateTime
	kSmallDateTime
	kDate
	kTime
	kDateTime2
	kDateTimeOffset
	kChar     // char, varchar: BIGCHAR, BIGVARCHAR
	kNChar    // nchar, nvarchar
	kBinary   // binary, varbinary, rowversion
	kText     // text
	kNText    // ntext
	kImage    // image
	kXML      // xml
	kVariant  // sql_variant
	kUDT      // hierarchyid, geometry, geography
	kCharMax  // varchar(max)
	kNCharMax // nvarchar(max)
	kBinMax   // varbinary(max)
)

// colEnc encodes one column's metadata and values.
type colEnc struct {
	name     string
	typ      schemas.Type
	kind     encKind
	tds      byte  // TDS type id
	size     int   // byte width (fixed and byte-length types), max length (strings: characters, binary: bytes)
	prec     uint8 // decimal precision
	scale    uint8 // decimal scale, fractional-second digits
	exact    bool  // rowversion: values have exactly size bytes
	coll     Collation
	cp       *codePage
	nullable bool
	table    string
	enc      *rowEncoder
	vtype    string // UDT type name
}

// rowEncoder encodes the rows of one result set.
type rowEncoder struct {
	cols     []colEnc
	defColl  Collation
	scratch  []byte
	variants map[schemas.Type]*colEnc
}

func newRowEncoder(cols []Column, defColl Collation) (*rowEncoder, error) {
	re := &rowEncoder{cols: make([]colEnc, len(cols)), defColl: defColl}
	for i, c := range cols {
		if err := re.cols[i].init(c.Name, c.Type, c.Nullable, c.Collation, defColl); err != nil {
			return nil, err
		}
		re.cols[i].table = c.Table
		re.cols[i].enc = re
	}
	return re, nil
}

func (e *colEnc) errf(format string, args ...any) error {
	return fmt.Errorf("tdstest: column %q (%s): %s", e.name, e.typ, fmt.Sprintf(format, args...))
}

// timeBytes is the length of a time part with the given scale.
func timeBytes(scale uint8) int {
	switch {
	case scale <= 2:
		return 3
	case scale <= 4:
		return 4
	default:
		return 5
	}
}

// decimalBytes is the length of a decimal value of precision p, sign included.
func decimalBytes(p uint8) int {
	switch {
	case p <= 9:
		return 5
	case p <= 19:
		return 9
	case p <= 28:
		return 13
	default:
		return 17
	}
}

func (e *colEnc) init(name string, t schemas.Type, nullable bool, coll *Collation, defColl Collation) error {
	e.name, e.typ, e.nullable = name, t, nullable
	e.coll = defColl
	if coll != nil {
		e.coll = coll.normalize()
	}
	length := func(def int) int {
		if t.Length == 0 {
			return def
		}
		return t.Length
	}
	fraction := func() error {
		p := t.Precision
		if p < 0 {
			p = 7
		}
		if p > 7 {
			return e.errf("fractional-second precision out of range 0..7")
		}
		e.scale = uint8(p)
		return nil
	}
	switch t.Name {
	case "tinyint":
		e.kind, e.tds, e.size = kInt, tdsIntN, 1
	case "smallint":
		e.kind, e.tds, e.size = kInt, tdsIntN, 2
	case "int":
		e.kind, e.tds, e.size = kInt, tdsIntN, 4
	case "bigint":
		e.kind, e.tds, e.size = kInt, tdsIntN, 8
	case "bit":
		e.kind, e.tds, e.size = kBit, tdsBitN, 1
	case "decimal", "numeric":
		e.kind, e.tds = kDecimal, tdsDecimalN
		if t.Name == "numeric" {
			e.tds = tdsNumericN
		}
		p, s := t.Precision, t.Scale
		if p < 0 {
			p, s = 18, 0
		}
		if p < 1 || p > 38 || s < 0 || s > p {
			return e.errf("precision or scale out of range")
		}
		e.prec, e.scale = uint8(p), uint8(s)
		e.size = decimalBytes(e.prec)
	case "money":
		e.kind, e.tds, e.size, e.scale = kMoney, tdsMoneyN, 8, 4
	case "smallmoney":
		e.kind, e.tds, e.size, e.scale = kMoney, tdsMoneyN, 4, 4
	case "float":
		e.kind, e.tds, e.size = kFloat, tdsFltN, 8
		if t.Precision >= 1 && t.Precision <= 24 {
			e.size = 4
		} else if t.Precision > 53 {
			return e.errf("float precision out of range 1..53")
		}
	case "real":
		e.kind, e.tds, e.size = kFloat, tdsFltN, 4
	case "uniqueidentifier":
		e.kind, e.tds, e.size = kGUID, tdsGUID, 16
	case "datetime":
		e.kind, e.tds, e.size = kDateTime, tdsDateTimeN, 8
	case "smalldatetime":
		e.kind, e.tds, e.size = kSmallDateTime, tdsDateTimeN, 4
	case "date":
		e.kind, e.tds, e.size = kDate, tdsDateN, 3
	case "time":
		e.kind, e.tds = kTime, tdsTimeN
		if err := fraction(); err != nil {
			return err
		}
		e.size = timeBytes(e.scale)
	case "datetime2":
		e.kind, e.tds = kDateTime2, tdsDateTime2N
		if err := fraction(); err != nil {
			return err
		}
		e.size = timeBytes(e.scale) + 3
	case "datetimeoffset":
		e.kind, e.tds = kDateTimeOffset, tdsDateTimeOffset
		if err := fraction(); err != nil {
			return err
		}
		e.size = timeBytes(e.scale) + 5
	case "char", "varchar":
		e.kind, e.tds, e.size = kChar, tdsBigVarChar, length(1)
		if t.Name == "char" {
			e.tds = tdsBigChar
		}
		if e.size == schemas.Max {
			e.kind = kCharMax
		} else if e.size < 1 || e.size > maxShort {
			return e.errf("length out of range 1..8000")
		}
		cp, err := lookupCodePage(e.coll.CodePage)
		if err != nil {
			return e.errf("%v", err)
		}
		e.cp = cp
	case "nchar", "nvarchar":
		e.kind, e.tds, e.size = kNChar, tdsNVarChar, length(1)
		if t.Name == "nchar" {
			e.tds = tdsNChar
		}
		if e.size == schemas.Max {
			e.kind = kNCharMax
		} else if e.size < 1 || e.size > maxShort/2 {
			return e.errf("length out of range 1..4000")
		}
	case "binary", "varbinary":
		e.kind, e.tds, e.size = kBinary, tdsBigVarBin, length(1)
		if t.Name == "binary" {
			e.tds = tdsBigBinary
		}
		if e.size == schemas.Max {
			e.kind = kBinMax
		} else if e.size < 1 || e.size > maxShort {
			return e.errf("length out of range 1..8000")
		}
	case "rowversion":
		e.kind, e.tds, e.size, e.exact = kBinary, tdsBigBinary, 8, true
	case "text":
		e.kind, e.tds = kText, tdsText
		cp, err := lookupCodePage(e.coll.CodePage)
		if err != nil {
			return e.errf("%v", err)
		}
		e.cp = cp
	case "ntext":
		e.kind, e.tds = kNText, tdsNText
	case "image":
		e.kind, e.tds = kImage, tdsImage
	case "xml":
		e.kind, e.tds = kXML, tdsXML
	case "sql_variant":
		e.kind, e.tds = kVariant, tdsVariant
	case "hierarchyid":
		e.kind, e.tds, e.size, e.vtype = kUDT, tdsUDT, 892, "hierarchyid"
	case "geometry", "geography":
		e.kind, e.tds, e.size, e.vtype = kUDT, tdsUDT, usNull, t.Name
	default:
		return e.errf("type is not supported")
	}
	return nil
}

// appendMetadata appends the column's part of COLMETADATA: user type,
// flags, TYPE_INFO, table name and column name.
func (e *colEnc) appendMetadata(b []byte) []byte {
	var userType uint32
	if e.typ.Name == "rowversion" {
		userType = userTypeTS
	}
	b = appendU32(b, userType)
	var flags uint16
	if e.nullable {
		flags |= 0x01
	}
	if e.coll.Flags&collIgnoreCase == 0 && (e.kind == kChar || e.kind == kCharMax || e.kind == kNChar || e.kind == kNCharMax || e.kind == kText || e.kind == kNText) {
		flags |= 0x02 // case sensitive
	}
	b = appendU16(b, flags)
	b = append(b, e.tds)
	coll := e.coll.wire()
	switch e.kind {
	case kInt, kBit, kMoney, kFloat, kGUID, kDateTime, kSmallDateTime:
		b = append(b, byte(e.size))
	case kDecimal:
		b = append(b, byte(e.size), e.prec, e.scale)
	case kDate:
	case kTime, kDateTime2, kDateTimeOffset:
		b = append(b, e.scale)
	case kChar:
		b = appendU16(b, uint16(e.size))
		b = append(b, coll[:]...)
	case kCharMax:
		b = appendU16(b, usNull)
		b = append(b, coll[:]...)
	case kNChar:
		b = appendU16(b, uint16(2*e.size))
		b = append(b, coll[:]...)
	case kNCharMax:
		b = appendU16(b, usNull)
		b = append(b, coll[:]...)
	case kBinary:
		b = appendU16(b, uint16(e.size))
	case kBinMax:
		b = appendU16(b, usNull)
	case kText, kNText, kImage:
		switch e.kind {
		case kText:
			b = appendU32(b, 0x7FFFFFFF)
			b = append(b, coll[:]...)
		case kNText:
			b = appendU32(b, 0x7FFFFFFE)
			b = append(b, coll[:]...)
		default:
			b = appendU32(b, 0x7FFFFFFF)
		}
		parts := splitTable(e.table)
		b = append(b, byte(len(parts)))
		for _, p := range parts {
			b = appendUSVarChar(b, p)
		}
	case kXML:
		b = append(b, 0) // no schema
	case kVariant:
		b = appendU32(b, 8016)
	case kUDT:
		b = appendU16(b, uint16(e.size))
		b = appendBVarChar(b, "")    // database
		b = appendBVarChar(b, "sys") // schema
		b = appendBVarChar(b, e.vtype)
		b = appendUSVarChar(b, "Microsoft.SqlServer.Types.Sql"+udtClass(e.vtype)+", Microsoft.SqlServer.Types, Version=11.0.0.0, Culture=neutral, PublicKeyToken=89845dcd8080cc91")
	}
	return appendBVarChar(b, e.name)
}

func udtClass(name string) string {
	switch name {
	case "hierarchyid":
		return "HierarchyId"
	case "geometry":
		return "Geometry"
	default:
		return "Geography"
	}
}

func splitTable(t string) []string {
	if t == "" {
		return nil
	}
	var parts []string
	start := 0
	for i := 0; i < len(t); i++ {
		if t[i] == '.' {
			parts = append(parts, t[start:i])
			start = i + 1
		}
	}
	return append(parts, t[start:])
}

// appendColMetadata appends the COLMETADATA token of the result.
func (re *rowEncoder) appendColMetadata(b []byte) []byte {
	b = append(b, tokColMetadata)
	b = appendU16(b, uint16(len(re.cols)))
	for i := range re.cols {
		b = re.cols[i].appendMetadata(b)
	}
	return b
}

// appendRow appends a ROW token. On error b is returned unchanged in
// length (the row is not written).
func (re *rowEncoder) appendRow(b []byte, row []any) ([]byte, error) {
	if len(row) != len(re.cols) {
		return b, fmt.Errorf("tdstest: a row has %d values for %d columns", len(row), len(re.cols))
	}
	start := len(b)
	b = append(b, tokRow)
	for i := range re.cols {
		var err error
		if b, err = re.cols[i].appendValue(b, row[i]); err != nil {
			return b[:start], err
		}
	}
	return b, nil
}

// appendValue appends the value v of the column, with its length prefix.
func (e *colEnc) appendValue(b []byte, v any) ([]byte, error) {
	if v == nil {
		if !e.nullable {
			return b, e.errf("NULL in a column that is not nullable")
		}
		return e.appendNull(b), nil
	}
	switch e.kind {
	case kInt:
		x, ok := v.(int64)
		if !ok {
			return b, e.typeErr(v, "int64")
		}
		switch e.size {
		case 1:
			if x < 0 || x > math.MaxUint8 {
				return b, e.errf("value out of range")
			}
			return append(b, 1, byte(x)), nil
		case 2:
			if x < math.MinInt16 || x > math.MaxInt16 {
				return b, e.errf("value out of range")
			}
			return appendU16(append(b, 2), uint16(x)), nil
		case 4:
			if x < math.MinInt32 || x > math.MaxInt32 {
				return b, e.errf("value out of range")
			}
			return appendU32(append(b, 4), uint32(x)), nil
		default:
			return appendU64(append(b, 8), uint64(x)), nil
		}
	case kDateTime2:
		t, ok := v.(time.Time)
		if !ok {
			return b, e.typeErr(v, "time.Time")
		}
		b = append(b, byte(e.size))
		return e.appendDateTime2(b, t)
	case kChar:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		at := len(b)
		b = e.cp.appendEncode(append(b, 0, 0), s)
		n := len(b) - at - 2
		if n > e.size {
			return b[:at], e.errf("value longer than the column")
		}
		binary.LittleEndian.PutUint16(b[at:], uint16(n))
		return b, nil
	case kNChar:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		at := len(b)
		b = appendUCS2(append(b, 0, 0), s)
		n := len(b) - at - 2
		if n > 2*e.size {
			return b[:at], e.errf("value longer than the column")
		}
		binary.LittleEndian.PutUint16(b[at:], uint16(n))
		return b, nil
	case kBinary:
		x, ok := v.([]byte)
		if !ok {
			return b, e.typeErr(v, "[]byte")
		}
		if len(x) > e.size || (e.exact && len(x) != e.size) {
			return b, e.errf("value of %d bytes does not fit", len(x))
		}
		b = appendU16(b, uint16(len(x)))
		return append(b, x...), nil
	case kBit:
		x, ok := v.(bool)
		if !ok {
			return b, e.typeErr(v, "bool")
		}
		if x {
			return append(b, 1, 1), nil
		}
		return append(b, 1, 0), nil
	case kDecimal:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		b = append(b, byte(e.size))
		return e.appendDecimal(b, s)
	case kMoney:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		b = append(b, byte(e.size))
		return e.appendMoney(b, s)
	case kFloat:
		x, ok := v.(float64)
		if !ok {
			return b, e.typeErr(v, "float64")
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return b, e.errf("NaN and infinities are not SQL Server values")
		}
		if e.size == 4 {
			if math.Abs(x) > math.MaxFloat32 {
				return b, e.errf("value out of range")
			}
			return appendU32(append(b, 4), math.Float32bits(float32(x))), nil
		}
		return appendU64(append(b, 8), math.Float64bits(x)), nil
	case kGUID:
		x, ok := v.([]byte)
		if !ok {
			return b, e.typeErr(v, "[]byte")
		}
		if len(x) != 16 {
			return b, e.errf("uniqueidentifier of %d bytes, want 16", len(x))
		}
		return append(append(b, 16), x...), nil
	case kDateTime, kSmallDateTime, kDate, kTime, kDateTimeOffset:
		t, ok := v.(time.Time)
		if !ok {
			return b, e.typeErr(v, "time.Time")
		}
		b = append(b, byte(e.size))
		return e.appendTime(b, t)
	case kCharMax, kText:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		tmp := e.cp.appendEncode(e.enc.scratch[:0], s)
		e.enc.scratch = tmp
		return e.appendLOB(b, tmp), nil
	case kNCharMax, kNText, kXML:
		s, ok := v.(string)
		if !ok {
			return b, e.typeErr(v, "string")
		}
		tmp := appendUCS2(e.enc.scratch[:0], s)
		e.enc.scratch = tmp
		return e.appendLOB(b, tmp), nil
	case kBinMax, kImage, kUDT:
		x, ok := v.([]byte)
		if !ok {
			return b, e.typeErr(v, "[]byte")
		}
		return e.appendLOB(b, x), nil
	case kVariant:
		x, ok := v.(Variant)
		if !ok {
			if p, isPtr := v.(*Variant); isPtr && p != nil {
				x, ok = *p, true
			}
		}
		if !ok {
			return b, e.typeErr(v, "Variant")
		}
		return e.appendVariant(b, x)
	}
	return b, e.errf("type is not supported")
}

func (e *colEnc) typeErr(v any, want string) error {
	return e.errf("value of Go type %T, want %s", v, want)
}

// appendNull appends the column's NULL.
func (e *colEnc) appendNull(b []byte) []byte {
	switch e.kind {
	case kChar, kNChar, kBinary:
		return appendU16(b, usNull)
	case kCharMax, kNCharMax, kBinMax, kXML, kUDT:
		return appendU64(b, plpNull)
	case kText, kNText, kImage:
		return append(b, 0) // no text pointer
	case kVariant:
		return appendU32(b, 0)
	default:
		return append(b, 0)
	}
}

// appendLOB appends a large value: a PLP stream in chunks for the (max)
// types, xml and CLR types, or text pointer, timestamp and length for
// text, ntext and image.
func (e *colEnc) appendLOB(b, data []byte) []byte {
	switch e.kind {
	case kText, kNText, kImage:
		b = append(b, 16)
		b = append(b, textPtr[:]...)
		b = append(b, textTimestamp[:]...)
		b = appendU32(b, uint32(len(data)))
		return append(b, data...)
	}
	b = appendU64(b, uint64(len(data)))
	for len(data) > 0 {
		n := min(len(data), plpChunk)
		b = appendU32(b, uint32(n))
		b = append(b, data[:n]...)
		data = data[n:]
	}
	return appendU32(b, 0)
}

// The text pointer and timestamp SQL Server sends before a text, ntext or
// image value: clients only test that a pointer is present.
var (
	textPtr       = [16]byte{0x64, 0x75, 0x6d, 0x6d, 0x79, 0x20, 0x74, 0x65, 0x78, 0x74, 0x70, 0x74, 0x72, 0x00, 0x00, 0x00}
	textTimestamp = [8]byte{0x01, 0, 0, 0, 0, 0, 0, 0}
)

// Days from 0001-01-01 to 1900-01-01 and the bounds of the date types.
var (
	days1900     = civilDays(1900, 1, 1)
	daysMin1753  = civilDays(1753, 1, 1) - days1900
	daysMax9999  = civilDays(9999, 12, 31)
	daysMaxSmall = civilDays(2079, 6, 6) - days1900
)

// civilDays returns the days from 0001-01-01 to the date.
func civilDays(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix()/86400 + 719162
}

// unixTo0001 is the seconds from 0001-01-01 to 1970-01-01.
const unixTo0001 = 62135596800

// splitWall splits t's wall clock (in its own location) into days since
// 0001-01-01 and nanoseconds of the day.
func splitWall(t time.Time) (days, nsOfDay int64) {
	sec := t.Unix()
	if loc := t.Location(); loc != time.UTC {
		_, off := t.Zone()
		sec += int64(off)
	}
	sec += unixTo0001
	if sec < 0 {
		// Before 0001-01-01: out of every type's range.
		return -1, 0
	}
	return sec / 86400, (sec%86400)*1e9 + int64(t.Nanosecond())
}

var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

// scaledTime rounds nanoseconds of the day to units of 10^-scale seconds.
func scaledTime(ns int64, scale uint8) int64 {
	unit := pow10[9-scale]
	return (ns + unit/2) / unit
}

func appendTimeUnits(b []byte, v int64, scale uint8) []byte {
	b = append(b, byte(v), byte(v>>8), byte(v>>16))
	switch n := timeBytes(scale); n {
	case 4:
		b = append(b, byte(v>>24))
	case 5:
		b = append(b, byte(v>>24), byte(v>>32))
	}
	return b
}

func (e *colEnc) appendDateTime2(b []byte, t time.Time) ([]byte, error) {
	days, ns := splitWall(t)
	units := scaledTime(ns, e.scale)
	if perDay := 86400 * pow10[e.scale]; units >= perDay {
		units -= perDay
		days++
	}
	if days < 0 || days > daysMax9999 {
		return b, e.errf("value out of range")
	}
	b = appendTimeUnits(b, units, e.scale)
	return append(b, byte(days), byte(days>>8), byte(days>>16)), nil
}

// appendTime appends the value (its length byte already written) of the
// date and time types other than datetime2.
func (e *colEnc) appendTime(b []byte, t time.Time) ([]byte, error) {
	switch e.kind {
	case kDateTime:
		days, ns := splitWall(t)
		days -= days1900
		// 1/300 s ticks, rounded half up: .xx0, .xx3, .xx7 as SQL Server.
		ticks := (ns*3 + 5_000_000) / 10_000_000
		if ticks >= 300*86400 {
			ticks -= 300 * 86400
			days++
		}
		if days < daysMin1753 || days > daysMax9999-days1900 {
			return b, e.errf("value out of range 1753-01-01..9999-12-31 23:59:59.997")
		}
		b = appendU32(b, uint32(int32(days)))
		return appendU32(b, uint32(ticks)), nil
	case kSmallDateTime:
		days, ns := splitWall(t)
		days -= days1900
		mins := (ns/1e6 + 30001) / 60000 // 29.998 s rounds down, 29.999 s up
		if mins >= 1440 {
			mins -= 1440
			days++
		}
		if days < 0 || days > daysMaxSmall {
			return b, e.errf("value out of range 1900-01-01..2079-06-06 23:59")
		}
		b = appendU16(b, uint16(days))
		return appendU16(b, uint16(mins)), nil
	case kDate:
		days, ns := splitWall(t)
		if ns != 0 {
			return b, e.errf("a date value has a time of day")
		}
		if days < 0 || days > daysMax9999 {
			return b, e.errf("value out of range")
		}
		return append(b, byte(days), byte(days>>8), byte(days>>16)), nil
	case kTime:
		days, ns := splitWall(t)
		if days != 0 {
			return b, e.errf("a time value is not on 0001-01-01")
		}
		units := scaledTime(ns, e.scale)
		if perDay := 86400 * pow10[e.scale]; units >= perDay {
			units -= perDay
		}
		return appendTimeUnits(b, units, e.scale), nil
	case kDateTimeOffset:
		_, off := t.Zone()
		if off%60 != 0 || off < -14*3600 || off > 14*3600 {
			return b, e.errf("offset is not whole minutes within -14:00..+14:00")
		}
		days, ns := splitWall(t.UTC())
		units := scaledTime(ns, e.scale)
		if perDay := 86400 * pow10[e.scale]; units >= perDay {
			units -= perDay
			days++
		}
		if days < 0 || days > daysMax9999 {
			return b, e.errf("value out of range")
		}
		b = appendTimeUnits(b, units, e.scale)
		b = append(b, byte(days), byte(days>>8), byte(days>>16))
		return appendU16(b, uint16(int16(off/60))), nil
	}
	return b, e.errf("type is not supported")
}

// u128 is an unsigned 128-bit integer.
type u128 struct{ hi, lo uint64 }

func (u u128) mul10add(d uint64) u128 {
	h, l := bits.Mul64(u.lo, 10)
	l, c := bits.Add64(l, d, 0)
	return u128{hi: u.hi*10 + h + c, lo: l}
}

// parseDecimal parses plain decimal text ("-12.50") into its sign and its
// magnitude scaled by 10^scale. It fails when the text has more
// significant fractional digits than scale or more than prec digits.
func parseDecimal(s string, prec, scale int) (neg bool, mag u128, err error) {
	if s == "" {
		return false, mag, fmt.Errorf("empty decimal text")
	}
	i := 0
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		i++
	}
	digits, fracDigits, seenDot, any := 0, 0, false, false
	significant := false
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			if seenDot {
				return false, mag, fmt.Errorf("not decimal text")
			}
			seenDot = true
			continue
		}
		if c < '0' || c > '9' {
			return false, mag, fmt.Errorf("not decimal text")
		}
		any = true
		if seenDot {
			fracDigits++
			if fracDigits > scale {
				if c != '0' {
					return false, mag, fmt.Errorf("more fractional digits than the scale")
				}
				continue
			}
		}
		if c != '0' {
			significant = true
		}
		if significant {
			digits++
			if digits > 38 {
				return false, mag, fmt.Errorf("more digits than the precision")
			}
		}
		mag = mag.mul10add(uint64(c - '0'))
	}
	if !any {
		return false, mag, fmt.Errorf("not decimal text")
	}
	for ; fracDigits < scale; fracDigits++ {
		if significant {
			digits++
		}
		mag = mag.mul10add(0)
	}
	if digits > prec {
		return false, mag, fmt.Errorf("more digits than the precision")
	}
	if mag.hi == 0 && mag.lo == 0 {
		neg = false
	}
	return neg, mag, nil
}

func appendDecimalMag(b []byte, neg bool, mag u128, size int) []byte {
	if neg {
		b = append(b, 0)
	} else {
		b = append(b, 1)
	}
	var m [16]byte
	binary.LittleEndian.PutUint64(m[:8], mag.lo)
	binary.LittleEndian.PutUint64(m[8:], mag.hi)
	return append(b, m[:size-1]...)
}

func (e *colEnc) appendDecimal(b []byte, s string) ([]byte, error) {
	neg, mag, err := parseDecimal(s, int(e.prec), int(e.scale))
	if err != nil {
		return b[:len(b)-1], e.errf("%v", err)
	}
	return appendDecimalMag(b, neg, mag, e.size), nil
}

// moneyValue parses money text into its value times 10,000.
func moneyValue(s string, size int) (int64, error) {
	neg, mag, err := parseDecimal(s, 38, 4)
	if err != nil {
		return 0, err
	}
	limit := uint64(math.MaxInt64)
	if size == 4 {
		limit = math.MaxInt32
	}
	if neg {
		limit++
	}
	if mag.hi != 0 || mag.lo > limit {
		return 0, fmt.Errorf("value out of range")
	}
	if neg {
		return -int64(mag.lo-1) - 1, nil
	}
	return int64(mag.lo), nil
}

func appendMoneyValue(b []byte, v int64, size int) []byte {
	if size == 4 {
		return appendU32(b, uint32(int32(v)))
	}
	b = appendU32(b, uint32(uint64(v)>>32))
	return appendU32(b, uint32(v))
}

func (e *colEnc) appendMoney(b []byte, s string) ([]byte, error) {
	v, err := moneyValue(s, e.size)
	if err != nil {
		return b[:len(b)-1], e.errf("%v", err)
	}
	return appendMoneyValue(b, v, e.size), nil
}

// variantEnc returns the encoder of a sql_variant's base type.
func (re *rowEncoder) variantEnc(t schemas.Type) (*colEnc, error) {
	if ve, ok := re.variants[t]; ok {
		return ve, nil
	}
	ve := &colEnc{enc: re}
	vt := t
	if vt.Length == 0 {
		// A base type without its length holds any value that fits a
		// sql_variant.
		switch vt.Name {
		case "char", "varchar", "binary", "varbinary":
			vt.Length = maxShort
		case "nchar", "nvarchar":
			vt.Length = maxShort / 2
		}
	}
	if err := ve.init("sql_variant value", vt, true, nil, re.defColl); err != nil {
		return nil, err
	}
	switch ve.kind {
	case kCharMax, kNCharMax, kBinMax, kText, kNText, kImage, kXML, kVariant, kUDT:
		return nil, ve.errf("a sql_variant cannot hold this type")
	}
	if ve.typ.Name == "rowversion" {
		return nil, ve.errf("a sql_variant cannot hold this type")
	}
	if re.variants == nil {
		re.variants = map[schemas.Type]*colEnc{}
	}
	re.variants[t] = ve
	return ve, nil
}

// appendVariant appends a sql_variant: its length, base type, properties
// and value.
func (e *colEnc) appendVariant(b []byte, v Variant) ([]byte, error) {
	if v.Value == nil {
		return appendU32(b, 0), nil
	}
	ve, err := e.enc.variantEnc(v.Type)
	if err != nil {
		return b, e.errf("%v", err)
	}
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	// Encode the value as a column of the base type would be, then
	// rewrite its TYPE_INFO prefix into variant properties.
	valStart := len(b)
	b, err = ve.appendValue(b, v.Value)
	if err != nil {
		return b[:at], e.errf("sql_variant holding %s: %v", v.Type, err)
	}
	val := append(e.enc.scratch[:0], b[valStart:]...)
	e.enc.scratch = val
	b = b[:valStart]
	var data []byte
	switch ve.kind {
	case kChar, kNChar, kBinary:
		data = val[2:] // drop the USHORT length
	default:
		data = val[1:] // drop the BYTELEN
	}
	coll := ve.coll.wire()
	switch ve.kind {
	case kInt:
		switch ve.size {
		case 1:
			b = append(b, tdsInt1, 0)
		case 2:
			b = append(b, tdsInt2, 0)
		case 4:
			b = append(b, tdsInt4, 0)
		default:
			b = append(b, tdsInt8, 0)
		}
	case kBit:
		b = append(b, tdsBit, 0)
	case kFloat:
		if ve.size == 4 {
			b = append(b, tdsFlt4, 0)
		} else {
			b = append(b, tdsFlt8, 0)
		}
	case kMoney:
		if ve.size == 4 {
			b = append(b, tdsMoney4, 0)
		} else {
			b = append(b, tdsMoney, 0)
		}
	case kDateTime:
		b = append(b, tdsDateTime, 0)
	case kSmallDateTime:
		b = append(b, tdsDateTim4, 0)
	case kGUID, kDate:
		b = append(b, ve.tds, 0)
	case kTime, kDateTime2, kDateTimeOffset:
		b = append(b, ve.tds, 1, ve.scale)
	case kDecimal:
		b = append(b, ve.tds, 2, ve.prec, ve.scale)
	case kChar, kNChar:
		b = append(b, ve.tds, 7)
		b = append(b, coll[:]...)
		if ve.kind == kNChar {
			b = appendU16(b, uint16(2*ve.size))
		} else {
			b = appendU16(b, uint16(ve.size))
		}
	case kBinary:
		b = append(b, ve.tds, 2)
		b = appendU16(b, uint16(ve.size))
	default:
		return b[:at], e.errf("a sql_variant cannot hold %s", v.Type)
	}
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b, nil
}
