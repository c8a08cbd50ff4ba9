package snapshot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// ErrKeyText means an operator's key text (a ranged backfill's --from or
// --to) does not parse as the table's key. Its message names the column
// and the expected format, never the text given.
var ErrKeyText = errors.New("key text does not fit the table's key")

// ParseKey reads an operator's key of table t, as read from a source of
// dialect source: one value per key column, in key order, separated by
// commas (a key with a text column whose value holds a comma cannot be
// given). Each value is parsed by its column's type:
//
//	integers          42
//	bit, boolean      true | false
//	decimal, numeric  -123.45
//	uniqueidentifier  6f9619ff-8b86-d011-b42d-00c04fc964ff
//	date              2026-11-01
//	datetime(2)       2026-11-01T08:30:00.123 (datetime: a 1/300 s tick)
//	datetimeoffset    2026-11-01T08:30:00+05:30
//	binary            0x0102FF
//	text types        the text as is (no surrounding spaces are removed)
//
// Errors name the column and the format, never the value.
func ParseKey(source schemas.Dialect, t *schemas.Table, text string) (watermarks.Key, error) {
	cols := make([]schemas.Column, len(t.Key))
	for i, k := range t.Key {
		c, ok := t.Column(k)
		if !ok {
			return nil, fmt.Errorf("table %s: key column %s does not exist", t.QualifiedName(), k)
		}
		cols[i] = c
	}
	parts := []string{text}
	if len(cols) > 1 {
		parts = strings.Split(text, ",")
	}
	if len(parts) != len(cols) {
		return nil, fmt.Errorf("%w: %s has %d key columns (%s), want %d comma-separated values, got %d",
			ErrKeyText, t.QualifiedName(), len(cols), strings.Join(t.Key, ", "), len(cols), len(parts))
	}
	key := make(watermarks.Key, len(cols))
	for i, c := range cols {
		native, err := nativeOf(c, parts[i])
		if err != nil {
			return nil, fmt.Errorf("%w: column %s (%s): %s", ErrKeyText, c.Name, c.Type, err.Error())
		}
		v, err := reader.ValueOf(source, c, native)
		if err != nil {
			return nil, fmt.Errorf("%w: column %s (%s): not a value of the column's type", ErrKeyText, c.Name, c.Type)
		}
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("%w: column %s (%s): out of the type's range", ErrKeyText, c.Name, c.Type)
		}
		key[i] = v
	}
	return key, nil
}

// nativeOf parses s as column c's native value (the values the reader's
// scanner produces). Its errors say the expected format without s.
func nativeOf(c schemas.Column, s string) (any, error) {
	name := c.Type.Name
	if !isText(name) {
		s = strings.TrimSpace(s)
	}
	if s == "" {
		return nil, errors.New("empty value (a key bound cannot be NULL)")
	}
	switch name {
	case "bigint", "int", "integer", "smallint", "tinyint":
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, errors.New("want a whole number such as 42")
		}
		return n, nil
	case "bit", "boolean":
		b, err := strconv.ParseBool(s)
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	case "decimal", "numeric", "money", "smallmoney":
		if _, err := watermarks.ParseDecimal(s); err != nil {
			return nil, errors.New("want a decimal number such as -123.45")
		}
		return s, nil
	case "uniqueidentifier", "uuid":
		u, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return nil, errors.New("want a GUID such as 6f9619ff-8b86-d011-b42d-00c04fc964ff")
		}
		return u, nil
	case "date":
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return nil, errors.New("want a date such as 2026-11-01")
		}
		return d, nil
	case "datetime", "datetime2", "smalldatetime", "timestamp", "timestamp without time zone":
		d, err := time.Parse("2006-01-02T15:04:05.999999999", strings.Replace(s, " ", "T", 1))
		if err != nil {
			return nil, errors.New("want a date and time such as 2026-11-01T08:30:00.123")
		}
		return d, nil
	case "datetimeoffset", "timestamp with time zone":
		d, err := time.Parse(time.RFC3339Nano, strings.Replace(s, " ", "T", 1))
		if err != nil {
			return nil, errors.New("want a date, time and offset such as 2026-11-01T08:30:00+05:30")
		}
		return d, nil
	case "binary", "varbinary", "bytea":
		h, ok := strings.CutPrefix(strings.ToLower(s), "0x")
		b, err := hex.DecodeString(h)
		if !ok || err != nil {
			return nil, errors.New("want 0x and hexadecimal digits such as 0x0102FF")
		}
		return b, nil
	}
	if isText(name) {
		return s, nil
	}
	return nil, fmt.Errorf("a %s column cannot bound a range", name)
}

func isText(name string) bool {
	switch name {
	case "char", "varchar", "nchar", "nvarchar", "text", "ntext", "character", "character varying", "citext":
		return true
	}
	return false
}
