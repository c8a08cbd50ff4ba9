package service

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// keywordRE finds a setting in a key=value connection string.
var keywordRE = func(key string) *regexp.Regexp {
	return regexp.MustCompile(`(?:^|\s)` + key + `\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))`)
}

var (
	sslmodeRE     = keywordRE("sslmode")
	sslrootcertRE = keywordRE("sslrootcert")
)

// StoreTransportError is a store URL refused for its transport: sslmode
// given more than once, or a store on another machine that would not be
// reached with a verified certificate (anything but sslmode=verify-full)
// while store.insecure_transport is not set. Its text names the key, the
// host and the sslmode, never the URL (which may hold a password).
type StoreTransportError struct {
	Key     string // store.url or store.owner_url
	Ref     string // the secret's reference form (env:NAME, file:PATH, [redacted]), when known
	Problem string
}

func (e *StoreTransportError) Error() string {
	if e.Ref != "" {
		return e.Key + " (" + e.Ref + "): " + e.Problem
	}
	return e.Key + ": " + e.Problem
}

// storeTLS judges the store connection's transport, as pgx configured it
// from the URL text (key names the URL in messages):
//
//   - sslmode given more than once is refused, always: pgx takes the first
//     of a URL's and the last of a key=value string's, and a reader of the
//     configuration may believe either.
//   - a store on another machine (not loopback, not a Unix socket: any host
//     or fallback host of the URL) must be reached with its certificate and
//     name verified: sslmode=verify-full (or sslrootcert=system). Anything
//     else (no sslmode, which is pgx's "prefer" and may fall back to plain
//     text; disable, allow, prefer, require; verify-ca, which checks the
//     chain but not the name) is refused unless insecure is set
//     (store.insecure_transport), and then warned about.
func storeTLS(key, text string, cfg *pgconn.Config, insecure bool) (warning string, err error) {
	modes := settings(text, "sslmode", sslmodeRE)
	if len(modes) > 1 {
		return "", &StoreTransportError{Key: key, Problem: fmt.Sprintf("sslmode is given %d times (%s): pgx uses one of them, and which is easy to misread; write it once, sslmode=verify-full", len(modes), strings.Join(quoteAll("sslmode=", modes), ", "))}
	}
	unverified := func(host string, tc *tls.Config) bool {
		return !local(host) && (tc == nil || tc.InsecureSkipVerify)
	}
	remote := ""
	if unverified(cfg.Host, cfg.TLSConfig) {
		remote = cfg.Host
	}
	for _, f := range cfg.Fallbacks {
		if remote == "" && unverified(f.Host, f.TLSConfig) {
			remote = f.Host
		}
	}
	if remote == "" {
		return "", nil
	}
	mode := "no sslmode (pgx's default, prefer: TLS without verification, else plain text)"
	if len(modes) == 1 {
		mode = "sslmode=" + modes[0]
		switch modes[0] {
		case "disable":
			mode += " (plain text)"
		case "allow", "prefer":
			mode += " (TLS without verification, else plain text)"
		case "require":
			mode += " (TLS without verifying the certificate's name)"
		case "verify-ca":
			mode += " (the certificate's chain is verified, not its name: any certificate the CA issued passes)"
		}
	}
	problem := fmt.Sprintf("%s to the store at %s, which is not this machine, does not verify the store's certificate and name, so the connection can be read or intercepted", mode, remote)
	if !insecure {
		return "", &StoreTransportError{Key: key, Problem: problem + ": use sslmode=verify-full (with sslrootcert=FILE for a private CA), or set store.insecure_transport: true to accept it, which every start warns about"}
	}
	return key + ": " + problem + "; accepted by store.insecure_transport: true (use sslmode=verify-full)", nil
}

// storeRoots replaces the CA pool pgx read from the URL's sslrootcert (or
// PGSSLROOTCERT, as pgx reads it) with one read from the file checked by
// secrets.ReadTrusted: a CA file that group or others may write is
// refused, since whoever writes it chooses which servers are trusted as
// the store. pgx read the file by name before; what it read is dropped.
func storeRoots(key, text string, cfg *pgconn.Config) error {
	roots := settings(text, "sslrootcert", sslrootcertRE)
	path := ""
	switch {
	case len(roots) > 1:
		return &StoreTransportError{Key: key, Problem: fmt.Sprintf("sslrootcert is given %d times: write it once", len(roots))}
	case len(roots) == 1:
		path = roots[0]
	default:
		path = os.Getenv("PGSSLROOTCERT")
	}
	if path == "" || path == "system" {
		return nil
	}
	b, err := secrets.ReadTrusted(path)
	if err != nil {
		return fmt.Errorf("%s: sslrootcert: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("%s: sslrootcert %s: no PEM certificates in it", key, path)
	}
	for _, tc := range append([]*tls.Config{cfg.TLSConfig}, fallbackTLS(cfg)...) {
		if tc != nil && tc.RootCAs != nil {
			tc.RootCAs, tc.ClientCAs = pool, pool
		}
	}
	return nil
}

func fallbackTLS(cfg *pgconn.Config) []*tls.Config {
	var out []*tls.Config
	for _, f := range cfg.Fallbacks {
		out = append(out, f.TLSConfig)
	}
	return out
}

// settings returns every value given for key in a connection URL or
// key=value string, in order.
func settings(text, key string, re *regexp.Regexp) []string {
	if strings.HasPrefix(text, "postgres://") || strings.HasPrefix(text, "postgresql://") {
		u, err := url.Parse(text)
		if err != nil {
			return nil
		}
		return u.Query()[key]
	}
	var vals []string
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		v := m[2]
		if strings.HasPrefix(strings.TrimSpace(m[0][strings.Index(m[0], "=")+1:]), "'") {
			v = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(m[1])
		}
		vals = append(vals, v)
	}
	return vals
}

func quoteAll(prefix string, vals []string) []string {
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = prefix + v
	}
	return out
}

// local reports whether host is a Unix socket directory or loopback
// (config.IsLoopback).
func local(host string) bool {
	return strings.HasPrefix(host, "/") || config.IsLoopback(host)
}

var (
	sslkeyRE      = keywordRE("sslkey")
	sslcertRE     = keywordRE("sslcert")
	sslpasswordRE = keywordRE("sslpassword")
)

// storeClientKey replaces the client certificate pgx loaded from the URL's
// sslcert and sslkey (or PGSSLCERT and PGSSLKEY, or ~/.postgresql's, as pgx
// finds them) with one read through secrets.ReadPrivate (the key: refused
// when group or others may read it) and secrets.ReadTrusted (the
// certificate), each opened once and checked on the open file. pgx read
// them by name before; what it read is dropped.
func storeClientKey(key, text string, cfg *pgconn.Config) error {
	configs := append([]*tls.Config{cfg.TLSConfig}, fallbackTLS(cfg)...)
	loaded := false
	for _, tc := range configs {
		loaded = loaded || (tc != nil && len(tc.Certificates) > 0)
	}
	if !loaded {
		return nil
	}
	keyPath, err := clientFile(key, text, "sslkey", sslkeyRE, "PGSSLKEY", "postgresql.key")
	if err != nil {
		return err
	}
	certPath, err := clientFile(key, text, "sslcert", sslcertRE, "PGSSLCERT", "postgresql.crt")
	if err != nil {
		return err
	}
	keyPEM, err := secrets.ReadPrivate(keyPath)
	if err != nil {
		return fmt.Errorf("%s: sslkey: %w", key, err)
	}
	certPEM, err := secrets.ReadTrusted(certPath)
	if err != nil {
		return fmt.Errorf("%s: sslcert: %w", key, err)
	}
	password := os.Getenv("PGSSLPASSWORD")
	if p := settings(text, "sslpassword", sslpasswordRE); len(p) > 0 {
		password = p[len(p)-1]
	}
	if keyPEM, err = decryptKey(keyPEM, password); err != nil {
		return fmt.Errorf("%s: sslkey %s: %w", key, keyPath, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s: sslcert %s and sslkey %s are not a certificate and its key: %w", key, certPath, keyPath, err)
	}
	for _, tc := range configs {
		if tc != nil && len(tc.Certificates) > 0 {
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return nil
}

// clientFile is the path pgx took a client file from: the connection
// string's setting (given once), else the environment variable, else
// ~/.postgresql/name.
func clientFile(key, text, setting string, re *regexp.Regexp, env, name string) (string, error) {
	vals := settings(text, setting, re)
	switch {
	case len(vals) > 1:
		return "", &StoreTransportError{Key: key, Problem: fmt.Sprintf("%s is given %d times: write it once", setting, len(vals))}
	case len(vals) == 1:
		return vals[0], nil
	case os.Getenv(env) != "":
		return os.Getenv(env), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("%s: %s: %w", key, setting, err)
	}
	return filepath.Join(home, ".postgresql", name), nil
}

// decryptKey returns a PEM key as tls.X509KeyPair takes it: an encrypted
// PKCS#1 key is decrypted with password, as pgx does.
func decryptKey(keyPEM []byte, password string) ([]byte, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM key in it")
	}
	//lint:ignore SA1019 pgx decrypts sslpassword-protected keys this way; ehrsync reads them as pgx does
	if !x509.IsEncryptedPEMBlock(block) {
		return keyPEM, nil
	}
	if password == "" {
		return nil, errors.New("the key is encrypted and no sslpassword is given")
	}
	//lint:ignore SA1019 see above
	der, err := x509.DecryptPEMBlock(block, []byte(password))
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt it with sslpassword: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), nil
}
