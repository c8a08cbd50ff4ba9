package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// DefaultAdminListen is the admin API's address unless server.admin_listen
// says otherwise: loopback, on its own port beside the metrics and health
// listener (DefaultListen).
const DefaultAdminListen = "127.0.0.1:9465"

// AdminTLS is the admin listener's certificate and private key (PEM files).
// The key file must be private to ehrsync's user (chmod 600), as every
// secret file.
type AdminTLS struct {
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// AdminOn reports whether the admin API is on: an admin token or a tokens
// file is configured.
func (s Server) AdminOn() bool { return s.AdminToken.IsSet() || s.AdminTokensFile != "" }

// AdminLoopback reports whether the admin listener is on a loopback
// address (127.0.0.0/8, ::1, localhost): reachable from this machine only.
// A host left out (":9465") listens on every interface.
func (s Server) AdminLoopback() bool { return loopbackListen(s.AdminListen) }

// loopbackListen reports whether a host:port listen address is loopback
// only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warnings lists what validate (and the daemon's start) warns about in the
// server section: an admin API reachable from other machines.
func (s Server) Warnings() []string {
	if !s.AdminOn() || s.AdminLoopback() {
		return nil
	}
	return []string{fmt.Sprintf("server.admin_listen %s is not a loopback address: the admin API (TLS, per-operator tokens) is reachable from other machines; "+
		"allow only the operators' addresses to it (a firewall, a Kubernetes NetworkPolicy), or listen on 127.0.0.1", s.AdminListen)}
}

// server checks the server section: two listen addresses apart, and an
// admin API off loopback only with TLS.
func (v *validator) server(s Server) {
	v.listen("server.listen", s.Listen)
	v.listen("server.admin_listen", s.AdminListen)
	v.secret("server.admin_token", s.AdminToken, false)
	if f := s.AdminTokensFile; f != "" && strings.TrimSpace(f) == "" {
		v.add("server.admin_tokens_file", "not set (want the path of the operators' tokens file)")
	}
	if sameListener(s.Listen, s.AdminListen) {
		v.add("server.admin_listen", "%s is server.listen's too: the admin API has a listener of its own, apart from /metrics and health (default %s)", s.AdminListen, DefaultAdminListen)
	}
	if t := s.AdminTLS; t != nil {
		if strings.TrimSpace(t.CertFile) == "" {
			v.add("server.admin_tls.cert_file", "not set (want the PEM certificate of the admin listener)")
		}
		if strings.TrimSpace(t.KeyFile) == "" {
			v.add("server.admin_tls.key_file", "not set (want the PEM private key of the admin listener, chmod 600)")
		}
	}
	if s.AdminOn() && s.AdminTLS == nil && !s.AdminLoopback() {
		v.add("server.admin_listen", "%s is not a loopback address, and bearer tokens must not cross a network in clear text: "+
			"set server.admin_tls (cert_file, key_file), or listen on 127.0.0.1 (the default, %s)", s.AdminListen, DefaultAdminListen)
	}
}

// sameListener reports whether two listen addresses would take the same
// port on a shared interface.
func sameListener(a, b string) bool {
	ha, pa, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	hb, pb, err := net.SplitHostPort(b)
	if err != nil {
		return false
	}
	na, err1 := strconv.Atoi(pa)
	nb, err2 := strconv.Atoi(pb)
	if err1 != nil || err2 != nil || na != nb {
		return false
	}
	all := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return all(ha) || all(hb) || strings.EqualFold(ha, hb)
}
