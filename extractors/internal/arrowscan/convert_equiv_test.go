package arrowscan

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"
)

// GUIDFromSQLServer gives what mssql.UniqueIdentifier's Scan gives, error
// included, for every length.
func TestGUIDFromSQLServerMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		b := make([]byte, 16)
		if i%100 == 0 {
			b = make([]byte, rng.IntN(40))
		}
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		var u mssql.UniqueIdentifier
		scanErr := u.Scan(b)
		got, err := GUIDFromSQLServer(b)
		if scanErr != nil {
			require.EqualError(t, err, "uniqueidentifier: "+scanErr.Error())
			require.Equal(t, uuid.UUID{}, got)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, uuid.UUID(u), got)
	}
}

// wallMicrosByDate is WallMicros by its definition: the wall-clock reading
// rebuilt in UTC.
func wallMicrosByDate(t time.Time) int64 {
	w := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	return w.Unix()*1_000_000 + int64(w.Nanosecond()/1000)
}

// WallMicros, and a datetime's value (dateTimeWallMicros), are their
// definitions for times across SQL Server's range, in UTC and in other
// zones, at every millisecond go-mssqldb reads a datetime as and at any
// nanosecond.
func TestWallMicrosMatchesDefinition(t *testing.T) {
	newYork, err := time.LoadLocation("America/New_York")
	if err != nil {
		newYork = time.FixedZone("EST", -5*3600)
	}
	zones := []*time.Location{time.UTC, time.FixedZone("UTC", 0), time.FixedZone("", 5*3600+1800), newYork}
	rng := rand.New(rand.NewPCG(7, 9))
	lo := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for i := range 200_000 {
		sec := lo + rng.Int64N(hi-lo)
		ns := rng.Int64N(1e9)
		if i%2 == 0 {
			ns = rng.Int64N(1000) * 1e6 // a datetime as go-mssqldb reads it
		}
		if i%50 == 0 {
			ns = 999_000_000 + rng.Int64N(1e6) // rounds up to the next second
		}
		x := time.Unix(sec, ns).In(zones[i%len(zones)])
		require.Equal(t, wallMicrosByDate(x), WallMicros(x), "%d %d %s", sec, ns, x.Location())
		require.Equal(t, wallMicrosByDate(DateTimeTick(x)), dateTimeWallMicros(x), "%d %d %s", sec, ns, x.Location())
	}
}
