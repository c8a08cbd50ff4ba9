package changetracking

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func TestObjectNameQuotesEachPart(t *testing.T) {
	tests := []struct{ schema, name, want string }{
		{"dbo", "claims", "[dbo].[claims]"},
		{"dbo", "a]b; --", "[dbo].[a]]b; --]"},
		{"we.ird", "t.able", "[we.ird].[t.able]"},
		{`s"[x]`, "ünï 𝄞", `[s"[x]]].[ünï 𝄞]`},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, objectName(&schemas.Table{Schema: tc.schema, Name: tc.name}))
	}
}
