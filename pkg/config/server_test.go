package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServerSection: the admin API has a listener of its own, loopback by
// default; off loopback it needs TLS (refused naming the fix otherwise,
// and warned about with it); the two listeners cannot share a port.
func TestServerSection(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Server)
		want   []string // one substring per problem; none: valid
		warns  bool
	}{
		{name: "defaults", mutate: func(*Server) {}},
		{name: "admin on, loopback", mutate: func(s *Server) { s.AdminToken = NewSecret("env:T") }},
		{name: "admin on, ::1", mutate: func(s *Server) { s.AdminToken = NewSecret("env:T"); s.AdminListen = "[::1]:9465" }},
		{name: "admin on, localhost", mutate: func(s *Server) { s.AdminTokensFile = "/etc/ehrsync/tokens"; s.AdminListen = "localhost:9465" }},
		{name: "admin on, every interface, no tls", mutate: func(s *Server) { s.AdminToken = NewSecret("env:T"); s.AdminListen = ":9465" },
			want: []string{"server.admin_listen: :9465 is not a loopback address, and bearer tokens must not cross a network in clear text: set server.admin_tls (cert_file, key_file), or listen on 127.0.0.1"}, warns: true},
		{name: "tokens file, a LAN address, no tls", mutate: func(s *Server) { s.AdminTokensFile = "/t"; s.AdminListen = "10.0.0.5:9465" },
			want: []string{"server.admin_listen: 10.0.0.5:9465 is not a loopback address"}, warns: true},
		{name: "a host name, no tls", mutate: func(s *Server) { s.AdminToken = NewSecret("env:T"); s.AdminListen = "ehrsync.internal:9465" },
			want: []string{"server.admin_listen: ehrsync.internal:9465 is not a loopback address"}, warns: true},
		{name: "every interface with tls", mutate: func(s *Server) {
			s.AdminToken = NewSecret("env:T")
			s.AdminListen = "0.0.0.0:9465"
			s.AdminTLS = &AdminTLS{CertFile: "/c.pem", KeyFile: "/k.pem"}
		}, warns: true},
		{name: "admin off, every interface", mutate: func(s *Server) { s.AdminListen = ":9465" }},
		{name: "tls without key", mutate: func(s *Server) { s.AdminTLS = &AdminTLS{CertFile: "/c.pem"} },
			want: []string{"server.admin_tls.key_file: not set"}},
		{name: "same address", mutate: func(s *Server) { s.AdminListen = s.Listen },
			want: []string{"server.admin_listen: 127.0.0.1:9464 is server.listen's too: the admin API has a listener of its own"}},
		{name: "same port, every interface", mutate: func(s *Server) { s.Listen = ":9465" },
			want: []string{"server.admin_listen: 127.0.0.1:9465 is server.listen's too"}},
		{name: "same port, other loopback address", mutate: func(s *Server) { s.AdminListen = "127.0.0.2:9464" }},
		{name: "admin listen without port", mutate: func(s *Server) { s.AdminListen = "127.0.0.1" },
			want: []string{`server.admin_listen: "127.0.0.1" is not host:port`}},
		{name: "blank tokens file", mutate: func(s *Server) { s.AdminTokensFile = " " },
			want: []string{"server.admin_tokens_file: not set"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c.Server)
			problems := Problems(c.Validate())
			require.Len(t, problems, len(tc.want), "%v", problems)
			for i, w := range tc.want {
				require.Contains(t, problems[i].Error(), w)
			}
			if tc.warns {
				require.Len(t, c.Server.Warnings(), 1)
				require.Contains(t, c.Server.Warnings()[0], "server.admin_listen "+c.Server.AdminListen+" is not a loopback address: the admin API")
			} else {
				require.Empty(t, c.Server.Warnings())
			}
		})
	}
}

// TestServerDefaultsAndFile: admin_listen defaults to loopback apart from
// listen, and a relative tokens file is found beside the configuration.
func TestServerDefaultsAndFile(t *testing.T) {
	c, err := Load("testdata/minimal.good.yaml")
	require.NoError(t, err)
	require.Equal(t, DefaultAdminListen, c.Server.AdminListen)
	require.True(t, c.Server.AdminLoopback())
	require.False(t, c.Server.AdminOn())

	b, err := os.ReadFile("testdata/minimal.good.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(path, append([]byte("server:\n  admin_tokens_file: admin-tokens\n  admin_tls: {cert_file: c.pem, key_file: k.pem}\n"), b...), 0o600))
	c, err = Load(path)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "admin-tokens"), c.Server.AdminTokensFile)
	require.True(t, c.Server.AdminOn())
	require.Equal(t, &AdminTLS{CertFile: "c.pem", KeyFile: "k.pem"}, c.Server.AdminTLS)
}
