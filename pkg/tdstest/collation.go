package tdstest

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Collation flag bits (the byte after the LCID's 20 bits).
const (
	collIgnoreCase   = 0x01
	collIgnoreAccent = 0x02
	collIgnoreKana   = 0x04
	collIgnoreWidth  = 0x08
	collBinary       = 0x10
	collBinary2      = 0x20
)

// DefaultCollation is SQL_Latin1_General_CP1_CI_AS, SQL Server's default
// for en-US installations: LCID 0x0409, sort id 52, code page 1252.
var DefaultCollation = Collation{
	LCID:       0x0409,
	Flags:      collIgnoreCase | collIgnoreKana | collIgnoreWidth,
	SortID:     52,
	CodePage:   1252,
	IgnoreCase: true,
}

// wire returns the collation's 5 bytes.
func (c Collation) wire() [5]byte {
	var b [5]byte
	v := c.LCID&0xFFFFF | uint32(c.Flags)<<20 | uint32(c.Version&0x0F)<<28
	binary.LittleEndian.PutUint32(b[:], v)
	b[4] = c.SortID
	return b
}

// collationFromWire decodes the 5 bytes of a collation and derives its code
// page. A collation of all zeros (what go-mssqldb sends with a VarChar
// parameter) takes its code page from def, as SQL Server reads such a
// value in the database's collation.
func collationFromWire(b []byte, def Collation) Collation {
	v := binary.LittleEndian.Uint32(b)
	c := Collation{
		LCID:    v & 0xFFFFF,
		Flags:   uint8(v >> 20),
		Version: uint8(v >> 28),
		SortID:  b[4],
	}
	c.IgnoreCase = c.Flags&collIgnoreCase != 0
	if c.LCID == 0 && c.SortID == 0 {
		c.CodePage = def.CodePage
	} else {
		c.CodePage = codePageOf(c)
	}
	return c
}

// normalize fills CodePage and IgnoreCase from the wire fields when they
// are not set.
func (c Collation) normalize() Collation {
	if c.CodePage == 0 {
		c.CodePage = codePageOf(c)
	}
	if c.Flags&collIgnoreCase != 0 {
		c.IgnoreCase = true
	}
	return c
}

// codePageOf derives the code page of a collation from its SQL sort id or,
// for a Windows collation (sort id 0), from its LCID.
func codePageOf(c Collation) int {
	switch c.SortID {
	case 30, 31, 32, 33, 34:
		return 437
	case 40, 41, 42, 44, 49, 55, 56, 57, 58, 59, 60, 61:
		return 850
	case 50, 51, 52, 53, 54, 71, 72, 73, 74, 75, 183, 184, 185, 186, 210, 211, 212, 213, 214, 215, 216, 217:
		return 1252
	case 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96:
		return 1250
	case 104, 105, 106, 107, 108:
		return 1251
	case 112, 113, 114, 121, 124:
		return 1253
	case 128, 129, 130:
		return 1254
	case 136, 137, 138:
		return 1255
	case 144, 145, 146:
		return 1256
	case 152, 153, 154, 155, 156, 157, 158, 159, 160:
		return 1257
	case 192, 193, 200:
		return 932
	case 194, 195, 201:
		return 949
	case 196, 197, 202:
		return 950
	case 198, 199, 203:
		return 936
	case 204, 205, 206:
		return 874
	}
	switch c.LCID {
	case 0x001e, 0x041e:
		return 874
	case 0x0411, 0x10411, 0x40411:
		return 932
	case 0x0804, 0x1004, 0x20804:
		return 936
	case 0x0012, 0x0412:
		return 949
	case 0x0404, 0x1404, 0x0c04, 0x7c04, 0x30404, 0x21404:
		return 950
	case 0x041c, 0x041a, 0x0405, 0x040e, 0x104e, 0x0415, 0x0418, 0x041b, 0x0424, 0x1040e, 0x0442, 0x081A, 0x141A:
		return 1250
	case 0x0423, 0x0402, 0x042f, 0x0419, 0x0c1a, 0x0422, 0x043f, 0x0444, 0x082c, 0x046D, 0x0485, 0x201A:
		return 1251
	case 0x0408:
		return 1253
	case 0x041f, 0x042c, 0x0443:
		return 1254
	case 0x040d:
		return 1255
	case 0x0401, 0x0801, 0xc01, 0x1001, 0x1401, 0x1801, 0x1c01, 0x2001, 0x2401, 0x2801, 0x2c01, 0x3001, 0x3401, 0x3801, 0x3c01, 0x4001, 0x0429, 0x0420, 0x0480, 0x048C:
		return 1256
	case 0x0425, 0x0426, 0x0427, 0x0827:
		return 1257
	case 0x042a:
		return 1258
	}
	return 1252
}

// codePage encodes and decodes the single-byte code pages SQL Server's
// char, varchar and text values are stored in.
type codePage struct {
	id  int
	cm  *charmap.Charmap
	enc map[rune]byte // non-ASCII runes
	dec [256]rune
}

var codePages = map[int]*charmap.Charmap{
	437:  charmap.CodePage437,
	850:  charmap.CodePage850,
	874:  charmap.Windows874,
	1250: charmap.Windows1250,
	1251: charmap.Windows1251,
	1252: charmap.Windows1252,
	1253: charmap.Windows1253,
	1254: charmap.Windows1254,
	1255: charmap.Windows1255,
	1256: charmap.Windows1256,
	1257: charmap.Windows1257,
	1258: charmap.Windows1258,
}

var cpCache = map[int]*codePage{}

func init() {
	for id, cm := range codePages {
		cp := &codePage{id: id, cm: cm, enc: map[rune]byte{}}
		for i := 0; i < 256; i++ {
			r := cm.DecodeByte(byte(i))
			cp.dec[i] = r
			if i >= 0x80 && r != utf8.RuneError {
				if _, dup := cp.enc[r]; !dup {
					cp.enc[r] = byte(i)
				}
			}
		}
		cpCache[id] = cp
	}
}

// lookupCodePage returns the code page id, or an error for one this server
// does not encode (the double-byte code pages).
func lookupCodePage(id int) (*codePage, error) {
	if cp, ok := cpCache[id]; ok {
		return cp, nil
	}
	return nil, fmt.Errorf("tdstest: code page %d is not supported", id)
}

// appendEncode appends s encoded in the code page; a character it cannot
// encode becomes '?', as SQL Server converts it.
func (cp *codePage) appendEncode(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if e, ok := cp.enc[r]; ok {
			b = append(b, e)
		} else {
			b = append(b, '?')
		}
	}
	return b
}

// decode decodes bytes of the code page to a Go string.
func (cp *codePage) decode(b []byte) string {
	ascii := true
	for _, c := range b {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b)
	}
	out := make([]byte, 0, len(b)+len(b)/2)
	for _, c := range b {
		out = utf8.AppendRune(out, cp.dec[c])
	}
	return string(out)
}
