// Command task runs go-task from its own module (tools/task/go.mod), so that
// `go tool task` works from ehrsync's root while nothing go-task depends on
// enters ehrsync's module graph: this program uses the standard library
// only, and runs `go tool -modfile=ROOT/tools/task/go.mod task ARGS`.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "task:", err)
		os.Exit(1)
	}
	args := append([]string{"tool", "-modfile=" + filepath.Join(root, "tools", "task", "go.mod"), "task"}, os.Args[1:]...)
	cmd := exec.Command("go", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// A terminal's Ctrl-C reaches go-task too (one process group): this
	// process waits for it to stop instead of dying first.
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "task:", err)
		os.Exit(1)
	}
}

// moduleRoot is the directory of ehrsync's go.mod, as the go command finds it.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside ehrsync's module: run go tool task from the repository")
	}
	return filepath.Dir(gomod), nil
}
