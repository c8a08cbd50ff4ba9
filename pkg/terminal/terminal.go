// Package terminal is what commands show on an operator's terminal: names
// made safe to print (Escape), and progress lines (Meter) drawn on a
// Console that keeps log lines off them.
//
// Organization, table, column and operator names come from configuration
// files, catalogs, source databases and HTTP requests. A name holding an
// escape sequence (ESC [ 2 J clears the screen; OSC 8 forges a link), a
// carriage return (overwrites what was printed before it), a tab or newline
// (breaks a table's columns), or a bidirectional override (shows text in
// another order than it is) could make a command's output lie. Escape
// writes each such character as a Go escape, so what is printed is what
// the name holds; progress lines escape the names they show.
package terminal

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every control character (C0, DEL, C1), Unicode
// format character (bidirectional overrides and isolates, zero-width
// characters), line or paragraph separator and invalid UTF-8 byte written
// as a Go escape: \t, \n, \r, \x1b, \u202e, \xff. Any other character,
// backslashes included, is kept. A name without such characters is
// returned as it is.
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case !unsafe(r):
			b.WriteString(s[i : i+size])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || unsafe(r) {
			return true
		}
		i += size
	}
	return false
}

// unsafe reports whether r may change how a terminal shows text.
func unsafe(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}
