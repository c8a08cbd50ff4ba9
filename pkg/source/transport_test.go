package source_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// TestUnverifiedTransportIsRefusedUnlessInsecure: a source on another
// machine without verified TLS (tls.mode disable, trust_server_certificate)
// is refused before any connection, for both dialects, naming the setting
// and the fix, unless the source says insecure_transport: true, which is
// then warned about; a loopback source and verified TLS are opened quietly.
func TestUnverifiedTransportIsRefusedUnlessInsecure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		tls     config.TLS
		refused string // "" when opened
	}{
		{"disable, remote", "sql01.hospital.local", config.TLS{Mode: config.TLSDisable}, "tls.mode: disable sends the connection to sql01.hospital.local"},
		{"trust, remote", "10.1.2.3", config.TLS{Mode: config.TLSRequire, TrustServerCertificate: true}, "tls.trust_server_certificate: true accepts any certificate"},
		{"require, remote", "sql01.hospital.local", config.TLS{Mode: config.TLSRequire}, ""},
		{"disable, 127.0.0.1", "127.0.0.1", config.TLS{Mode: config.TLSDisable}, ""},
		{"disable, localhost", "localhost", config.TLS{Mode: config.TLSDisable}, ""},
		{"trust, ::1", "::1", config.TLS{Mode: config.TLSRequire, TrustServerCertificate: true}, ""},
	} {
		for _, dialect := range []config.Dialect{config.SQLServer, config.Postgres} {
			t.Run(tc.name+"/"+string(dialect), func(t *testing.T) {
				src := config.Source{Dialect: dialect, Via: config.ViaDirect, Host: tc.host, Port: 1433, Database: "NGProd",
					User: "ehrsync", Password: config.NewSecret(sentinel), TLS: tc.tls, ConnectTimeout: time.Second}
				db, err := source.OpenPool(src)
				if tc.refused == "" {
					require.NoError(t, err)
					require.NoError(t, db.Close())
					require.NotContains(t, source.Warnings(src), "insecure_transport")
					return
				}
				var te *source.TransportError
				require.ErrorAs(t, err, &te)
				require.ErrorContains(t, err, tc.refused)
				require.ErrorContains(t, err, "insecure_transport: true")
				require.NotContains(t, err.Error(), sentinel)

				src.InsecureTransport = true
				db, err = source.OpenPool(src)
				require.NoError(t, err)
				require.NoError(t, db.Close())
				require.Contains(t, source.Warnings(src), "insecure_transport is true: the source on another machine is reached without verified TLS")
			})
		}
	}
}
