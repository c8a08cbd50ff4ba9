package check_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
)

// TestWriteTextEscapesNames: a name holding control characters (an escape
// sequence that clears the screen, a carriage return that overwrites the
// line, a bidirectional override) is printed escaped wherever the text
// report shows it: the org line, the table row, its key, its notes and
// problems.
func TestWriteTextEscapesNames(t *testing.T) {
	table := "dbo.claims\x1b[2J"
	rep := check.Report{Orgs: []check.OrgReport{{
		Name: "st-mary\u202e", Dialect: "sqlserver", Via: "direct",
		Steps: []check.Step{{Name: "login", Status: check.StatusOK}},
		Tables: []check.TableReport{{Name: table, Status: check.StatusFailed, Key: []string{"id\rOK"},
			Why: "planned", Notes: []string{"a note"},
			Problems: []check.Problem{{Code: "permission_denied", Cause: "denied", Fix: "grant"}}}},
	}}}
	var b bytes.Buffer
	require.NoError(t, rep.WriteText(&b))
	out := b.String()
	for _, c := range []string{"\x1b", "\r", "\u202e"} {
		require.NotContains(t, out, c)
	}
	require.Contains(t, out, `org st-mary\u202e (sqlserver via direct)`)
	require.Contains(t, out, `dbo.claims\x1b[2J`)
	require.Contains(t, out, `id\rOK`)
	require.Equal(t, 4, strings.Count(out, `dbo.claims\x1b[2J`), "the row, the plan, the note and the problem:\n%s", out)
}
