package source

import (
	"testing"
	"time"

	"github.com/microsoft/go-mssqldb/msdsn"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
)

func TestSQLServerURL(t *testing.T) {
	src := config.Source{Dialect: config.SQLServer, Host: "relay.internal", Port: 1433, Database: "NGProd",
		User: `CORP\ehrsync`, ConnectTimeout: 20 * time.Second,
		TLS: config.TLS{Mode: config.TLSRequire, ServerName: "ngsql01.corp.local"}}
	u := sqlServerURL(src, "")
	require.NotContains(t, u, ":@", "no password in the URL: it is set on the parsed config")
	p, err := msdsn.Parse(u)
	require.NoError(t, err)
	require.Equal(t, `CORP\ehrsync`, p.User, "Windows (NTLM) logins keep the DOMAIN\\user form")
	require.Equal(t, "NGProd", p.Database)
	require.Equal(t, msdsn.Encryption(msdsn.EncryptionRequired), p.Encryption)
	require.Equal(t, "ngsql01.corp.local", p.TLSConfig.ServerName)
	require.False(t, p.TLSConfig.InsecureSkipVerify)
	require.Equal(t, 20*time.Second, p.ConnTimeout)

	src.TLS.Mode = config.TLSStrict
	p, err = msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	require.Equal(t, msdsn.Encryption(msdsn.EncryptionStrict), p.Encryption)

	src.TLS = config.TLS{Mode: config.TLSDisable}
	p, err = msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	require.Equal(t, msdsn.Encryption(msdsn.EncryptionDisabled), p.Encryption)
}
