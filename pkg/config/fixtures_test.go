package config

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestGoodFixtures loads every testdata/*.good.yaml; each must be valid.
func TestGoodFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 5)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			require.NoError(t, err)
			require.NotEmpty(t, c.Orgs)
			// Loading applied the defaults, so the result validates again.
			require.NoError(t, c.Validate())
		})
	}
}

// TestBadFixtures loads every testdata/*.bad.yaml. Each fixture lists the
// problems it must produce as leading "# want: <substring>" comments: every
// want must appear in the error, and there must be exactly as many problems
// as wants.
func TestBadFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 10)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			wants := readWants(t, f)
			require.NotEmpty(t, wants, "fixture has no # want: lines")

			_, err := Load(f)
			require.Error(t, err)
			problems := Problems(err)
			var texts []string
			for _, p := range problems {
				texts = append(texts, p.Error())
			}
			for _, w := range wants {
				require.Truef(t, containsAny(texts, w), "want a problem containing %q; got:\n%s", w, strings.Join(texts, "\n"))
			}
			require.Lenf(t, problems, len(wants), "problems:\n%s", strings.Join(texts, "\n"))
			require.Contains(t, err.Error(), f, "Load names the file")
		})
	}
}

func readWants(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var wants []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "#") {
			break
		}
		if w, ok := strings.CutPrefix(line, "# want: "); ok {
			wants = append(wants, w)
		}
	}
	require.NoError(t, sc.Err())
	return wants
}

func containsAny(texts []string, sub string) bool {
	for _, s := range texts {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestExample loads the documented example and checks the tables it
// promises.
func TestExample(t *testing.T) {
	c, err := Load("../../docs/examples/nextgen-denied-claims.yaml")
	require.NoError(t, err)
	o, ok := c.Org("st-mary")
	require.True(t, ok)
	want := map[string]Strategy{
		"dbo.patient_encounter": StrategyHWM,
		"dbo.charges":           StrategyChangeTracking,
		"dbo.claims":            StrategyCDC,
		"dbo.transactions":      StrategyChangeTracking,
		"dbo.trans_detail":      StrategyAuto,
		"dbo.reason_code_links": StrategyChangeTracking,
		"dbo.payer_mstr":        StrategyHWM,
	}
	for name, s := range want {
		tb, ok := o.Table(name)
		require.True(t, ok, name)
		require.Equal(t, s, tb.Strategy, name)
	}
	claims, _ := o.Table("claims")
	require.True(t, claims.ChangeLog)
	payer, _ := o.Table("dbo.payer_mstr")
	require.Equal(t, "modify_timestamp", payer.Cursor)
	require.Equal(t, 5*time.Minute, payer.LookBack)
	enc, _ := o.Table("dbo.patient_encounter")
	require.Equal(t, "row_timestamp", enc.Cursor)
}
