package tdstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/ehrsync/ehrsync/schemas"
)

var errShort = errors.New("tdstest: request ends early")

// msgReader reads a client message.
type msgReader struct {
	b   []byte
	off int
	err error
}

func (r *msgReader) left() int { return len(r.b) - r.off }

func (r *msgReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.left() < n {
		r.err = errShort
		return nil
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	return b
}

func (r *msgReader) u8() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *msgReader) u16() uint16 {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(b)
}

func (r *msgReader) u32() uint32 {
	b := r.bytes(4)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func (r *msgReader) u64() uint64 {
	b := r.bytes(8)
	if b == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *msgReader) bVarChar() string  { return ucs2String(r.bytes(2 * int(r.u8()))) }
func (r *msgReader) usVarChar() string { return ucs2String(r.bytes(2 * int(r.u16()))) }

// ucs2String decodes UTF-16LE.
func ucs2String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// readAllHeaders reads ALL_HEADERS and returns the transaction descriptor
// of its transaction descriptor header (0 when absent).
func readAllHeaders(r *msgReader) (uint64, error) {
	total := int(r.u32())
	if r.err != nil {
		return 0, r.err
	}
	if total < 4 || total-4 > r.left() {
		return 0, fmt.Errorf("tdstest: bad ALL_HEADERS length %d", total)
	}
	end := r.off + total - 4
	var desc uint64
	for r.off < end {
		n := int(r.u32())
		typ := r.u16()
		if n < 6 || r.off+n-6 > end {
			return 0, fmt.Errorf("tdstest: bad header length %d", n)
		}
		data := r.bytes(n - 6)
		if typ == 2 && len(data) >= 8 {
			desc = binary.LittleEndian.Uint64(data)
		}
	}
	return desc, r.err
}

// Procedure ids of well-known procedures (MS-TDS 2.2.6.6).
var procNames = map[uint16]string{
	1: "sp_cursor", 2: "sp_cursoropen", 3: "sp_cursorprepare", 4: "sp_cursorexecute",
	5: "sp_cursorprepexec", 6: "sp_cursorunprepare", 7: "sp_cursorfetch", 8: "sp_cursoroption",
	9: "sp_cursorclose", 10: "sp_executesql", 11: "sp_prepare", 12: "sp_execute",
	13: "sp_prepexec", 14: "sp_prepexecrpc", 15: "sp_unprepare",
}

// paramInfo is a parameter's TYPE_INFO.
type paramInfo struct {
	tds   byte
	size  int
	prec  uint8
	scale uint8
	coll  *Collation
	plp   bool
}

// parseRPC parses an RPC request into the procedure's name and its
// parameters.
func parseRPC(msg []byte, def Collation) (proc string, params []Param, err error) {
	r := &msgReader{b: msg}
	if _, err := readAllHeaders(r); err != nil {
		return "", nil, err
	}
	nameLen := r.u16()
	if nameLen == 0xFFFF {
		id := r.u16()
		name, ok := procNames[id]
		if !ok {
			name = "proc id " + strconv.Itoa(int(id))
		}
		proc = name
	} else {
		proc = ucs2String(r.bytes(2 * int(nameLen)))
	}
	r.u16() // option flags
	for r.err == nil && r.left() > 0 {
		if c := r.b[r.off]; c == 0xFF || c == 0x80 || c == 0xFE {
			return "", nil, fmt.Errorf("tdstest: more than one RPC in a request is not supported")
		}
		p, err := readParam(r, def)
		if err != nil {
			return "", nil, err
		}
		params = append(params, p)
	}
	if r.err != nil {
		return "", nil, r.err
	}
	return proc, params, nil
}

func readParam(r *msgReader, def Collation) (Param, error) {
	var p Param
	p.Name = r.bVarChar()
	status := r.u8()
	p.Output = status&0x01 != 0
	if status&0x08 != 0 {
		return p, fmt.Errorf("tdstest: parameter %s: encrypted parameters are not supported", p.Name)
	}
	ti, err := readParamTypeInfo(r, def)
	if err != nil {
		return p, fmt.Errorf("tdstest: parameter %s: %w", p.Name, err)
	}
	raw, null, err := readParamValue(r, ti)
	if err != nil {
		return p, fmt.Errorf("tdstest: parameter %s: %w", p.Name, err)
	}
	decl, err := declOf(ti)
	if err != nil {
		return p, fmt.Errorf("tdstest: parameter %s: %w", p.Name, err)
	}
	if p.Type, err = schemas.ParseType(schemas.SQLServer, decl); err != nil {
		return p, fmt.Errorf("tdstest: parameter %s: %w", p.Name, err)
	}
	switch ti.tds {
	case tdsBigVarChar, tdsBigChar, tdsText:
		p.Collation = ti.coll
	}
	if null {
		return p, nil
	}
	p.Raw = append([]byte{}, raw...)
	if p.Value, err = decodeParamValue(ti, p.Raw); err != nil {
		return p, fmt.Errorf("tdstest: parameter %s (%s): %w", p.Name, decl, err)
	}
	return p, nil
}

func readParamTypeInfo(r *msgReader, def Collation) (paramInfo, error) {
	ti := paramInfo{tds: r.u8()}
	switch ti.tds {
	case tdsNull:
	case tdsInt1, tdsBit:
		ti.size = 1
	case tdsInt2:
		ti.size = 2
	case tdsInt4, tdsDateTim4, tdsFlt4, tdsMoney4:
		ti.size = 4
	case tdsMoney, tdsDateTime, tdsFlt8, tdsInt8:
		ti.size = 8
	case tdsDateN:
		ti.size = 3
	case tdsTimeN, tdsDateTime2N, tdsDateTimeOffset:
		ti.scale = r.u8()
		if ti.scale > 7 {
			return ti, fmt.Errorf("bad scale %d", ti.scale)
		}
	case tdsIntN, tdsBitN, tdsFltN, tdsMoneyN, tdsDateTimeN, tdsGUID:
		ti.size = int(r.u8())
	case tdsDecimalN, tdsNumericN, tdsDecimal, tdsNumeric:
		ti.size = int(r.u8())
		ti.prec, ti.scale = r.u8(), r.u8()
	case tdsBigVarBin, tdsBigBinary, tdsBigVarChar, tdsBigChar, tdsNVarChar, tdsNChar:
		ti.size = int(r.u16())
		ti.plp = ti.size == 0xFFFF
		switch ti.tds {
		case tdsBigVarChar, tdsBigChar, tdsNVarChar, tdsNChar:
			c := collationFromWire(r.bytes(5), def)
			if r.err == nil {
				ti.coll = &c
			}
		}
	case tdsXML:
		if r.u8() != 0 {
			r.bVarChar()
			r.bVarChar()
			r.usVarChar()
		}
		ti.plp = true
	case tdsText, tdsNText, tdsImage:
		ti.size = int(r.u32())
		if ti.tds != tdsImage {
			c := collationFromWire(r.bytes(5), def)
			if r.err == nil {
				ti.coll = &c
			}
		}
	default:
		return ti, fmt.Errorf("TDS type %#x is not supported", ti.tds)
	}
	return ti, r.err
}

// readParamValue reads a parameter's value: its bytes, or null.
func readParamValue(r *msgReader, ti paramInfo) (raw []byte, null bool, err error) {
	switch {
	case ti.tds == tdsNull:
		return nil, true, nil
	case ti.plp:
		total := r.u64()
		if total == plpNull {
			return nil, true, r.err
		}
		raw = []byte{}
		for r.err == nil {
			n := int(r.u32())
			if n == 0 {
				break
			}
			raw = append(raw, r.bytes(n)...)
		}
		return raw, false, r.err
	}
	switch ti.tds {
	case tdsInt1, tdsBit, tdsInt2, tdsInt4, tdsDateTim4, tdsFlt4, tdsMoney4, tdsMoney, tdsDateTime, tdsFlt8, tdsInt8:
		return r.bytes(ti.size), false, r.err
	case tdsBigVarBin, tdsBigBinary, tdsBigVarChar, tdsBigChar, tdsNVarChar, tdsNChar:
		n := int(r.u16())
		if n == 0xFFFF {
			return nil, true, r.err
		}
		return r.bytes(n), false, r.err
	case tdsText, tdsNText, tdsImage:
		n := r.u32()
		if n == 0xFFFFFFFF {
			return nil, true, r.err
		}
		return r.bytes(int(n)), false, r.err
	default: // byte length
		n := int(r.u8())
		if n == 0 {
			return nil, true, r.err
		}
		return r.bytes(n), false, r.err
	}
}

// declOf is the declaration go-mssqldb writes for the TYPE_INFO in
// sp_executesql's @params, which is the type SQL Server gives the
// parameter.
func declOf(ti paramInfo) (string, error) {
	intName := func(size int) (string, error) {
		switch size {
		case 1:
			return "tinyint", nil
		case 2:
			return "smallint", nil
		case 4:
			return "int", nil
		case 8:
			return "bigint", nil
		}
		return "", fmt.Errorf("bad integer size %d", size)
	}
	switch ti.tds {
	case tdsNull:
		return "nvarchar(1)", nil
	case tdsInt1, tdsInt2, tdsInt4, tdsInt8, tdsIntN:
		return intName(ti.size)
	case tdsBit, tdsBitN:
		return "bit", nil
	case tdsFlt4:
		return "real", nil
	case tdsFlt8:
		return "float", nil
	case tdsFltN:
		switch ti.size {
		case 4:
			return "real", nil
		case 8:
			return "float", nil
		}
	case tdsMoney:
		return "money", nil
	case tdsMoney4:
		return "smallmoney", nil
	case tdsMoneyN:
		switch ti.size {
		case 4:
			return "smallmoney", nil
		case 8:
			return "money", nil
		}
	case tdsDateTime:
		return "datetime", nil
	case tdsDateTim4:
		return "smalldatetime", nil
	case tdsDateTimeN:
		switch ti.size {
		case 4:
			return "smalldatetime", nil
		case 8:
			return "datetime", nil
		}
	case tdsDecimalN, tdsDecimal:
		return fmt.Sprintf("decimal(%d,%d)", ti.prec, ti.scale), nil
	case tdsNumericN, tdsNumeric:
		return fmt.Sprintf("numeric(%d,%d)", ti.prec, ti.scale), nil
	case tdsGUID:
		if ti.size == 16 || ti.size == 0 {
			return "uniqueidentifier", nil
		}
	case tdsDateN:
		return "date", nil
	case tdsTimeN:
		if ti.scale == 7 {
			return "time", nil
		}
		return fmt.Sprintf("time(%d)", ti.scale), nil
	case tdsDateTime2N:
		return fmt.Sprintf("datetime2(%d)", ti.scale), nil
	case tdsDateTimeOffset:
		return fmt.Sprintf("datetimeoffset(%d)", ti.scale), nil
	case tdsBigVarBin:
		if ti.plp || ti.size == 0 || ti.size > maxShort {
			return "varbinary(max)", nil
		}
		return fmt.Sprintf("varbinary(%d)", ti.size), nil
	case tdsBigBinary:
		return fmt.Sprintf("binary(%d)", ti.size), nil
	case tdsBigVarChar:
		if ti.plp || ti.size == 0 || ti.size > maxShort {
			return "varchar(max)", nil
		}
		return fmt.Sprintf("varchar(%d)", ti.size), nil
	case tdsBigChar:
		return fmt.Sprintf("char(%d)", ti.size), nil
	case tdsNVarChar:
		if ti.plp || ti.size == 0 || ti.size > maxShort {
			return "nvarchar(max)", nil
		}
		return fmt.Sprintf("nvarchar(%d)", ti.size/2), nil
	case tdsNChar:
		return fmt.Sprintf("nchar(%d)", ti.size/2), nil
	case tdsXML:
		return "xml", nil
	case tdsText:
		return "text", nil
	case tdsNText:
		return "ntext", nil
	case tdsImage:
		return "image", nil
	}
	return "", fmt.Errorf("TDS type %#x with size %d is not supported", ti.tds, ti.size)
}

var (
	epoch0001 = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	epoch1900 = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
)

func decodeDays3(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }

func decodeTimeUnits(b []byte, scale uint8) (time.Duration, error) {
	if len(b) != timeBytes(scale) {
		return 0, fmt.Errorf("bad time length %d", len(b))
	}
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	ns := int64(v) * pow10[9-scale]
	if ns >= 86400*1e9 {
		return 0, fmt.Errorf("time of day out of range")
	}
	return time.Duration(ns), nil
}

// addDays adds whole days to a UTC midnight (time.Duration spans only
// 292 years).
func addDays(t time.Time, days int) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d+days, 0, 0, 0, 0, time.UTC)
}

// decodeParamValue decodes a parameter's bytes to its Go value.
func decodeParamValue(ti paramInfo, b []byte) (any, error) {
	want := func(n ...int) error {
		for _, x := range n {
			if len(b) == x {
				return nil
			}
		}
		return fmt.Errorf("bad value length %d", len(b))
	}
	switch ti.tds {
	case tdsInt1, tdsInt2, tdsInt4, tdsInt8, tdsIntN:
		switch len(b) {
		case 1:
			return int64(b[0]), nil
		case 2:
			return int64(int16(binary.LittleEndian.Uint16(b))), nil
		case 4:
			return int64(int32(binary.LittleEndian.Uint32(b))), nil
		case 8:
			return int64(binary.LittleEndian.Uint64(b)), nil
		}
		return nil, want()
	case tdsBit, tdsBitN:
		if err := want(1); err != nil {
			return nil, err
		}
		return b[0] != 0, nil
	case tdsFlt4, tdsFlt8, tdsFltN:
		switch len(b) {
		case 4:
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), nil
		case 8:
			return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
		}
		return nil, want()
	case tdsMoney, tdsMoney4, tdsMoneyN:
		switch len(b) {
		case 4:
			return formatScaled(big.NewInt(int64(int32(binary.LittleEndian.Uint32(b)))), 4), nil
		case 8:
			v := int64(binary.LittleEndian.Uint32(b))<<32 | int64(binary.LittleEndian.Uint32(b[4:]))
			return formatScaled(big.NewInt(v), 4), nil
		}
		return nil, want()
	case tdsDecimalN, tdsNumericN, tdsDecimal, tdsNumeric:
		if len(b) < 2 {
			return nil, want()
		}
		mag := make([]byte, len(b)-1)
		for i := range mag {
			mag[i] = b[len(b)-1-i] // to big-endian
		}
		v := new(big.Int).SetBytes(mag)
		if b[0] == 0 {
			v.Neg(v)
		}
		return formatScaled(v, int(ti.scale)), nil
	case tdsGUID:
		if err := want(16); err != nil {
			return nil, err
		}
		return append([]byte{}, b...), nil
	case tdsDateTime, tdsDateTim4, tdsDateTimeN:
		switch len(b) {
		case 8:
			days := int(int32(binary.LittleEndian.Uint32(b)))
			ticks := int64(binary.LittleEndian.Uint32(b[4:]))
			// Milliseconds as go-mssqldb reads them: .000, .003, .007.
			ms := int64(math.Trunc(float64(ticks%300)/0.3 + 0.5))
			d := time.Duration(ticks/300)*time.Second + time.Duration(ms)*time.Millisecond
			return addDays(epoch1900, days).Add(d), nil
		case 4:
			days := int(binary.LittleEndian.Uint16(b))
			mins := int(binary.LittleEndian.Uint16(b[2:]))
			return addDays(epoch1900, days).Add(time.Duration(mins) * time.Minute), nil
		}
		return nil, want()
	case tdsDateN:
		if err := want(3); err != nil {
			return nil, err
		}
		return addDays(epoch0001, decodeDays3(b)), nil
	case tdsTimeN:
		d, err := decodeTimeUnits(b, ti.scale)
		if err != nil {
			return nil, err
		}
		return epoch0001.Add(d), nil
	case tdsDateTime2N:
		n := timeBytes(ti.scale)
		if err := want(n + 3); err != nil {
			return nil, err
		}
		d, err := decodeTimeUnits(b[:n], ti.scale)
		if err != nil {
			return nil, err
		}
		return addDays(epoch0001, decodeDays3(b[n:])).Add(d), nil
	case tdsDateTimeOffset:
		n := timeBytes(ti.scale)
		if err := want(n + 5); err != nil {
			return nil, err
		}
		d, err := decodeTimeUnits(b[:n], ti.scale)
		if err != nil {
			return nil, err
		}
		utc := addDays(epoch0001, decodeDays3(b[n:])).Add(d)
		off := int(int16(binary.LittleEndian.Uint16(b[n+3:])))
		return utc.In(time.FixedZone("", off*60)), nil
	case tdsBigVarChar, tdsBigChar, tdsText:
		cp, err := lookupCodePage(ti.coll.CodePage)
		if err != nil {
			return nil, err
		}
		return cp.decode(b), nil
	case tdsNVarChar, tdsNChar, tdsNText, tdsXML:
		if len(b)%2 != 0 {
			return nil, want()
		}
		return ucs2String(b), nil
	case tdsBigVarBin, tdsBigBinary, tdsImage:
		return append([]byte{}, b...), nil
	}
	return nil, fmt.Errorf("TDS type %#x is not supported", ti.tds)
}

// formatScaled formats v/10^scale as plain decimal text.
func formatScaled(v *big.Int, scale int) string {
	s := new(big.Int).Abs(v).String()
	if scale > 0 {
		if len(s) <= scale {
			s = strings.Repeat("0", scale-len(s)+1) + s
		}
		s = s[:len(s)-scale] + "." + s[len(s)-scale:]
	}
	if v.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// decl is one parameter declaration of sp_executesql's @params.
type decl struct {
	name   string
	typ    string
	output bool
}

// parseDecls parses "@p1 bigint,@p2 decimal(10, 2) output".
func parseDecls(s string) ([]decl, error) {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, s[start:])
	var ds []decl
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			if len(parts) == 1 {
				return nil, nil
			}
			return nil, fmt.Errorf("empty parameter declaration")
		}
		name, rest, _ := strings.Cut(p, " ")
		if !strings.HasPrefix(name, "@") {
			return nil, fmt.Errorf("parameter declaration %q does not start with a name", truncUnits(name, 64))
		}
		d := decl{name: name, typ: strings.TrimSpace(rest)}
		for _, suffix := range []string{"readonly", "output", "out"} {
			if len(d.typ) > len(suffix) && strings.EqualFold(d.typ[len(d.typ)-len(suffix):], suffix) &&
				d.typ[len(d.typ)-len(suffix)-1] == ' ' {
				if suffix != "readonly" {
					d.output = true
				}
				d.typ = strings.TrimSpace(d.typ[:len(d.typ)-len(suffix)])
			}
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// checkDecls matches the parameters to their declarations as SQL Server
// does: named parameters by name, unnamed ones by position.
func checkDecls(ds []decl, params []Param) *Error {
	used := make([]bool, len(ds))
	for i, p := range params {
		j := -1
		if p.Name == "" {
			if i < len(ds) {
				j = i
			}
		} else {
			for k, d := range ds {
				if strings.EqualFold(d.name, p.Name) {
					j = k
					break
				}
			}
		}
		if j < 0 {
			if p.Name == "" {
				return &Error{Number: 8144, State: 2, Class: 16, Message: "Procedure or function sp_executesql has too many arguments specified."}
			}
			return &Error{Number: 8145, State: 2, Class: 16, Message: p.Name + " is not a parameter for procedure sp_executesql."}
		}
		used[j] = true
	}
	for k, d := range ds {
		if !used[k] {
			return &Error{Number: 8178, State: 1, Class: 16, Message: fmt.Sprintf("The parameterized query expects the parameter '%s', which was not supplied.", d.name)}
		}
	}
	return nil
}
