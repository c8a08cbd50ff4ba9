package check_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
)

// configFixture is a testdata/validate file's header: the problems validate must
// report ("# want: <substring of one problem>", exactly as many problems
// as wants), the variables to set ("# env: NAME=value") and to unset
// ("# unset: NAME").
type configFixture struct {
	wants, unset []string
	env          map[string]string
}

func readFixture(t *testing.T, path string) configFixture {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f := configFixture{env: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			f.wants = append(f.wants, w)
		}
		if kv, ok := strings.CutPrefix(line, "# env: "); ok {
			k, v, _ := strings.Cut(kv, "=")
			f.env[k] = v
		}
		if name, ok := strings.CutPrefix(line, "# unset: "); ok {
			f.unset = append(f.unset, name)
		}
	}
	require.NoError(t, sc.Err())
	return f
}

// TestValidateFixtures: validate reports, for each testdata/validate file,
// every problem a sync would refuse at once (the file's, and the store
// URL's transport, the catalog, the sources' settings), each with its key
// and line, as text and as JSON with snake_case keys; no value of a secret
// appears in either.
func TestValidateFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/validate/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 6)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f := readFixture(t, path)
			for k, v := range f.env {
				t.Setenv(k, v)
			}
			for _, name := range f.unset {
				t.Setenv(name, "")
				os.Unsetenv(name)
			}
			rep := check.Validate(path)
			var texts []string
			for _, p := range rep.Problems {
				texts = append(texts, p.String())
			}
			all := strings.Join(texts, "\n")
			for _, w := range f.wants {
				require.True(t, slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, w) }),
					"want a problem containing %q; got:\n%s", w, all)
			}
			require.Len(t, rep.Problems, len(f.wants), all)
			require.Equal(t, len(f.wants) == 0, rep.Valid)

			var text, js bytes.Buffer
			require.NoError(t, rep.WriteText(&text))
			require.NoError(t, rep.WriteJSON(&js))
			t.Log("\n" + text.String())
			for _, v := range f.env {
				if strings.Contains(v, "S3ntinel") {
					require.NotContains(t, text.String(), "S3ntinel")
					require.NotContains(t, js.String(), "S3ntinel")
				}
			}
			var back map[string]any
			require.NoError(t, json.Unmarshal(js.Bytes(), &back))
			keys := func(m map[string]any) []string {
				var out []string
				for k := range m {
					out = append(out, k)
				}
				slices.Sort(out)
				return out
			}
			require.Equal(t, []string{"file", "orgs", "problems", "schema_version", "tables", "valid", "warnings"}, keys(back))
			for _, p := range back["problems"].([]any) {
				for _, k := range keys(p.(map[string]any)) {
					require.Contains(t, []string{"key", "line", "problem"}, k)
				}
			}
			if rep.Valid {
				require.Contains(t, text.String(), path+": valid (")
			} else {
				require.Contains(t, text.String(), path+" has ")
			}
		})
	}
}
