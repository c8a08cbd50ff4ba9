package watermarks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// FormatVersion is the version of the JSON form that Encode writes (its
// "v"). Decode refuses other versions.
const FormatVersion = 1

// The JSON form. Field order is fixed and optional fields are left out when
// empty, so equal positions encode to equal bytes.
type (
	wireHeader struct {
		V    *int    `json:"v"`
		Kind *string `json:"kind"`
	}
	wireValue struct {
		Type ValueType `json:"type"`
		SQL  string    `json:"sql,omitempty"`
		V    *string   `json:"v,omitempty"`
	}
	wireCDC struct {
		V         int    `json:"v"`
		Kind      Kind   `json:"kind"`
		Instance  string `json:"instance,omitempty"`
		LSN       string `json:"lsn"`
		CommandID int32  `json:"command_id,omitempty"`
		Seqval    string `json:"seqval,omitempty"`
		Op        int8   `json:"op,omitempty"`
	}
	wireCT struct {
		V       int         `json:"v"`
		Kind    Kind        `json:"kind"`
		Version *int64      `json:"version"`
		To      int64       `json:"to,omitempty"`
		LastKey []wireValue `json:"last_key,omitempty"`
	}
	wireCursor struct {
		V      int         `json:"v"`
		Kind   Kind        `json:"kind"`
		Column string      `json:"column"`
		Value  *wireValue  `json:"value"`
		Key    []wireValue `json:"key,omitempty"`
	}
	wireSnapshot struct {
		V       int             `json:"v"`
		Kind    Kind            `json:"kind"`
		LastKey []wireValue     `json:"last_key,omitempty"`
		Resume  json.RawMessage `json:"resume,omitempty"`
	}
)

// Encode renders p as its canonical JSON form, after checking it (Validate).
// Equal positions encode to equal bytes. A nil p encodes as null. Examples:
//
//	{"v":1,"kind":"cdc","instance":"dbo_claims","lsn":"0x0000002A000001F00003"}
//	{"v":1,"kind":"cdc","instance":"dbo_claims","lsn":"0x0000002A000001F00003","command_id":3,"seqval":"0x0000002A000001F00002","op":2}
//	{"v":1,"kind":"ct","version":120}
//	{"v":1,"kind":"ct","version":120,"to":150,"last_key":[{"type":"int","sql":"int","v":"42"}]}
//	{"v":1,"kind":"cursor","column":"row_timestamp","value":{"type":"rowversion","v":"0x00000000000007D1"},"key":[{"type":"uuid","v":"6f9619ff-8b86-d011-b42d-00c04fc964ff"}]}
//	{"v":1,"kind":"snapshot","last_key":[{"type":"string","sql":"varchar(20)","v":"A-100"}],"resume":{"v":1,"kind":"ct","version":120}}
func Encode(p Position) ([]byte, error) {
	if p == nil {
		return []byte("null"), nil
	}
	if err := Validate(p); err != nil {
		return nil, fmt.Errorf("encode position: %w", err)
	}
	w, err := toWire(p)
	if err != nil {
		return nil, fmt.Errorf("encode position: %w", err)
	}
	return marshal(w)
}

func marshal(w any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, fmt.Errorf("encode position: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func toWire(p Position) (any, error) {
	switch p := p.(type) {
	case CDC:
		w := wireCDC{V: FormatVersion, Kind: KindCDC, Instance: p.Instance, LSN: p.LSN.String(), CommandID: p.CommandID, Op: p.Op}
		if !p.Seqval.IsZero() {
			w.Seqval = p.Seqval.String()
		}
		return w, nil
	case CT:
		v := p.Version
		return wireCT{V: FormatVersion, Kind: KindCT, Version: &v, To: p.To, LastKey: keyToWire(p.LastKey)}, nil
	case Cursor:
		v := valueToWire(p.Value)
		return wireCursor{V: FormatVersion, Kind: KindCursor, Column: p.Column, Value: &v, Key: keyToWire(p.Key)}, nil
	case Snapshot:
		w := wireSnapshot{V: FormatVersion, Kind: KindSnapshot, LastKey: keyToWire(p.LastKey)}
		if p.Resume != nil {
			r, err := toWire(p.Resume)
			if err != nil {
				return nil, err
			}
			if w.Resume, err = marshal(r); err != nil {
				return nil, err
			}
		}
		return w, nil
	}
	return nil, invalidf("", "unknown position type %T", p)
}

func valueToWire(v Value) wireValue {
	w := wireValue{Type: v.typ, SQL: v.sql}
	if !v.IsNull() {
		t := v.Text()
		w.V = &t
	}
	return w
}

func keyToWire(k Key) []wireValue {
	if len(k) == 0 {
		return nil
	}
	w := make([]wireValue, len(k))
	for i, v := range k {
		w[i] = valueToWire(v)
	}
	return w
}

// Decode reads a position from its JSON form. null (or JSON null with
// surrounding space) decodes to a nil Position and no error. Decode is strict:
// a format version other than FormatVersion, an unknown kind, unknown or
// missing fields, malformed LSNs or values, and positions that break their
// kind's rules are errors matching ErrInvalidPosition that name the field.
// Empty keys decode as nil. Encode(Decode(b)) is the canonical form of b.
func Decode(b []byte) (Position, error) {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil, nil
	}
	p, err := decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode position: %w", err)
	}
	if err := Validate(p); err != nil {
		return nil, fmt.Errorf("decode position: %w", err)
	}
	return p, nil
}

func decode(b []byte) (Position, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, invalidf("", "empty document")
	}
	var h wireHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, jsonError(err)
	}
	if h.V == nil {
		return nil, invalidf("v", "missing: no format version")
	}
	if *h.V != FormatVersion {
		if *h.V > FormatVersion {
			return nil, invalidf("v", "format version %d is newer than this binary reads (%d)", *h.V, FormatVersion)
		}
		return nil, invalidf("v", "unknown format version %d", *h.V)
	}
	if h.Kind == nil {
		return nil, invalidf("kind", "missing")
	}
	switch Kind(*h.Kind) {
	case KindCDC:
		var w wireCDC
		if err := strict(b, &w); err != nil {
			return nil, err
		}
		return cdcFromWire(w)
	case KindCT:
		var w wireCT
		if err := strict(b, &w); err != nil {
			return nil, err
		}
		return ctFromWire(w)
	case KindCursor:
		var w wireCursor
		if err := strict(b, &w); err != nil {
			return nil, err
		}
		return cursorFromWire(w)
	case KindSnapshot:
		var w wireSnapshot
		if err := strict(b, &w); err != nil {
			return nil, err
		}
		return snapshotFromWire(w)
	}
	k := *h.Kind
	if len(k) > 32 {
		k = k[:32] + "..."
	}
	return nil, invalidf("kind", "unknown kind %q (want cdc, ct, cursor or snapshot)", k)
}

// strict decodes b into w refusing unknown fields. b is already known to be
// one valid JSON object.
func strict(b []byte, w any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(w); err != nil {
		return jsonError(err)
	}
	return nil
}

// jsonError turns encoding/json's errors into InvalidErrors that name the
// field without quoting the document.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return invalidf("", "document is a JSON %s, want an object", te.Value)
		}
		return invalidf(te.Field, "is a JSON %s, want %s", te.Value, jsonKind(te.Type.Kind().String()))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return invalidf("", "not JSON: %s at offset %d", se.Error(), se.Offset)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return invalidf(strings.Trim(f, `"`), "unknown field")
	}
	return invalidf("", "%s", msg)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	}
	return "a number"
}

func cdcFromWire(w wireCDC) (Position, error) {
	if w.LSN == "" {
		return nil, invalidf("lsn", "missing")
	}
	lsn, err := parseHexLSN("lsn", w.LSN)
	if err != nil {
		return nil, err
	}
	c := CDC{LSN: lsn, CommandID: w.CommandID, Op: w.Op, Instance: w.Instance}
	if w.Seqval != "" {
		if c.Seqval, err = parseHexLSN("seqval", w.Seqval); err != nil {
			return nil, err
		}
		if c.Seqval.IsZero() {
			return nil, invalidf("seqval", "is zero: leave it out at a transaction boundary")
		}
	}
	return c, nil
}

func ctFromWire(w wireCT) (Position, error) {
	if w.Version == nil {
		return nil, invalidf("version", "missing")
	}
	k, err := keyFromWire("last_key", w.LastKey)
	if err != nil {
		return nil, err
	}
	return CT{Version: *w.Version, To: w.To, LastKey: k}, nil
}

func cursorFromWire(w wireCursor) (Position, error) {
	if w.Column == "" {
		return nil, invalidf("column", "missing")
	}
	if w.Value == nil {
		return nil, invalidf("value", "missing")
	}
	v, err := valueFromWire("value", *w.Value)
	if err != nil {
		return nil, err
	}
	k, err := keyFromWire("key", w.Key)
	if err != nil {
		return nil, err
	}
	return Cursor{Column: w.Column, Value: v, Key: k}, nil
}

func snapshotFromWire(w wireSnapshot) (Position, error) {
	k, err := keyFromWire("last_key", w.LastKey)
	if err != nil {
		return nil, err
	}
	s := Snapshot{LastKey: k}
	if len(w.Resume) > 0 && !bytes.Equal(w.Resume, []byte("null")) {
		r, err := decode(w.Resume)
		if err != nil {
			return nil, within("resume", err)
		}
		if _, ok := r.(Snapshot); ok {
			return nil, invalidf("resume", "is a snapshot")
		}
		s.Resume = r
	}
	return s, nil
}

func keyFromWire(path string, w []wireValue) (Key, error) {
	if len(w) == 0 {
		return nil, nil
	}
	k := make(Key, len(w))
	for i, wv := range w {
		v, err := valueFromWire(fmt.Sprintf("%s[%d]", path, i), wv)
		if err != nil {
			return nil, err
		}
		k[i] = v
	}
	return k, nil
}

func valueFromWire(path string, w wireValue) (Value, error) {
	switch {
	case w.Type == "":
		return Value{}, invalidf(path+".type", "missing")
	case w.Type == TypeNull && w.V != nil:
		return Value{}, invalidf(path+".v", "set on a null value")
	case w.Type != TypeNull && w.V == nil:
		return Value{}, invalidf(path+".v", "missing")
	}
	text := ""
	if w.V != nil {
		text = *w.V
	}
	v, err := ParseValue(w.Type, w.SQL, text)
	if err != nil {
		return Value{}, within(path, err)
	}
	return v, nil
}

// EqualPositions reports whether a and b are the same position: whether
// their canonical encodings are equal. Two nil positions are equal.
func EqualPositions(a, b Position) (bool, error) {
	x, err := Encode(a)
	if err != nil {
		return false, err
	}
	y, err := Encode(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}

// MarshalJSON encodes c with Encode.
func (c CDC) MarshalJSON() ([]byte, error) { return Encode(c) }

// MarshalJSON encodes c with Encode.
func (c CT) MarshalJSON() ([]byte, error) { return Encode(c) }

// MarshalJSON encodes c with Encode.
func (c Cursor) MarshalJSON() ([]byte, error) { return Encode(c) }

// MarshalJSON encodes s with Encode.
func (s Snapshot) MarshalJSON() ([]byte, error) { return Encode(s) }

// UnmarshalJSON decodes a CDC position with Decode.
func (c *CDC) UnmarshalJSON(b []byte) error { return unmarshalKind(b, c) }

// UnmarshalJSON decodes a CT position with Decode.
func (c *CT) UnmarshalJSON(b []byte) error { return unmarshalKind(b, c) }

// UnmarshalJSON decodes a Cursor position with Decode.
func (c *Cursor) UnmarshalJSON(b []byte) error { return unmarshalKind(b, c) }

// UnmarshalJSON decodes a Snapshot position with Decode.
func (s *Snapshot) UnmarshalJSON(b []byte) error { return unmarshalKind(b, s) }

func unmarshalKind[P interface {
	*T
	Position
}, T any](b []byte, dst P) error {
	p, err := Decode(b)
	if err != nil {
		return err
	}
	v, ok := p.(T)
	if !ok {
		var want T
		got := "null"
		if p != nil {
			got = string(p.Kind())
		}
		return fmt.Errorf("decode position: %w", invalidf("kind", "is %s, want %s", got, P(&want).Kind()))
	}
	*dst = v
	return nil
}
