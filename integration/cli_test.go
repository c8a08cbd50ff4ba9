package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/demo"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// cli is one run of the binary: its output streams and exit code.
type cli struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary with args, with e's store URL in the environment
// when e is not nil.
func runCLI(t *testing.T, e *env, args ...string) cli {
	t.Helper()
	cmd := exec.Command(binary, args...)
	if e != nil {
		cmd = e.command(args...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return cli{stdout: out.String(), stderr: errb.String(), code: exitCodeOf(t, err)}
}

// complete asks the binary's shell completion (cobra's __complete, what
// the completion scripts call) for the words completing args, without
// their descriptions.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	r := runCLI(t, nil, append([]string{"__complete"}, args...)...)
	require.Equal(t, 0, r.code, r.stderr)
	var words []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" || strings.HasPrefix(line, ":") {
			continue // the directive
		}
		words = append(words, strings.SplitN(line, "\t", 2)[0])
	}
	return words
}

// commandPaths lists every command of the binary as the words that run
// it (["sync"], ["positions", "list"], ...), found through completion:
// a command whose completion offers subcommands groups them.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	var walk func(path []string)
	walk = func(path []string) {
		for _, sub := range complete(t, append(slices.Clone(path), "")...) {
			if sub == "help" {
				continue // its completion offers every command again
			}
			p := append(slices.Clone(path), sub)
			paths = append(paths, p)
			walk(p)
		}
	}
	walk(nil)
	return paths
}

// TestCLIHelpAndExitCodes: help for ehrsync and every command and
// subcommand, as `help`, `-h` and `--help`, on stdout with exit 0; the
// version both ways; shell completion for bash, zsh and fish, flags
// completed from the configuration file; mistakes in the command line
// exit 2 with one error line and where to look.
func TestCLIHelpAndExitCodes(t *testing.T) {
	paths := commandPaths(t)
	var names []string
	for _, p := range paths {
		names = append(names, strings.Join(p, " "))
	}
	for _, want := range []string{"sync", "run", "check", "backfill", "positions list", "positions show", "positions reset",
		"secrets encrypt", "secrets new-key", "secrets rotate-key", "audit verify", "audit prune", "admin token",
		"migrate", "validate", "simulate", "demo", "version", "completion bash", "completion zsh", "completion fish"} {
		require.Contains(t, names, want)
	}

	r := runCLI(t, nil, "help")
	require.Equal(t, 0, r.code, r.stderr)
	for _, p := range paths {
		if len(p) == 1 {
			require.Regexp(t, `(?m)^  `+regexp.QuoteMeta(p[0])+` `, r.stdout, "ehrsync help does not list %s", p[0])
		}
	}
	for _, p := range append(paths, nil) {
		for _, args := range [][]string{append(slices.Clone(p), "--help"), append(slices.Clone(p), "-h"), append([]string{"help"}, p...)} {
			r := runCLI(t, nil, args...)
			require.Equal(t, 0, r.code, "%v: %s", args, r.stderr)
			require.Empty(t, r.stderr, args)
			require.Contains(t, r.stdout, "Usage:\n  "+strings.Join(append([]string{"ehrsync"}, p...), " "), args)
			require.Contains(t, r.stdout, "--log-format", "%v: the global flags are not shown", args)
		}
	}
	r = runCLI(t, nil, "help", "positions", "reset")
	require.Contains(t, r.stdout, "--confirm ORG/TABLE")

	v1, v2 := runCLI(t, nil, "version"), runCLI(t, nil, "--version")
	require.Equal(t, 0, v1.code)
	require.Equal(t, 0, v2.code)
	require.Regexp(t, `^ehrsync \S+\n$`, v1.stdout)
	require.Equal(t, v1.stdout, v2.stdout)

	for shell, want := range map[string]string{"bash": "__start_ehrsync", "zsh": "#compdef ehrsync", "fish": "complete -c ehrsync"} {
		r := runCLI(t, nil, "completion", shell)
		require.Equal(t, 0, r.code, r.stderr)
		require.Contains(t, r.stdout, want, shell)
	}
	cfg := filepath.Join(t.TempDir(), "ehrsync.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`store: {url: env:STORE}
orgs:
  - name: st-mary
    tables: [{name: dbo.claims}, {name: dbo.charges}]
  - name: north
    tables: [{name: dbo.payer_mstr}]
`), 0o600))
	require.Equal(t, []string{"st-mary", "north"}, complete(t, "sync", "--config", cfg, "--org", ""))
	require.Equal(t, []string{"north"}, complete(t, "backfill", "--config", cfg, "--org", "n"))
	require.Equal(t, []string{"dbo.claims", "dbo.charges"}, complete(t, "positions", "show", "--config", cfg, "--org", "st-mary", "--table", ""))
	require.Equal(t, []string{"dbo.claims", "dbo.charges", "dbo.payer_mstr"}, complete(t, "sync", "--config", cfg, "--table", "dbo."))
	require.Equal(t, []string{"list", "reset", "show"}, complete(t, "help", "positions", ""))

	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "want a command: admin, audit, backfill"},
		{[]string{"snyc"}, `unknown command "snyc"`},
		{[]string{"positions"}, "positions: want a subcommand: list, reset, show"},
		{[]string{"secrets", "decrypt"}, `secrets: unknown subcommand "decrypt"`},
		{[]string{"help", "nope"}, `help: no command "nope"`},
		{[]string{"sync", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"sync", "now"}, `unexpected argument "now"`},
		{[]string{"sync"}, "--config is required"},
		{[]string{"backfill", "--config", cfg}, "--org is required"},
		{[]string{"positions", "show", "--config", cfg, "--org", "north"}, "positions show needs --org and one --table"},
		{[]string{"check", "--config", cfg, "--step-timeout", "soon"}, `invalid argument "soon" for "--step-timeout"`},
		{[]string{"sync", "--config", cfg, "--actor", ""}, "--actor: empty"},
		// The global flags after the command are the command's too.
		{[]string{"validate", "--config", cfg, "--log-format", "yaml"}, `--log-format: unknown format "yaml"`},
		{[]string{"validate", "--config", cfg, "--log-level", "loud"}, "--log-level"},
	} {
		r := runCLI(t, nil, tc.args...)
		require.Equal(t, 2, r.code, "%v: %s", tc.args, r.stderr)
		require.Empty(t, r.stdout, tc.args)
		require.Equal(t, 1, strings.Count(r.stderr, "ehrsync: "), "%v: the error is printed once:\n%s", tc.args, r.stderr)
		require.Contains(t, r.stderr, tc.want, tc.args)
		require.Contains(t, r.stderr, "--help' for usage.", tc.args)
	}
	r = runCLI(t, nil, "snyc")
	require.Contains(t, r.stderr, "did you mean sync?")
	// A failure, not a mistake in the command line: exit 1.
	r = runCLI(t, nil, "validate", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.Equal(t, 1, r.code, r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "ehrsync: "), r.stderr)
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// requireSnakeCase fails on any key of v (decoded JSON), at any depth, that
// is not snake_case, naming its path.
func requireSnakeCase(t *testing.T, what string, v any, path string) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			require.Regexp(t, snakeCase, k, "%s: key %s%s is not snake_case", what, path, k)
			requireSnakeCase(t, what, x, path+k+".")
		}
	case []any:
		for i, x := range v {
			requireSnakeCase(t, what, x, fmt.Sprintf("%s[%d].", strings.TrimSuffix(path, "."), i))
		}
	}
}

// TestCLIJSONIsSnakeCase runs every command that has --json, found in the
// binary's command tree, and checks every key of what it prints, and of
// its JSON log lines, is snake_case. A new command with --json fails this
// test until it is given a way to run here.
func TestCLIJSONIsSnakeCase(t *testing.T) {
	e := newEnv(t, 1, 500)
	e.sync(t)
	runs := map[string][]string{
		"check":          {"check", "--config", e.config},
		"sync":           {"sync", "--config", e.config},
		"backfill":       {"backfill", "--config", e.config, "--org", org, "--table", "dbo.claims"},
		"positions list": {"positions", "list", "--config", e.config},
		"positions show": {"positions", "show", "--config", e.config, "--org", org, "--table", "dbo.claims"},
		"status":         {"status", "--config", e.config},
		"verify":         {"verify", "--config", e.config, "--org", org},
		"validate":       {"validate", "--config", e.config},
	}
	checked := 0
	for _, p := range commandPaths(t) {
		name := strings.Join(p, " ")
		if !slices.Contains(complete(t, append(slices.Clone(p), "--")...), "--json") {
			continue
		}
		args, ok := runs[name]
		if !ok {
			t.Errorf("ehrsync %s has --json: add how to run it to this test, so its keys are checked", name)
			continue
		}
		r := runCLI(t, e, append([]string{"--log-format", "json"}, append(args, "--json")...)...)
		require.Equal(t, 0, r.code, "%s: %s", name, r.stderr)
		var out any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &out), "%s: stdout is not one JSON document:\n%s", name, r.stdout)
		require.NotEmpty(t, out, name)
		requireSnakeCase(t, "ehrsync "+name+" --json", out, "")
		for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue // progress, on stderr when stdout is JSON
			}
			var rec any
			require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
			requireSnakeCase(t, "ehrsync "+name+" log", rec, "")
		}
		checked++
	}
	require.Equal(t, len(runs), checked, "a command this test runs no longer has --json")
}

// TestSyncAndBackfillJSONSummary: sync --json and backfill --json print,
// per organization and table, what the run did, as the store and the
// source show it: rows read, the position (a summary, never key
// values), the result and a failure's error class; the exit code
// agrees with "ok".
func TestSyncAndBackfillJSONSummary(t *testing.T) {
	e := newEnv(t, 1, 200)
	ctx := context.Background()
	type summary struct {
		SchemaVersion int  `json:"schema_version"`
		OK            bool `json:"ok"`
		Orgs          []struct {
			Org    string `json:"org"`
			Result string `json:"result"`
			Tables []struct {
				Table           string              `json:"table"`
				Strategy        string              `json:"strategy"`
				Result          string              `json:"result"`
				Rows            int64               `json:"rows"`
				Deleted         int64               `json:"deleted"`
				DurationSeconds float64             `json:"duration_seconds"`
				Position        *watermarks.Summary `json:"position"`
				Reconciled      *struct {
					SourceKeys int64 `json:"source_keys"`
				} `json:"reconciled"`
				Error      string `json:"error"`
				ErrorClass string `json:"error_class"`
			} `json:"tables"`
		} `json:"orgs"`
	}
	parse := func(r cli) summary {
		t.Helper()
		var s summary
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &s), "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Equal(t, 1, s.SchemaVersion)
		require.Len(t, s.Orgs, 1)
		require.Equal(t, org, s.Orgs[0].Org)
		return s
	}
	sourceRows := func(table string) int64 {
		var n int64
		require.NoError(t, e.src.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n
	}

	// The first sync snapshots every table: each reads every source row.
	r := runCLI(t, e, "sync", "--config", e.config, "--json")
	require.Equal(t, 0, r.code, r.stderr)
	s := parse(r)
	require.True(t, s.OK)
	positions, err := watermarks.NewStore(e.store).List(ctx, org)
	require.NoError(t, err)
	saved := map[string]watermarks.Position{}
	for _, p := range positions {
		saved[p.Table] = p.Position
	}
	var tables []string
	for _, tb := range s.Orgs[0].Tables {
		tables = append(tables, tb.Table)
		require.Equal(t, "ok", tb.Result, tb.Table)
		require.NotEmpty(t, tb.Strategy, tb.Table)
		require.Equal(t, sourceRows(tb.Table), tb.Rows, "%s: rows read", tb.Table)
		require.NotNil(t, tb.Reconciled, tb.Table)
		require.Equal(t, sourceRows(tb.Table), tb.Reconciled.SourceKeys, tb.Table)
		require.Positive(t, tb.DurationSeconds, tb.Table)
		require.Equal(t, watermarks.Summarize(saved[tb.Table]), tb.Position, "%s: the summary of the position saved", tb.Table)
	}
	var want []string
	for _, tb := range schemas.NextGen().Tables() {
		want = append(want, tb.QualifiedName())
	}
	require.ElementsMatch(t, want, tables)

	// A table that fails: the others still sync; exit 1 and "ok": false.
	_, err = e.src.Exec(ctx, "ALTER TABLE dbo.payer_mstr RENAME TO payer_mstr_gone")
	require.NoError(t, err)
	r = runCLI(t, e, "sync", "--config", e.config, "--json")
	require.Equal(t, 1, r.code, r.stderr)
	s = parse(r)
	require.False(t, s.OK)
	failed := 0
	for _, tb := range s.Orgs[0].Tables {
		if tb.Table != "dbo.payer_mstr" {
			require.Equal(t, "ok", tb.Result, "%s: %s", tb.Table, tb.Error)
			continue
		}
		require.Equal(t, "failed", tb.Result)
		require.NotEmpty(t, tb.Error)
		require.NotEmpty(t, tb.ErrorClass)
		failed++
	}
	require.Equal(t, 1, failed)
	require.Contains(t, r.stderr, "ehrsync: 1 failed: "+org+"/dbo.payer_mstr")
	_, err = e.src.Exec(ctx, "ALTER TABLE dbo.payer_mstr_gone RENAME TO payer_mstr")
	require.NoError(t, err)

	// backfill --json: stdout is the summary alone (progress on stderr).
	r = runCLI(t, e, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--json")
	require.Equal(t, 0, r.code, r.stderr)
	s = parse(r)
	require.True(t, s.OK)
	require.Len(t, s.Orgs[0].Tables, 1)
	tb := s.Orgs[0].Tables[0]
	require.Equal(t, "dbo.claims", tb.Table)
	require.Equal(t, "ok", tb.Result)
	require.Equal(t, sourceRows("dbo.claims"), tb.Rows)
	require.Contains(t, r.stderr, org+" dbo.claims: ")
	require.Contains(t, r.stderr, ", done")
}

// TestDemoKeepWritesAConfiguration: `demo --keep` leaves its PostgreSQL
// running and writes a configuration file for its source and store, which
// check and sync then use with the real binary: the sync continues from
// the demo's positions.
func TestDemoKeepWritesAConfiguration(t *testing.T) {
	// Under a directory the postgres user can enter (t.TempDir is 0700).
	parent, err := os.MkdirTemp("", "ehrsync-demo-keep-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(parent) })
	require.NoError(t, os.Chmod(parent, 0o755))
	dir := filepath.Join(parent, "demo")
	r := runCLI(t, nil, "--log-level", "warn", "demo", "--keep", "--dir", dir, "--days", "2")
	stop := regexp.MustCompile(`Stop it with: (.*)  \(or run the demo again\)`).FindStringSubmatch(r.stdout)
	if stop != nil {
		t.Cleanup(func() {
			out, err := exec.Command("sh", "-c", stop[1]).CombinedOutput()
			require.NoError(t, err, "%s: %s", stop[1], out)
		})
	}
	require.Equal(t, 0, r.code, "%s\n%s", r.stdout, r.stderr)
	require.NotNil(t, stop, r.stdout)
	cfg := filepath.Join(dir, demo.ConfigFile)
	require.Contains(t, r.stdout, "Configuration for this source and store: "+cfg+"\n  ehrsync sync --config "+cfg+"\n")

	c := runCLI(t, nil, "check", "--config", cfg)
	require.Equal(t, 0, c.code, "%s\n%s", c.stdout, c.stderr)
	require.Contains(t, c.stdout, "HEALTHY")

	s := runCLI(t, nil, "sync", "--config", cfg, "--json")
	require.Equal(t, 0, s.code, s.stderr)
	var sum struct {
		OK   bool `json:"ok"`
		Orgs []struct {
			Tables []struct {
				Table    string              `json:"table"`
				Rows     int64               `json:"rows"`
				Position *watermarks.Summary `json:"position"`
			} `json:"tables"`
		} `json:"orgs"`
	}
	require.NoError(t, json.Unmarshal([]byte(s.stdout), &sum), s.stdout)
	require.True(t, sum.OK)
	require.Len(t, sum.Orgs, 1)
	require.Len(t, sum.Orgs[0].Tables, len(schemas.NextGen().Tables()))
	positioned := 0
	for _, tb := range sum.Orgs[0].Tables {
		require.Zero(t, tb.Rows, "%s: the demo's store and positions, nothing left to read", tb.Table)
		if tb.Position != nil {
			positioned++
		}
	}
	require.Positive(t, positioned, "no table continued from a position")
}

// TestInsecureWarningsOncePerProcess: a warning about an insecure setting
// is logged once by each command that makes the connection it is about,
// however many times the command connects (sync connects to the store as
// store.url and as store.owner_url), and never by a command that connects
// nowhere.
func TestInsecureWarningsOncePerProcess(t *testing.T) {
	e := newEnv(t, 1, 500)
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	text := strings.Replace(string(b), "store:\n  url: env:TEST_STORE_URL\n",
		"store:\n  url: env:TEST_STORE_URL\n  owner_url: env:TEST_STORE_URL\n  insecure_transport: true\n", 1)
	text = strings.Replace(text, "      tls: {mode: disable}\n", "      tls: {mode: disable}\n      insecure_transport: true\n", 1)
	require.Contains(t, text, "owner_url")
	require.Contains(t, text, "      insecure_transport: true\n")
	cfg := filepath.Join(t.TempDir(), "insecure.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(text), 0o600))
	storeWarning := "store.insecure_transport is true"
	sourceWarnings := []string{"tls.mode is disable", "insecure_transport is true but not needed"}

	warnings := func(args ...string) []string {
		t.Helper()
		r := runCLI(t, e, append([]string{"--log-format", "json"}, args...)...)
		var w []string
		for _, line := range strings.Split(r.stderr, "\n") {
			var rec struct {
				Level, Msg, Warning string
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" && rec.Warning != "" {
				w = append(w, rec.Warning)
			}
		}
		return w
	}
	count := func(w []string, prefix string) int {
		n := 0
		for _, s := range w {
			if strings.HasPrefix(s, prefix) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct {
		args    []string
		sources bool // connects to the sources
	}{
		{[]string{"sync", "--config", cfg}, true},
		{[]string{"backfill", "--config", cfg, "--org", org, "--table", "dbo.payer_mstr"}, true},
		{[]string{"check", "--config", cfg}, true},
		{[]string{"check", "--config", cfg, "--json"}, true},
		{[]string{"positions", "list", "--config", cfg}, false},
		{[]string{"migrate", "--config", cfg}, false},
		{[]string{"audit", "verify", "--config", cfg}, false},
	} {
		w := warnings(tc.args...)
		require.Equal(t, 1, count(w, storeWarning), "%v: %q", tc.args, w)
		want := 0
		if tc.sources {
			want = 1
		}
		for _, s := range sourceWarnings {
			require.Equal(t, want, count(w, s), "%v: %q", tc.args, w)
		}
	}
	for _, args := range [][]string{
		{"validate", "--config", cfg},
		{"help"},
		{"sync", "--config", cfg, "--help"},
		{"secrets", "new-key"},
		{"admin", "token", "--operator", "alice"},
		{"version"},
	} {
		require.Empty(t, warnings(args...), args)
	}
}
