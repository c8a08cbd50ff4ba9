package watermarks

import (
	"cmp"
	"fmt"
	"math/big"
	"strings"
)

// Compare orders two values of the same type: -1, 0 or +1 as a is before,
// equal to or after b. NULL sorts before every other value, as in an
// ascending ORDER BY on SQL Server and PostgreSQL with NULLS FIRST. Values of
// different types (other than NULL) do not compare: the error says so. The
// SQL type is not compared.
//
// Orders: integers, decimals (exactly, whatever the scales) and bools by
// value; rowversions, bytes and uuids bytewise (for uuids that is RFC 4122
// order, not SQL Server's uniqueidentifier order, so keyset paging must let
// the server compare, PITFALLS P12); dates and times by instant, so two
// datetimeoffsets at one instant with different offsets compare equal though
// they are not Equal; strings by Go byte order of their UTF-8, which is NOT
// the collation order of the source: use string order only in tests and to
// detect equal values, never to decide which rows a query returns.
func Compare(a, b Value) (int, error) {
	if a.typ == "" || b.typ == "" {
		return 0, fmt.Errorf("compare values: %w", invalidf("", "value has no type"))
	}
	switch {
	case a.typ == TypeNull && b.typ == TypeNull:
		return 0, nil
	case a.typ == TypeNull:
		return -1, nil
	case b.typ == TypeNull:
		return 1, nil
	case a.typ != b.typ:
		return 0, fmt.Errorf("compare %s with %s: different types", a.typ, b.typ)
	}
	switch a.typ {
	case TypeInt, TypeBool, TypeDate:
		return cmp.Compare(a.i, b.i), nil
	case TypeString, TypeRowVersion, TypeUUID, TypeBytes:
		return strings.Compare(a.s, b.s), nil
	case TypeDecimal:
		return compareDecimal(a, b)
	case TypeDateTime, TypeDateTime2, TypeDateTimeOffset:
		if c := cmp.Compare(a.i, b.i); c != 0 {
			return c, nil
		}
		return cmp.Compare(a.n, b.n), nil
	}
	return 0, fmt.Errorf("compare values: %w", invalidf("", "unknown value type %q", string(a.typ)))
}

func compareDecimal(a, b Value) (int, error) {
	x, ok1 := new(big.Int).SetString(a.s, 10)
	y, ok2 := new(big.Int).SetString(b.s, 10)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("compare decimals: %w", invalidf("", "decimal is not a base-10 number"))
	}
	ten := big.NewInt(10)
	if a.n < b.n {
		x.Mul(x, new(big.Int).Exp(ten, big.NewInt(b.n-a.n), nil))
	} else if b.n < a.n {
		y.Mul(y, new(big.Int).Exp(ten, big.NewInt(a.n-b.n), nil))
	}
	return x.Cmp(y), nil
}

// Equal reports whether a and b are the same value of the same type and SQL
// type: what survives an Encode/Decode round trip. It is stricter than
// Compare == 0 (1.5 and 1.50 compare equal but are not Equal).
func Equal(a, b Value) bool { return a == b }

// CompareKeys orders two keys of the same columns lexicographically, value
// by value with Compare (with Compare's caveats for strings and uuids).
func CompareKeys(a, b Key) (int, error) {
	if len(a) != len(b) {
		return 0, fmt.Errorf("compare keys of %d and %d columns: different lengths", len(a), len(b))
	}
	for i := range a {
		c, err := Compare(a[i], b[i])
		if err != nil {
			return 0, fmt.Errorf("key column %d: %w", i, err)
		}
		if c != 0 {
			return c, nil
		}
	}
	return 0, nil
}

// EqualKeys reports whether a and b hold Equal values; nil and empty keys
// are equal.
func EqualKeys(a, b Key) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
