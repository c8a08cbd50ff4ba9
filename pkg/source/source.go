// Package source opens connections to an organization's EHR database, as
// database/sql pools for the extractors.
//
// Connections are read-only by construction where the dialect allows it: a
// PostgreSQL source session runs with default_transaction_read_only, and a
// SQL Server session declares ApplicationIntent=ReadOnly. The engine issues
// only reads at the source (DESIGN.md invariant 4).
package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// ApplicationName identifies ehrsync's sessions to the source's DBAs.
const ApplicationName = "ehrsync"

// Open returns a connection pool to the source and checks that it answers.
func Open(ctx context.Context, src config.Source) (*sql.DB, error) {
	password, err := src.Password.Reveal()
	if err != nil {
		return nil, fmt.Errorf("source password: %w", err)
	}
	var db *sql.DB
	switch src.Dialect {
	case config.Postgres:
		cfg, err := pgx.ParseConfig("")
		if err != nil {
			return nil, err
		}
		cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password = src.Host, uint16(src.Port), src.Database, src.User, password
		if cfg.TLSConfig, err = tlsConfig(src); err != nil {
			return nil, err
		}
		cfg.Fallbacks = nil // never fall back to plain text
		cfg.ConnectTimeout = src.ConnectTimeout
		cfg.RuntimeParams["application_name"] = ApplicationName
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
		db = stdlib.OpenDB(*cfg)
	case config.SQLServer:
		connector, err := mssql.NewConnector(sqlServerURL(src, password))
		if err != nil {
			return nil, fmt.Errorf("source settings: %w", err)
		}
		db = sql.OpenDB(connector)
	default:
		return nil, fmt.Errorf("unknown source dialect %q", src.Dialect)
	}
	db.SetMaxOpenConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout(src))
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s source %s: %w", src.Dialect, net.JoinHostPort(src.Host, strconv.Itoa(src.Port)), err)
	}
	return db, nil
}

// tlsConfig is the client TLS configuration for a PostgreSQL source: nil
// (plain text) only when the configuration says tls.mode: disable.
func tlsConfig(src config.Source) (*tls.Config, error) {
	if src.TLS.Mode == config.TLSDisable {
		return nil, nil
	}
	c := &tls.Config{ServerName: src.Host, MinVersion: src.TLS.Version()}
	if src.TLS.ServerName != "" {
		c.ServerName = src.TLS.ServerName
	}
	if src.TLS.TrustServerCertificate {
		c.InsecureSkipVerify = true // explicit in the configuration, and warned about by check
	}
	if src.TLS.CAFile != "" {
		pem, err := os.ReadFile(src.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("source tls.ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("source tls.ca_file %s: no PEM certificates in it", src.TLS.CAFile)
		}
	}
	return c, nil
}

func connectTimeout(src config.Source) time.Duration {
	if src.ConnectTimeout > 0 {
		return src.ConnectTimeout
	}
	return 30 * time.Second
}

// sqlServerURL builds go-mssqldb's connection URL: TLS on and verified unless
// the configuration explicitly says otherwise.
func sqlServerURL(src config.Source, password string) string {
	q := url.Values{}
	q.Set("database", src.Database)
	q.Set("app name", ApplicationName)
	q.Set("ApplicationIntent", "ReadOnly")
	q.Set("connection timeout", strconv.Itoa(int(connectTimeout(src)/time.Second)))
	switch src.TLS.Mode {
	case config.TLSDisable:
		q.Set("encrypt", "disable")
	case config.TLSStrict:
		q.Set("encrypt", "strict") // TDS 8.0: TLS before the prelogin
	default:
		q.Set("encrypt", "true")
	}
	if src.TLS.TrustServerCertificate {
		q.Set("TrustServerCertificate", "true")
	}
	if src.TLS.ServerName != "" {
		q.Set("hostNameInCertificate", src.TLS.ServerName)
	}
	if src.TLS.CAFile != "" {
		q.Set("certificate", src.TLS.CAFile)
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(src.User, password),
		Host: net.JoinHostPort(src.Host, strconv.Itoa(src.Port)), RawQuery: q.Encode()}
	return u.String()
}
