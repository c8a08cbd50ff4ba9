package source

import (
	"fmt"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// The texts of the classes that name the server's product or port, as
// format strings: the classes hold them for SQL Server on 1433, and For
// fills them in for a source.
const (
	connectTimeoutFix    = "check that the endpoint answers (nc -vz HOST PORT from this machine), that firewalls allow it (443/%d), and raise connect_timeout if the link is slow"
	relayUpstreamCause   = "the relay is up but closed the connection: %s is unreachable behind the relay"
	relayUpstreamFix     = "from the relay VM run nc -vz %s %d; check that %s is running, listens on TCP %d, and the customer firewall allows the relay to reach it"
	serverUnreachableFix = "check that the server is running and listens on the configured port (nc -vz HOST PORT from where ehrsync connects), and that the firewall allow-lists ehrsync's address on %d"
)

// postgresTexts are the causes and fixes of the classes whose SQL Server
// texts do not apply to a PostgreSQL server.
var postgresTexts = map[*Class][2]string{
	ClassLoginFailed: {ClassLoginFailed.Cause,
		"check source.user and source.password; on the PostgreSQL server check that pg_hba.conf has a line for this user, database and ehrsync's address with password (scram-sha-256) authentication, and that the role may log in (LOGIN); the server's log names the reason"},
	ClassDatabase: {ClassDatabase.Cause,
		"check source.database; the role needs CONNECT on it (GRANT CONNECT ON DATABASE ... TO ...)"},
	ClassTLSExpired: {ClassTLSExpired.Cause,
		"renew the PostgreSQL server's certificate (ssl_cert_file); if it looks valid, check the clock of this machine and the server (NTP)"},
	ClassTLS: {ClassTLS.Cause,
		"check that the server has ssl = on, tls.min_version against its ssl_min_protocol_version, and that the port speaks PostgreSQL"},
	ClassQueryTimeout: {ClassQueryTimeout.Cause,
		"raise query_timeout, or check the server's load and blocking (pg_stat_activity, pg_locks)"},
}

// For is the class as it reads for src: where its texts name SQL Server
// or its port, they name src's dialect and port (the relay's hidden
// server: the dialect's default port). The code is the class's own.
func (c *Class) For(src config.Source) *Class {
	product, host, behindRelay := "SQL Server", "SQLHOST", config.SQLServer.DefaultPort()
	if src.Dialect == config.Postgres {
		product, host, behindRelay = "PostgreSQL", "PGHOST", config.Postgres.DefaultPort()
	}
	out := *c
	switch c {
	case ClassConnectTimeout:
		out.Fix = fmt.Sprintf(connectTimeoutFix, src.Port)
	case ClassServerUnreachable:
		out.Fix = fmt.Sprintf(serverUnreachableFix, src.Port)
	case ClassRelayUpstream:
		out.Cause = fmt.Sprintf(relayUpstreamCause, product)
		out.Fix = fmt.Sprintf(relayUpstreamFix, host, behindRelay, product, behindRelay)
	}
	if t, ok := postgresTexts[c]; ok && src.Dialect == config.Postgres {
		out.Cause, out.Fix = t[0], t[1]
	}
	return &out
}
