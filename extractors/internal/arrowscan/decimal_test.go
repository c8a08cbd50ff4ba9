package arrowscan

import (
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/stretchr/testify/require"
)

// referenceParseDecimal is ParseDecimal as it was before its one-pass path
// for small values: the reference the test holds it to.
func referenceParseDecimal(text string, precision, scale int32) (decimal128.Num, error) {
	s := text
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return decimal128.Num{}, errors.New("not a decimal number")
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return decimal128.Num{}, errors.New("not a decimal number")
			}
		}
	}
	if len(frac) > int(scale) {
		if strings.TrimRight(frac[scale:], "0") != "" {
			return decimal128.Num{}, fmt.Errorf("value has more than %d fractional digits", scale)
		}
		frac = frac[:scale]
	}
	digits := strings.TrimLeft(intPart+frac+strings.Repeat("0", int(scale)-len(frac)), "0")
	var n decimal128.Num
	switch {
	case digits == "":
	case len(digits) <= 18:
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return decimal128.Num{}, errors.New("not a decimal number")
		}
		n = decimal128.FromI64(v)
	default:
		v, ok := new(big.Int).SetString(digits, 10)
		if !ok || v.BitLen() > 127 {
			return decimal128.Num{}, fmt.Errorf("value does not fit precision %d", precision)
		}
		n = decimal128.FromBigInt(v)
	}
	if neg {
		n = n.Negate()
	}
	if !n.FitsInPrecision(precision) {
		return decimal128.Num{}, fmt.Errorf("value does not fit precision %d", precision)
	}
	return n, nil
}

// outcome is one parse's result, error text or panic, comparable.
type outcome struct {
	n     decimal128.Num
	err   string
	panic bool
}

func parseOutcome(f func() (decimal128.Num, error)) (o outcome) {
	defer func() {
		if recover() != nil {
			o = outcome{panic: true}
		}
	}()
	n, err := f()
	if err != nil {
		return outcome{err: err.Error()}
	}
	return outcome{n: n}
}

// decimalInputs are the edge cases and, from a fixed seed, generated
// texts: signs, leading zeros, points, fractions with and without trailing
// zeros, 18/19/38/39-digit values and garbage.
func decimalInputs() []string {
	in := []string{
		"", "-", "+", ".", "-.", "+.", "..", "0", "-0", "+0", "00", "0.", ".0", "-0.0", ".5", "5.", "-.5", "-5.",
		"1", "-1", "+1", "--1", "+-1", "-+1", "1.2.3", "1..2", "1,5", " 1", "1 ", "1e5", "0x10", "١", "\xff",
		"12.50", "12.500", "12.5000000", "12.501", "0.001", "0.0010", "99999999999999999.99", "-99999999999999999.99",
		"999999999999999999", "9999999999999999999", "-999999999999999999", "-9999999999999999999",
		"100000000000000000", "1000000000000000000", "0.000000000000000001", "0.0000000000000000001",
		"922337203685477.5807", "-922337203685477.5808", "214748.3647",
		strings.Repeat("9", 38), "-" + strings.Repeat("9", 38), strings.Repeat("9", 39), strings.Repeat("9", 40),
		"1" + strings.Repeat("0", 37), "1" + strings.Repeat("0", 38), strings.Repeat("0", 50) + "1",
		"0." + strings.Repeat("0", 40), "1." + strings.Repeat("0", 40) + "1", "170141183460469231731687303715884105727",
		"170141183460469231731687303715884105728", "-170141183460469231731687303715884105728",
	}
	rng := rand.New(rand.NewPCG(16, 5))
	digits := func(n int, zeros bool) string {
		var b strings.Builder
		for range n {
			if zeros && rng.IntN(3) == 0 {
				b.WriteByte('0')
			} else {
				b.WriteByte(byte('0' + rng.IntN(10)))
			}
		}
		return b.String()
	}
	garbage := []string{" ", "e", "a", ".", "-", "+", "\x00", "\xff", "٣", "/", ":"}
	for range 200_000 {
		var b strings.Builder
		b.WriteString([]string{"", "", "", "-", "+", "--", "+-"}[rng.IntN(7)])
		if rng.IntN(4) == 0 {
			b.WriteString(strings.Repeat("0", rng.IntN(4)))
		}
		b.WriteString(digits(rng.IntN(22), rng.IntN(2) == 0))
		if rng.IntN(5) != 0 {
			b.WriteByte('.')
			b.WriteString(digits(rng.IntN(22), rng.IntN(2) == 0))
			if rng.IntN(3) == 0 {
				b.WriteString(strings.Repeat("0", rng.IntN(6)))
			}
		}
		s := b.String()
		if rng.IntN(10) == 0 && len(s) > 0 {
			at := rng.IntN(len(s) + 1)
			s = s[:at] + garbage[rng.IntN(len(garbage))] + s[at:]
		}
		in = append(in, s)
	}
	return in
}

// ParseDecimal, and parseDecimalBytes, give what the reference gives, to
// the error text and the panic, for every input at every precision and at
// scales from 0 to 20 and beyond what the one-pass path takes.
func TestParseDecimalMatchesReference(t *testing.T) {
	type ps struct{ p, s int32 }
	var sizes []ps
	for p := int32(1); p <= 38; p++ {
		for _, s := range []int32{0, 1, 2, 4, 6, 10, 17, 18, 19, 20} {
			sizes = append(sizes, ps{p, s})
		}
	}
	sizes = append(sizes, ps{38, 38}, ps{39, 2}, ps{0, 0}, ps{10, -1})
	rng := rand.New(rand.NewPCG(3, 8))
	fast := 0
	for i, text := range decimalInputs() {
		// Edge cases at every size; generated inputs at a few sizes each.
		try := sizes
		if i >= 100 {
			try = []ps{sizes[rng.IntN(len(sizes))], sizes[rng.IntN(len(sizes))], {19, 2}, {38, 10}}
		}
		for _, sz := range try {
			want := parseOutcome(func() (decimal128.Num, error) { return referenceParseDecimal(text, sz.p, sz.s) })
			got := parseOutcome(func() (decimal128.Num, error) { return ParseDecimal(text, sz.p, sz.s) })
			require.Equal(t, want, got, "ParseDecimal(%q, %d, %d)", text, sz.p, sz.s)
			got = parseOutcome(func() (decimal128.Num, error) { return parseDecimalBytes([]byte(text), sz.p, sz.s) })
			require.Equal(t, want, got, "parseDecimalBytes(%q, %d, %d)", text, sz.p, sz.s)
			if _, ok := parseSmallDecimal(text, sz.s); ok {
				fast++
			}
		}
	}
	// The one-pass path took most inputs: the comparison is not only of
	// the old code with itself.
	require.Greater(t, fast, 50_000)
}

func TestParseDecimalSmallAllocatesNothing(t *testing.T) {
	b := []byte("-12345678901234.56")
	allocs := testing.AllocsPerRun(100, func() {
		n, err := parseDecimalBytes(b, 19, 2)
		if err != nil || n != decimal128.FromI64(-1234567890123456) {
			panic("wrong value")
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkParseDecimal(b *testing.B) {
	text := []byte("-1234567.89")
	b.Run("bytes", func(b *testing.B) {
		for b.Loop() {
			if _, err := parseDecimalBytes(text, 19, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reference", func(b *testing.B) {
		for b.Loop() {
			if _, err := referenceParseDecimal(string(text), 19, 2); err != nil {
				b.Fatal(err)
			}
		}
	})
}
