package mssqlmodel

import (
	"cmp"
	"slices"
	"strings"
	"unicode"
)

// The database collation is SQL_Latin1_General_CP1_CI_AS: varchar and char
// hold code page 1252 characters; comparisons are case-insensitive and
// accent-sensitive and ignore trailing spaces.
//
// What Collate approximates (exact SQL collation weights for every
// character are not modelled):
//
//   - Primary level: letters compare by their base letter, case folded
//     (a = A, é and e share the base E); digits sort before letters and
//     other symbols before digits, symbols among themselves by code point;
//     characters outside Latin-1 and code page 1252 sort after the Latin
//     letters by code point. Æ/æ, Œ/œ and ß expand to AE, OE and SS.
//   - The apostrophe (') and the hyphen (-) have no primary weight: they
//     sort as if absent ("'Aiea" after "Aaronsburg") and only break ties
//     ("coop" before "co-op"), yet equality keeps them ("O'Brien" is not
//     "OBrien"), as SQL Server 2025 was probed to do. The typographic quotes
//     (’ ‘ “ ”) are ordinary symbols with a primary weight.
//   - Secondary level: accents, so "e" < "é" and "e" <> "é" (accent
//     sensitive); "à" sorts before "Ao" because the primary level decides.
//   - Case never matters (case-insensitive), and trailing spaces are
//     ignored.
//
// The same comparison serves varchar (SQL sort order 52 on code page 1252)
// and nvarchar (the collation's Windows rules, Latin1_General_CI_AS): the
// model does not distinguish their few differences (ligature expansion in
// varchar, punctuation weights).

// Collate compares two strings in the model's collation.
func Collate(a, b string) int {
	a, b = strings.TrimRight(a, " "), strings.TrimRight(b, " ")
	if a == b {
		return 0
	}
	ka, kb := collationKey(a), collationKey(b)
	if c := slices.Compare(ka.primary, kb.primary); c != 0 {
		return c
	}
	if c := slices.Compare(ka.secondary, kb.secondary); c != 0 {
		return c
	}
	// Marks (apostrophe, hyphen): the spelling without sorts first, then
	// by position and mark.
	if c := cmp.Compare(len(ka.marks), len(kb.marks)); c != 0 {
		return c
	}
	for i := range ka.marks {
		if c := cmp.Compare(ka.marks[i].pos, kb.marks[i].pos); c != 0 {
			return -c // an earlier mark sorts later
		}
		if c := cmp.Compare(ka.marks[i].r, kb.marks[i].r); c != 0 {
			return c
		}
	}
	return 0
}

type mark struct {
	pos int
	r   rune
}

type collKey struct {
	primary   []int
	secondary []int
	marks     []mark
}

// Weight classes of the primary level.
const (
	wSymbol = 0x100
	wDigit  = 0x20000
	wLetter = 0x30000
	wOther  = 0x40000
)

func collationKey(s string) collKey {
	var k collKey
	for _, r := range s {
		if r == '\'' || r == '-' {
			k.marks = append(k.marks, mark{len(k.primary), r})
			continue
		}
		if exp, ok := expansions[unicode.ToUpper(r)]; ok {
			for _, e := range exp {
				k.primary = append(k.primary, wLetter+int(e-'A')*4)
				k.secondary = append(k.secondary, 0)
			}
			continue
		}
		base, accent := foldLatin(r)
		switch {
		case base >= 'A' && base <= 'Z':
			k.primary = append(k.primary, wLetter+int(base-'A')*4)
		case base == 'Ð':
			k.primary = append(k.primary, wLetter+int('D'-'A')*4+1)
		case base == 'Þ':
			k.primary = append(k.primary, wLetter+int('Z'-'A')*4+1)
		case base >= '0' && base <= '9':
			k.primary = append(k.primary, wDigit+int(base-'0'))
		case unicode.IsLetter(base):
			k.primary = append(k.primary, wOther+int(unicode.ToUpper(base)))
		default:
			k.primary = append(k.primary, wSymbol+int(base))
		}
		k.secondary = append(k.secondary, accent)
	}
	return k
}

var expansions = map[rune]string{'Æ': "AE", 'Œ': "OE", 'ß': "SS", 'ẞ': "SS"}

// Accent kinds, the secondary weights.
const (
	accNone = iota
	accGrave
	accAcute
	accCircumflex
	accTilde
	accDiaeresis
	accRing
	accCedilla
	accStroke
	accCaron
	accHook
)

// latinFold maps the accented letters of Latin-1 and code page 1252 to
// their base letter and accent.
var latinFold = map[rune]struct {
	base   rune
	accent int
}{
	'À': {'A', accGrave}, 'Á': {'A', accAcute}, 'Â': {'A', accCircumflex}, 'Ã': {'A', accTilde},
	'Ä': {'A', accDiaeresis}, 'Å': {'A', accRing}, 'Ç': {'C', accCedilla},
	'È': {'E', accGrave}, 'É': {'E', accAcute}, 'Ê': {'E', accCircumflex}, 'Ë': {'E', accDiaeresis},
	'Ì': {'I', accGrave}, 'Í': {'I', accAcute}, 'Î': {'I', accCircumflex}, 'Ï': {'I', accDiaeresis},
	'Ñ': {'N', accTilde}, 'Ò': {'O', accGrave}, 'Ó': {'O', accAcute}, 'Ô': {'O', accCircumflex},
	'Õ': {'O', accTilde}, 'Ö': {'O', accDiaeresis}, 'Ø': {'O', accStroke},
	'Ù': {'U', accGrave}, 'Ú': {'U', accAcute}, 'Û': {'U', accCircumflex}, 'Ü': {'U', accDiaeresis},
	'Ý': {'Y', accAcute}, 'Ÿ': {'Y', accDiaeresis}, 'Š': {'S', accCaron}, 'Ž': {'Z', accCaron},
	'Ƒ': {'F', accHook},
}

func foldLatin(r rune) (rune, int) {
	u := unicode.ToUpper(r)
	if r == 'ÿ' {
		u = 'Ÿ'
	}
	if r == 'ƒ' {
		u = 'Ƒ'
	}
	if f, ok := latinFold[u]; ok {
		return f.base, f.accent
	}
	if u == 'ð' {
		u = 'Ð'
	}
	if u == 'þ' {
		u = 'Þ'
	}
	return u, accNone
}

// cp1252High maps code page 1252's bytes 0x80-0x9F to Unicode; the five
// undefined bytes map to the C1 control of the same value, as Windows does.
var cp1252High = [32]rune{
	'€', 0x81, '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', 0x8D, 'Ž', 0x8F,
	0x90, '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', 0x9D, 'ž', 'Ÿ',
}

// DecodeCP1252 decodes bytes in code page 1252, as SQL Server reads a
// varchar value in a SQL_Latin1_General_CP1 collation: UTF-8 bytes come out
// as mojibake ("O’Brien" as UTF-8 reads "Oâ€™Brien").
func DecodeCP1252(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x80 && c < 0xA0 {
			sb.WriteRune(cp1252High[c-0x80])
		} else {
			sb.WriteRune(rune(c))
		}
	}
	return sb.String()
}

// encodeCP1252 encodes s in code page 1252; ok is false when a character
// has no code (it is written as '?').
func encodeCP1252(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	ok := true
	for _, r := range s {
		if b, found := cp1252Byte(r); found {
			out = append(out, b)
		} else {
			out = append(out, '?')
			ok = false
		}
	}
	return out, ok
}

func cp1252Byte(r rune) (byte, bool) {
	if r < 0x80 || (r >= 0xA0 && r <= 0xFF) {
		return byte(r), true
	}
	for i, x := range cp1252High {
		if x == r {
			return byte(0x80 + i), true
		}
	}
	return 0, false
}

// toCP1252Repertoire replaces the characters code page 1252 cannot hold by
// '?', as SQL Server does when it converts nvarchar to varchar (SQL Server
// also applies best-fit mappings, such as Ł to L; the model does not).
func toCP1252Repertoire(s string) string {
	for _, r := range s {
		if _, ok := cp1252Byte(r); !ok {
			b, _ := encodeCP1252(s)
			return DecodeCP1252(b)
		}
	}
	return s
}
