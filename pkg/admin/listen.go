package admin

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// ErrAdminNeedsTLS matches an admin listener on an address other than
// loopback without TLS.
var ErrAdminNeedsTLS = errors.New("the admin API off loopback needs TLS")

// Listen opens the admin API's listener at srv.AdminListen: TLS (1.2 or
// later) with srv.AdminTLS's certificate and key when set; refused on any
// address but loopback without it (config validation refuses that too; this
// holds for a configuration built in code). The key file must be private
// (secrets.PermissionError otherwise).
func Listen(srv config.Server) (net.Listener, error) {
	if srv.AdminTLS == nil && !srv.AdminLoopback() {
		return nil, fmt.Errorf("server.admin_listen %s: %w: set server.admin_tls (cert_file, key_file), or listen on 127.0.0.1", srv.AdminListen, ErrAdminNeedsTLS)
	}
	var cfg *tls.Config
	if t := srv.AdminTLS; t != nil {
		cert, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", srv.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("server.admin_listen: %w", err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// loadKeyPair reads the admin listener's certificate and key, the key only
// when it is private (secrets.ReadPrivate).
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server.admin_tls.cert_file: %w", err)
	}
	keyPEM, err := secrets.ReadPrivate(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("server.admin_tls.key_file: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors do not quote the key.
		return tls.Certificate{}, fmt.Errorf("server.admin_tls: %w", err)
	}
	return cert, nil
}
