// Package logtest captures what a component logs, as the records a JSON
// slog handler writes, for tests that check what was logged and at which
// level.
package logtest

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Log is the records logged to a logger New returned. It is safe for
// concurrent use.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// New returns a logger of every level, whose records l keeps.
func New() (*slog.Logger, *Log) {
	l := &Log{}
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String is everything logged, one JSON record a line.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Records are the records logged, decoded; it fails t on a line that is
// not a JSON object.
func (l *Log) Records(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		out = append(out, r)
	}
	return out
}

// Find returns the records whose message is msg.
func (l *Log) Find(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range l.Records(t) {
		if r[slog.MessageKey] == msg {
			out = append(out, r)
		}
	}
	return out
}

// Level returns the records of level.
func (l *Log) Level(t testing.TB, level slog.Level) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range l.Records(t) {
		if r[slog.LevelKey] == level.String() {
			out = append(out, r)
		}
	}
	return out
}
