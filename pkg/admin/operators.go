package admin

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// Operators are the admin API's credentials: bearer tokens, each known by
// its SHA-256 and naming the operator it belongs to. The operator a token
// names is the actor of everything done with it (audit, position history),
// never a name the request gives. It is safe for concurrent use once built.
//
// The operators' tokens file (server.admin_tokens_file) holds one token per
// line, as the operator's name and the lower-case hex SHA-256 of the token:
//
//	# ehrsync admin tokens: operator:sha256(token)
//	alice:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
//	bob:fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9
//
// Blank lines and lines starting with # are ignored. An operator may have
// several tokens (while rotating); a hash may appear once. The file holds
// no token, yet it says who may act: it must be private to ehrsync's user
// (chmod 600), as every secret file. `ehrsync admin token --operator NAME`
// makes a token and its line.
type Operators struct {
	creds []credential
}

type credential struct {
	hash [sha256.Size]byte
	name string
}

// MinTokenChars are the shortest tokens accepted, by alphabet: 43
// base64 or base64url characters, or 64 hex digits, are 32 random bytes.
const (
	MinTokenChars    = 43
	MinHexTokenChars = 64
	// minDistinct rejects a long token of few characters ("aaaa...");
	// a random token of either kind has far more.
	minDistinct = 10
)

// ErrWeakToken matches a token shorter than 32 bytes of entropy.
var ErrWeakToken = errors.New("admin token too weak: want 32 random bytes, written as at least 43 base64url or base64 characters or 64 hex digits " +
	"(make one with ehrsync admin token)")

// CheckToken refuses a token that cannot hold 32 random bytes: fewer than
// MinTokenChars characters of the base64 or base64url alphabet (trailing =
// not counted), fewer than MinHexTokenChars when it is only hex digits
// (each then carries 4 bits), any other character, or fewer than 10
// distinct characters. Its error matches ErrWeakToken and never holds the
// token.
func CheckToken(token string) error {
	t := strings.TrimRight(token, "=")
	hexOnly := true
	seen := map[rune]bool{}
	for _, r := range t {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'f', r >= 'A' && r <= 'F':
		case r >= 'g' && r <= 'z', r >= 'G' && r <= 'Z', r == '-', r == '_', r == '+', r == '/':
			hexOnly = false
		default:
			return fmt.Errorf("%w: it has a character outside base64, base64url and hex", ErrWeakToken)
		}
		seen[r] = true
	}
	switch {
	case hexOnly && len(t) < MinHexTokenChars:
		return fmt.Errorf("%w: %d hex digits", ErrWeakToken, len(t))
	case len(t) < MinTokenChars:
		return fmt.Errorf("%w: %d characters", ErrWeakToken, len(t))
	case len(seen) < minDistinct:
		return fmt.Errorf("%w: only %d distinct characters", ErrWeakToken, len(seen))
	}
	return nil
}

// NewToken returns a new token: 32 random bytes, base64url without
// padding (43 characters).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new admin token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// TokenLine is the tokens file's line for operator name's token.
func TokenLine(name, token string) string {
	h := sha256.Sum256([]byte(token))
	return name + ":" + hex.EncodeToString(h[:])
}

var operatorRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// CheckOperator refuses an operator name that is not 1 to 64 letters,
// digits and . _ @ - (starting with a letter or digit): it is the actor of
// audit rows and is printed on terminals.
func CheckOperator(name string) error {
	if !operatorRE.MatchString(name) {
		return fmt.Errorf("operator name %q: want 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", name)
	}
	return nil
}

// AddToken adds operator name's token, refusing a weak token (CheckToken)
// or a bad name.
func (o *Operators) AddToken(name, token string) error {
	if err := CheckOperator(name); err != nil {
		return err
	}
	if err := CheckToken(token); err != nil {
		return err
	}
	return o.add(name, sha256.Sum256([]byte(token)))
}

func (o *Operators) add(name string, h [sha256.Size]byte) error {
	for _, c := range o.creds {
		if c.hash == h {
			return fmt.Errorf("operators %s and %s have the same token: give each its own", c.name, name)
		}
	}
	o.creds = append(o.creds, credential{hash: h, name: name})
	return nil
}

// Len is the number of tokens.
func (o *Operators) Len() int {
	if o == nil {
		return 0
	}
	return len(o.creds)
}

// Operator returns the operator whose token this is. It compares the
// token's SHA-256 with every known hash in constant time (the same work
// whatever the token, and whichever hash matches), and refuses a token too
// weak to be one (CheckToken), so that a weak token in the file cannot
// be used.
func (o *Operators) Operator(token string) (string, bool) {
	got := sha256.Sum256([]byte(token))
	found := -1
	for i, c := range o.creds {
		if constantTimeCompare(got[:], c.hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 || CheckToken(token) != nil {
		return "", false
	}
	return o.creds[found].name, true
}

// constantTimeCompare is subtle.ConstantTimeCompare; a test watches what it
// is given.
var constantTimeCompare = subtle.ConstantTimeCompare

// LoadOperators builds the admin API's credentials from the configured
// token (server.admin_token, revealed: operator "admin"; "" for none) and
// tokens file (server.admin_tokens_file; "" for none). A weak token, a
// file others may read, or a malformed line is an error naming the fix
// (and the line), never a token or a hash.
func LoadOperators(token, tokensFile string) (*Operators, error) {
	o := &Operators{}
	if token != "" {
		if err := o.AddToken("admin", token); err != nil {
			return nil, fmt.Errorf("server.admin_token: %w", err)
		}
	}
	if tokensFile != "" {
		if err := o.readFile(tokensFile); err != nil {
			return nil, fmt.Errorf("server.admin_tokens_file: %w", err)
		}
	}
	return o, nil
}

// readFile reads a tokens file, refusing one group or others may read or
// write (secrets.ReadPrivate: judged and read through one descriptor).
func (o *Operators) readFile(path string) error {
	b, err := secrets.ReadPrivate(path)
	if err != nil {
		return err
	}
	return o.parse(bytes.NewReader(b))
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (o *Operators) parse(r io.Reader) error {
	sc := bufio.NewScanner(r)
	n, before := 0, len(o.creds)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, h, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("line %d: want operator:sha256-hex", n)
		}
		if err := CheckOperator(name); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		if !hashRE.MatchString(h) {
			return fmt.Errorf("line %d: the hash is not 64 lower-case hex digits (the SHA-256 of the token, as ehrsync admin token prints it; never the token itself)", n)
		}
		var sum [sha256.Size]byte
		_, _ = hex.Decode(sum[:], []byte(h))
		if err := o.add(name, sum); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(o.creds) == before {
		return errors.New("no tokens in it")
	}
	return nil
}
