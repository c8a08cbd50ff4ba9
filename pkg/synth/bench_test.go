package synth

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

// discard is a Writer that keeps only the progress.
type discard struct {
	st State
	ok bool
}

func (d *discard) Apply(_ context.Context, b *Batch) error { d.st, d.ok = b.Progress, true; return nil }
func (d *discard) State(context.Context) (State, bool, error) {
	return d.st, d.ok, nil
}

// BenchmarkGenerate measures the generator alone: 30 days of the small
// preset.
func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		st, _, err := Simulate(context.Background(), &discard{}, Options{Seed: 1}, 30)
		require.NoError(b, err)
		b.ReportMetric(float64(st.Total().Total()), "rows/op")
	}
}

// BenchmarkPopulatePostgres measures 30 days of the small preset into a
// fresh PostgreSQL source.
func BenchmarkPopulatePostgres(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		pool := pgtest.Pool(b)
		require.NoError(b, CreatePostgres(context.Background(), pool, schemas.NextGen()))
		b.StartTimer()
		st, err := Populate(context.Background(), NewPostgresWriter(pool, "dbo"), Options{Seed: 1}, 30)
		require.NoError(b, err)
		b.ReportMetric(float64(st.Total().Total()), "rows/op")
	}
}
