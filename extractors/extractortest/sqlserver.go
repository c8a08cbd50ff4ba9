package extractortest

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Helpers shared by the extractors' SQL Server tests, which run through
// go-mssqldb against the TDS test server (pkg/mssqlmodel/mssqltest).

// Wire decodes a hex string (dashes ignored, e.g. a GUID in wire order) to
// its bytes.
func Wire(t *testing.T, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(h, "-", ""))
	require.NoError(t, err)
	return b
}

// Golden compares got with testdata/name.golden, first rewriting the file
// when update is set (the test package's -update flag).
func Golden(t *testing.T, update bool, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to write %s", path)
	require.Equal(t, string(want), got)
}

// Extractor is an extractor under test: an extractors.Extractor that reports
// its table.
type Extractor interface {
	extractors.Extractor
	Table() *schemas.Table
}

// Drain runs ext from pos to the end and returns one summary per chunk:
// summarize's answer for the chunk's position and batch (nil: a heartbeat).
// Each batch is validated with schemas.ValidateChangeBatch before summarize
// sees it and released after. An error from Open or Next is returned with
// the summaries so far; the run is closed (and must close cleanly).
func Drain[S any](t *testing.T, ext Extractor, pos watermarks.Position, summarize func(to watermarks.Position, batch arrow.RecordBatch) S) ([]S, error) {
	t.Helper()
	run, err := ext.Open(context.Background(), pos)
	if err != nil {
		return nil, err
	}
	defer func() { require.NoError(t, run.Close()) }()
	var out []S
	for {
		ch, err := run.Next(context.Background())
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if ch.Batch != nil {
			require.NoError(t, schemas.ValidateChangeBatch(ext.Table(), ch.Batch))
		}
		s := summarize(ch.To, ch.Batch)
		if ch.Batch != nil {
			ch.Batch.Release()
		}
		out = append(out, s)
	}
}

// Column declares one column of a test table: its name, its type in the
// table's dialect and whether it is nullable. (An alias of an unnamed
// struct, so tables can list columns unkeyed.)
type Column = struct {
	Name, Type string
	Nullable   bool
}

// DeclareTable appends cols to table, their types parsed in table's
// dialect, and returns table once it validates.
func DeclareTable(t *testing.T, table *schemas.Table, cols []Column) *schemas.Table {
	t.Helper()
	for _, c := range cols {
		typ, err := schemas.ParseType(table.Dialect, c.Type)
		require.NoError(t, err)
		table.Columns = append(table.Columns, schemas.Column{Name: c.Name, Type: typ, Nullable: c.Nullable})
	}
	require.NoError(t, table.Validate())
	return table
}
