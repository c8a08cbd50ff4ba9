package integration

import (
	"fmt"
	"hash/fnv"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The reliability suite reports its own figures: each test adds
// what it did (iterations, faults injected, rows compared, rows lost) with
// figure, and TestMain writes them as Markdown to the file named by
// EHRSYNC_RELIABILITY_REPORT when the run passed (the task test:soak
// writes docs/reliability.md this way). Figures are counts and durations,
// never row values.

// soak is true in the long run (EHRSYNC_SOAK=1, the task test:soak): tests
// scale their iterations up with it.
var soak = os.Getenv("EHRSYNC_SOAK") == "1"

// scale returns normal, or soakN in the soak run.
func scale(normal, soakN int) int {
	if soak {
		return soakN
	}
	return normal
}

// suiteSeed seeds every randomized test: EHRSYNC_SEED when set (to replay a
// failure), else the clock. Each test derives its own seed from it and its
// name (testSeed), and reports it.
var suiteSeed = func() uint64 {
	if s := os.Getenv("EHRSYNC_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			panic(fmt.Sprintf("EHRSYNC_SEED=%q: want an unsigned integer", s))
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}()

// testSeed is the seed of one named test: stable for a given suiteSeed.
func testSeed(name string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", suiteSeed, name)
	return h.Sum64()
}

type figureRow struct {
	name  string
	value string
}

type reportSection struct {
	title string
	rows  []figureRow
}

var report struct {
	sync.Mutex
	sections []*reportSection
	started  time.Time
}

func init() { report.started = time.Now() }

// figure records one figure of a section (a test's title): the last value
// given for a name wins, and sections and names keep their first order.
func figure(section, name string, value any) {
	report.Lock()
	defer report.Unlock()
	i := slices.IndexFunc(report.sections, func(s *reportSection) bool { return s.title == section })
	if i < 0 {
		report.sections = append(report.sections, &reportSection{title: section})
		i = len(report.sections) - 1
	}
	s := report.sections[i]
	v := fmt.Sprint(value)
	if d, ok := value.(time.Duration); ok {
		v = d.Round(time.Millisecond).String()
	}
	if j := slices.IndexFunc(s.rows, func(r figureRow) bool { return r.name == name }); j >= 0 {
		s.rows[j].value = v
		return
	}
	s.rows = append(s.rows, figureRow{name: name, value: v})
}

// writeReport writes the figures as Markdown to path.
func writeReport(path string, passed bool) error {
	report.Lock()
	defer report.Unlock()
	var b strings.Builder
	mode, command := "normal", "go tool task test"
	if soak {
		mode, command = "soak", "go tool task test:soak"
	}
	fmt.Fprintf(&b, "# Reliability\n\n")
	fmt.Fprintf(&b, "Written by the reliability suite itself (`integration/`) at the end of its last\n")
	fmt.Fprintf(&b, "run; do not edit by hand. Every figure below was counted by the tests.\n\n")
	fmt.Fprintf(&b, "- Run: %s, %s, %s\n", mode, time.Now().UTC().Format("2006-01-02 15:04 UTC"), result(passed))
	fmt.Fprintf(&b, "- Reproduce: `EHRSYNC_SEED=%d %s`\n", suiteSeed, command)
	fmt.Fprintf(&b, "- Machine: %d CPUs, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(&b, "- Duration: %s\n\n", time.Since(report.started).Round(time.Second))
	for _, s := range report.sections {
		fmt.Fprintf(&b, "## %s\n\n| figure | value |\n|---|---:|\n", s.title)
		for _, r := range s.rows {
			fmt.Fprintf(&b, "| %s | %s |\n", r.name, r.value)
		}
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func result(passed bool) string {
	if passed {
		return "passed"
	}
	return "FAILED"
}
