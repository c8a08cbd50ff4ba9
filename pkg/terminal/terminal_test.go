package terminal

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEscape(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "dbo.claims", "dbo.claims"},
		{"hostile but printable", `dbo."we;ird [name]" \ ñ 日本`, `dbo."we;ird [name]" \ ñ 日本`},
		{"screen clear", "st-mary\x1b[2J", `st-mary\x1b[2J`},
		{"carriage return", "ok\rFAILED", `ok\rFAILED`},
		{"tab and newline", "a\tb\nc", `a\tb\nc`},
		{"bell and DEL", "\a\x7f", `\x07\x7f`},
		{"C1 CSI", "x\u009b31m", `x\x9b31m`},
		{"bidi override", "claims\u202etxt.exe", `claims\u202etxt.exe`},
		{"zero width joiner", "a\u200db", `a\u200db`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"invalid utf-8", "a\xffb", `a\xffb`},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Escape(tc.in))
		})
	}
}
