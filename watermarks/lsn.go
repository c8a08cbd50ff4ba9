package watermarks

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// LSN is a SQL Server log sequence number, binary(10) as CDC returns it
// (__$start_lsn, __$seqval, sys.fn_cdc_get_max_lsn()). LSNs order bytewise.
// The zero LSN is no position.
type LSN [10]byte

// String renders the LSN as SQL Server displays binary(10):
// 0x0000002A000001F00003.
func (l LSN) String() string {
	return "0x" + strings.ToUpper(hex.EncodeToString(l[:]))
}

// IsZero reports whether l is the zero LSN.
func (l LSN) IsZero() bool { return l == LSN{} }

// Compare returns -1, 0 or +1 as l is before, equal to or after o.
func (l LSN) Compare(o LSN) int { return bytes.Compare(l[:], o[:]) }

// MarshalText renders the LSN as String does.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses the LSN as ParseLSN does.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLSN parses an LSN written as 20 hex digits with an optional 0x prefix
// (0x0000002A000001F00003), or in the colon form of the CDC tools
// (0000002A:000001F0:0003). Hex digits may be of either case.
func ParseLSN(s string) (LSN, error) {
	var l LSN
	h := s
	if len(h) == 22 && strings.Count(h, ":") == 2 && h[8] == ':' && h[17] == ':' {
		h = h[:8] + h[9:17] + h[18:]
	} else if len(h) >= 2 && (h[:2] == "0x" || h[:2] == "0X") {
		h = h[2:]
	}
	if len(h) != 2*len(l) {
		return LSN{}, invalidf("", "lsn: want 20 hex digits, got %d characters", len(h))
	}
	if _, err := hex.Decode(l[:], []byte(h)); err != nil {
		return LSN{}, invalidf("", "lsn: not hexadecimal")
	}
	return l, nil
}

// parseHexLSN parses the canonical codec form, 0x and 20 hex digits.
func parseHexLSN(path, s string) (LSN, error) {
	if len(s) != 22 || (s[:2] != "0x" && s[:2] != "0X") {
		return LSN{}, invalidf(path, "want 0x and 20 hex digits, got %d characters", len(s))
	}
	var l LSN
	if _, err := hex.Decode(l[:], []byte(s[2:])); err != nil {
		return LSN{}, invalidf(path, "not hexadecimal")
	}
	return l, nil
}
