package synth

import (
	"math"
	"math/rand/v2"
	"sort"
)

// Stream tags: each kind of decision draws from its own PCG stream, keyed by
// the seed and the tag and the ids of what it decides about, so that no
// decision depends on how many numbers another one drew.
const (
	tagCount uint64 = iota + 1
	tagEncounter
	tagPerson
	tagBatch
	tagClock
	tagMaster
	tagID
)

// mix is SplitMix64's finalizer.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hashOf(parts ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc909)
	for _, p := range parts {
		h = mix(h ^ p)
	}
	return h
}

// stream returns the PCG stream for the given tag and ids under seed.
func stream(seed uint64, tag uint64, ids ...uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, hashOf(append([]uint64{tag}, ids...)...)))
}

// newID returns a version-4-shaped GUID that is a hash of seed and parts.
func newID(seed uint64, parts ...uint64) UUID {
	a := hashOf(append([]uint64{tagID, seed}, parts...)...)
	b := mix(a ^ 0x2545f4914f6cdd1d)
	var u UUID
	for i := range 8 {
		u[i] = byte(a >> (56 - 8*i))
		u[8+i] = byte(b >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// strID hashes a string into an id part.
func strID(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// between returns a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi int) int {
	return lo + r.IntN(hi-lo+1)
}

// chance reports true with probability p.
func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

// logNormal draws from a log-normal distribution with the given median and
// shape sigma.
func logNormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

// weighted picks an index with probability proportional to its weight.
type weighted struct{ cum []float64 }

func newWeighted(weights ...float64) weighted {
	cum := make([]float64, len(weights))
	var s float64
	for i, w := range weights {
		s += w
		cum[i] = s
	}
	return weighted{cum: cum}
}

func (w weighted) pick(r *rand.Rand) int {
	x := r.Float64() * w.cum[len(w.cum)-1]
	return sort.SearchFloat64s(w.cum, x)
}

// zipf returns weights 1/k^s for k = 1..n.
func zipf(n int, s float64) weighted {
	ws := make([]float64, n)
	for k := range ws {
		ws[k] = 1 / math.Pow(float64(k+1), s)
	}
	return newWeighted(ws...)
}
