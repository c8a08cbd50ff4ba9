package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzConfig feeds any bytes to Parse. It must never panic; an error must
// list its problems as *FieldError values that each say where (a key path
// or a line, unless the whole file is empty) and never echo a value; a configuration it accepts must validate again. Seeds: every
// testdata/*.yaml fixture, and testdata/fuzz/FuzzConfig (crashers found by
// fuzzing are kept there).
func FuzzConfig(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil {
			require.NotNil(t, c)
			require.NoError(t, c.Validate(), "an accepted configuration no longer validates")
			return
		}
		problems := Problems(err)
		require.NotEmpty(t, problems)
		for _, p := range problems {
			var fe *FieldError
			require.True(t, errors.As(p, &fe), "problem %q is not a *FieldError", p)
			require.NotEmpty(t, fe.Problem, "problem with no text")
			// The decoder's own message quotes the value (maybe a
			// misplaced secret): it must always be rewritten without it.
			require.NotContains(t, fe.Problem, "cannot unmarshal", "the decoder's message, value included, reached the error")
			if fe.Key == "" && fe.Line == 0 {
				require.Contains(t, wholeFileProblems, fe.Problem, "problem %q names neither a key nor a line", fe.Problem)
			}
		}
	})
}

// wholeFileProblems are the problems that rightly name no key and no line.
var wholeFileProblems = []string{
	"empty configuration",
}
