package bench

import (
	"math/big"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

// The baseline's hand-written numeric(19,2) encoder writes values pgx's
// binary numeric decoder reads back exactly, with display scale 2.
func TestAppendNumeric2RoundTripsThroughPgx(t *testing.T) {
	m := pgtype.NewMap()
	for _, v := range []int64{0, 1, 5, 10, 99, 100, 101, 12345, 100000000, 1000000, 123456789012, -1, -100, -123456, 9223372036854775807, -9223372036854775807} {
		var n pgtype.Numeric
		require.NoError(t, m.Scan(pgtype.NumericOID, pgtype.BinaryFormatCode, appendNumeric2(nil, v), &n), "%d", v)
		got := new(big.Rat).SetInt(n.Int)
		scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(n.Exp))), nil))
		if n.Exp < 0 {
			got.Quo(got, scale)
		} else {
			got.Mul(got, scale)
		}
		require.Zero(t, got.Cmp(big.NewRat(v, 100)), "%d: got %s", v, got.RatString())
	}
}

func abs(x int32) int32 {
	if x < 0 {
		return -x
	}
	return x
}
