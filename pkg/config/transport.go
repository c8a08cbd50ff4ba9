package config

import (
	"fmt"
	"net"
	"strings"
)

// IsLoopback reports whether host names this machine: localhost, an
// address in 127.0.0.0/8, or ::1. Traffic to it never leaves the machine,
// so ehrsync accepts it without verified TLS (the demo and the tests run
// there). Any other name, even one that resolves to loopback, is judged as
// another machine.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// UnverifiedTransport says why the connection to the source would not be
// verified TLS, for a source on another machine: key is the setting that
// turns it off (relative to the source: "tls.mode" or
// "tls.trust_server_certificate") and problem says what follows from it.
// Both are "" when the connection verifies the server's certificate and
// name (tls.mode require or strict, the certificate checked against the
// system roots or tls.ca_file, for SQL Server and PostgreSQL alike), or
// when Host is loopback ([IsLoopback]). Via ssh, Host is the server as the
// bastion sees it: the leg from the bastion to it is what TLS protects.
//
// Validation refuses a source with a problem unless InsecureTransport is
// set; package source refuses to open it too.
func (s Source) UnverifiedTransport() (key, problem string) {
	if IsLoopback(s.Host) {
		return "", ""
	}
	switch {
	case s.TLS.Mode == TLSDisable:
		return "tls.mode", fmt.Sprintf("disable sends the connection to %s, which is not this machine, unencrypted (passwords and rows readable on the way)", s.Host)
	case s.TLS.TrustServerCertificate:
		return "tls.trust_server_certificate", fmt.Sprintf("true accepts any certificate from %s, which is not this machine, so the connection can be intercepted", s.Host)
	}
	return "", ""
}

// transportFix is what to do about a source's unverified transport.
const transportFix = "use tls.mode: require (the default: the certificate verified against the system roots or tls.ca_file, its name against tls.server_name or host), " +
	"or set insecure_transport: true on the source to accept it, which every start warns about"

// transport refuses a source on another machine without verified TLS,
// unless it says insecure_transport: true.
func (v *validator) transport(key string, s *Source) {
	k, problem := s.UnverifiedTransport()
	if problem == "" || s.InsecureTransport {
		return
	}
	for _, err := range v.errs {
		if fe, ok := err.(*FieldError); ok && fe.Key == key+"."+k {
			return // the setting is already wrong for another reason
		}
	}
	v.add(key+"."+k, "%s: %s", problem, transportFix)
}

// TransportWarnings lists what every start (and validate and check) warns
// about in the store's settings: store.insecure_transport. The sources'
// are in package source's Warnings. The store URL's own sslmode is judged
// when it is resolved, at connect time.
func (c *Config) TransportWarnings() []string {
	var w []string
	if c.Store.InsecureTransport {
		w = append(w, "store.insecure_transport is true: a store on another machine may be reached without a verified certificate (any sslmode but verify-full), so the connection can be intercepted")
	}
	return w
}
