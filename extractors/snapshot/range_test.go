package snapshot_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// rangeTable is a PostgreSQL source table public.ranged (a int, b int, v
// text, PRIMARY KEY (a, b)) holding a in 1..10 and b in 1..3.
func rangeTable(t *testing.T) (*sql.DB, *schemas.Table) {
	t.Helper()
	db, err := sql.Open("pgx", pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	_, err = db.Exec(`CREATE TABLE public.ranged (a integer NOT NULL, b integer NOT NULL, v text, PRIMARY KEY (a, b));
		INSERT INTO public.ranged SELECT a, b, 'row' FROM generate_series(1, 10) a, generate_series(1, 3) b`)
	require.NoError(t, err)
	col := func(name, typ string) schemas.Column {
		ty, err := schemas.ParseType(schemas.Postgres, typ)
		require.NoError(t, err)
		return schemas.Column{Name: name, Type: ty, Nullable: name == "v"}
	}
	return db, &schemas.Table{Schema: "public", Name: "ranged", Dialect: schemas.Postgres,
		Columns: []schemas.Column{col("a", "integer"), col("b", "integer"), col("v", "text")}, Key: []string{"a", "b"}}
}

func key(t *testing.T, table *schemas.Table, text string) watermarks.Key {
	t.Helper()
	if text == "" {
		return nil
	}
	k, err := snapshot.ParseKey(schemas.Postgres, table, text)
	require.NoError(t, err)
	return k
}

// drain runs ext from pos for at most max chunks (0: to the end) and
// returns the keys read ("a,b") and the position after the last chunk.
func drain(t *testing.T, ext *snapshot.Extractor, pos watermarks.Position, max int) ([]string, watermarks.Position, int) {
	t.Helper()
	run, err := ext.Open(context.Background(), pos)
	require.NoError(t, err)
	defer run.Close()
	var keys []string
	chunks := 0
	for max == 0 || chunks < max {
		ch, err := run.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		chunks++
		pos = ch.To
		if ch.Batch == nil {
			continue
		}
		a := ch.Batch.Column(0).(*array.Int32)
		b := ch.Batch.Column(1).(*array.Int32)
		for i := 0; i < int(ch.Batch.NumRows()); i++ {
			keys = append(keys, fmt.Sprintf("%d,%d", a.Value(i), b.Value(i)))
		}
		ch.Batch.Release()
	}
	return keys, pos, chunks
}

func keysBetween(lo, hi [2]int) []string {
	var out []string
	for a := 1; a <= 10; a++ {
		for b := 1; b <= 3; b++ {
			if [2]int{a, b} != lo && less([2]int{a, b}, lo) || less(hi, [2]int{a, b}) {
				continue
			}
			out = append(out, fmt.Sprintf("%d,%d", a, b))
		}
	}
	return out
}

func less(x, y [2]int) bool { return x[0] < y[0] || x[0] == y[0] && x[1] < y[1] }

// TestRangedSnapshot: a snapshot bounded to [From, To] reads exactly the
// keys in the range, both bounds included, in bounded chunks; a run
// resumed from a position inside the range continues after it and stops at
// To; an empty range reads nothing and moves no position.
func TestRangedSnapshot(t *testing.T) {
	db, table := rangeTable(t)
	tests := []struct {
		name     string
		from, to string
		want     []string
	}{
		{name: "both bounds inclusive", from: "3,2", to: "5,1", want: keysBetween([2]int{3, 2}, [2]int{5, 1})},
		{name: "from only", from: "9,3", want: keysBetween([2]int{9, 3}, [2]int{10, 3})},
		{name: "to only", to: "1,2", want: []string{"1,1", "1,2"}},
		{name: "one key", from: "4,2", to: "4,2", want: []string{"4,2"}},
		{name: "bounds between keys", from: "4,9", to: "6,0", want: []string{"5,1", "5,2", "5,3"}},
		{name: "empty range", from: "7,1", to: "6,3"},
		{name: "range past the end", from: "11,1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ext, err := snapshot.New(db, schemas.Postgres, table, snapshot.Options{
				Bounds: extractors.Bounds{ChunkRows: 2, Allocator: mem},
				From:   key(t, table, tc.from),
				To:     key(t, table, tc.to),
			})
			require.NoError(t, err)
			got, pos, chunks := drain(t, ext, nil, 0)
			require.Equal(t, tc.want, got)
			if len(tc.want) == 0 {
				require.Zero(t, chunks, "an empty range commits nothing")
				require.Nil(t, pos, "an empty range moves no position")
				return
			}
			require.Equal(t, watermarks.Snapshot{}, pos, "a finished range ends at a finished pass")
		})
	}
}

func TestRangedSnapshotResumesInsideTheRange(t *testing.T) {
	db, table := rangeTable(t)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ext, err := snapshot.New(db, schemas.Postgres, table, snapshot.Options{
		Bounds: extractors.Bounds{ChunkRows: 2, Allocator: mem},
		From:   key(t, table, "2,3"),
		To:     key(t, table, "6,1"),
	})
	require.NoError(t, err)
	first, pos, _ := drain(t, ext, nil, 2) // a crash after two committed chunks
	require.Equal(t, []string{"2,3", "3,1", "3,2", "3,3"}, first)
	require.Equal(t, watermarks.Snapshot{LastKey: key(t, table, "3,3")}, pos)
	rest, end, _ := drain(t, ext, pos, 0)
	require.Equal(t, []string{"4,1", "4,2", "4,3", "5,1", "5,2", "5,3", "6,1"}, rest,
		"the resumed run continues after the last committed key and stops at To")
	require.Equal(t, watermarks.Snapshot{}, end)
}

func TestParseKey(t *testing.T) {
	_, table := rangeTable(t)
	claims, ok := schemas.NextGen().Table("dbo.claims")
	require.True(t, ok)
	links := reasonCodeLinks(t)
	tests := []struct {
		name    string
		table   *schemas.Table
		source  schemas.Dialect
		text    string
		want    string // the key's Text, when it parses
		wantErr string
	}{
		{name: "two integers", table: table, source: schemas.Postgres, text: "3, 4", want: "(3, 4)"},
		{name: "too few values", table: table, source: schemas.Postgres, text: "3", wantErr: "2 key columns (a, b), want 2 comma-separated values, got 1"},
		{name: "not a number", table: table, source: schemas.Postgres, text: "3,secret-value", wantErr: "column b (integer): want a whole number"},
		{name: "guid", table: claims, source: schemas.SQLServer, text: "6f9619ff-8b86-d011-b42d-00c04fc964ff", want: "(6f9619ff-8b86-d011-b42d-00c04fc964ff)"},
		{name: "bad guid", table: claims, source: schemas.SQLServer, text: "patient-42", wantErr: "column claim_id (uniqueidentifier): want a GUID"},
		{name: "empty", table: claims, source: schemas.SQLServer, text: " ", wantErr: "column claim_id (uniqueidentifier): empty value"},
		{name: "guids and smallint", table: links, source: schemas.SQLServer,
			text: "6f9619ff-8b86-d011-b42d-00c04fc964ff,6f9619ff-8b86-d011-b42d-00c04fc964fe,6f9619ff-8b86-d011-b42d-00c04fc964fd,2",
			want: "(6f9619ff-8b86-d011-b42d-00c04fc964ff, 6f9619ff-8b86-d011-b42d-00c04fc964fe, 6f9619ff-8b86-d011-b42d-00c04fc964fd, 2)"},
		{name: "smallint out of range", table: links, source: schemas.SQLServer,
			text:    "6f9619ff-8b86-d011-b42d-00c04fc964ff,6f9619ff-8b86-d011-b42d-00c04fc964fe,6f9619ff-8b86-d011-b42d-00c04fc964fd,x",
			wantErr: "column seq_nbr (smallint): want a whole number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := snapshot.ParseKey(tc.source, tc.table, tc.text)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, snapshot.ErrKeyText)
				require.ErrorContains(t, err, tc.wantErr)
				require.NotContains(t, err.Error(), "secret-value", "errors never hold the value")
				require.NotContains(t, err.Error(), "patient-42", "errors never hold the value")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, k.Text())
		})
	}
}
