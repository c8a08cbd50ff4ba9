// Package integration holds the end-to-end tests: the real ehrsync binary
// against real servers. PostgreSQL always (the test harness starts one);
// SQL Server when EHRSYNC_TEST_MSSQL_DSN is set.
package integration

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

// binary is the ehrsync binary built for this test run.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// The fast lane runs only the tests that need neither the binary
		// nor PostgreSQL: every other test here runs one or both for
		// seconds to minutes.
		if err := flag.Set("test.run", shortLane); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ehrsync-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "ehrsync")
	build := exec.Command("go", "build", "-o", binary, "../cmd/ehrsync")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build ehrsync:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(reporting{m})
}

// reporting writes the reliability report after the tests ran (report_test.go).
type reporting struct{ m *testing.M }

func (r reporting) Run() int {
	code := r.m.Run()
	if path := os.Getenv("EHRSYNC_RELIABILITY_REPORT"); path != "" {
		if err := writeReport(path, code == 0); err != nil {
			fmt.Fprintln(os.Stderr, "write reliability report:", err)
			return 1
		}
	}
	return code
}

// shortLane is the -run of this package under -short: its tests that
// need neither the binary nor PostgreSQL.
const shortLane = "^TestAlertRules$"
