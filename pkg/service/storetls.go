package service

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// sslmodeRE finds an sslmode setting in a key=value connection string.
var sslmodeRE = regexp.MustCompile(`(^|\s)sslmode\s*=\s*'?([a-z-]*)`)

// storeTLS judges the store connection's TLS, as pgx configured it from
// the URL text: a store on another machine whose certificate would not be
// verified (no TLS, or TLS without verification: pgx's default "prefer",
// "require", "allow", "disable") is refused unless the URL says its sslmode
// explicitly, and then it is a warning for every start. A store on
// loopback or a Unix socket is never judged.
func storeTLS(text string, cfg *pgconn.Config) (warning string, err error) {
	unverified := func(host string, tc *tls.Config) bool {
		return !local(host) && (tc == nil || (tc.InsecureSkipVerify && tc.VerifyPeerCertificate == nil))
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
	mode, explicit := sslmode(text)
	if !explicit {
		return "", fmt.Errorf("the connection to the store at %s would not verify its TLS certificate (no sslmode given, so pgx may even fall back to plain text): "+
			"add sslmode=verify-full to store.url, or write sslmode=require (or disable) to accept an unverified connection", remote)
	}
	return fmt.Sprintf("store.url has sslmode=%s: the store's certificate is not verified, so the connection can be intercepted (use sslmode=verify-full)", mode), nil
}

// sslmode returns the sslmode written in a connection URL or key=value
// string.
func sslmode(text string) (string, bool) {
	if strings.HasPrefix(text, "postgres://") || strings.HasPrefix(text, "postgresql://") {
		u, err := url.Parse(text)
		if err != nil {
			return "", false
		}
		m, ok := u.Query()["sslmode"]
		if !ok || len(m) == 0 {
			return "", false
		}
		return m[len(m)-1], true
	}
	if m := sslmodeRE.FindStringSubmatch(text); m != nil {
		return m[2], true
	}
	return "", false
}

// local reports whether host is a Unix socket directory, localhost or a
// loopback address.
func local(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
