package source

import (
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/microsoft/go-mssqldb/integratedauth"
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
	require.Zero(t, p.ConnTimeout, "no driver connection timeout: it would cap every read of the connection's life (connector.Connect bounds the connect)")
	require.Equal(t, 20*time.Second, p.DialTimeout, "the driver's dial timeout is the connect timeout, not its 15s default")
	require.Empty(t, p.ServerSPN, "no SPN without kerberos")

	src.TLS.Mode = config.TLSStrict
	p, err = msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	require.Equal(t, msdsn.Encryption(msdsn.EncryptionStrict), p.Encryption)

	src.TLS = config.TLS{Mode: config.TLSDisable}
	p, err = msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	require.Equal(t, msdsn.Encryption(msdsn.EncryptionDisabled), p.Encryption)
}

// TestKerberosLogin proves the krb5 authenticator is linked in and gets its
// settings from the configuration; a real ticket needs a KDC, which the
// live suite has.
func TestKerberosLogin(t *testing.T) {
	dir := t.TempDir()
	conf, keytab := filepath.Join(dir, "krb5.conf"), filepath.Join(dir, "ehrsync.keytab")
	require.NoError(t, os.WriteFile(conf, []byte("[libdefaults]\n default_realm = HOSPITAL.LOCAL\n"), 0o600))
	require.NoError(t, os.WriteFile(keytab, nil, 0o600))
	src := config.Source{Dialect: config.SQLServer, Host: "ngsql01", Port: 1433, Database: "NGProd", User: "ehrsync",
		Kerberos: &config.Kerberos{Realm: "HOSPITAL.LOCAL", ConfigFile: conf, Keytab: keytab}}
	p, err := msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	require.Equal(t, "krb5", p.Parameters["authenticator"])
	require.Equal(t, "MSSQLSvc/ngsql01:1433", p.ServerSPN, "go-mssqldb derives no SPN for a HostDialer: ehrsync gives it")
	_, err = integratedauth.GetIntegratedAuthenticator(p)
	require.NoError(t, err, "the krb5 authenticator refused settings that are complete")

	src.Kerberos.ConfigFile = filepath.Join(dir, "missing.conf")
	p, err = msdsn.Parse(sqlServerURL(src, ""))
	require.NoError(t, err)
	_, err = integratedauth.GetIntegratedAuthenticator(p)
	require.ErrorIs(t, err, os.ErrNotExist, "the configured krb5.conf did not reach the authenticator")
	require.ErrorContains(t, err, "missing.conf")
}

// TestKerberosKeytabIsTheFileChecked: the driver, which reads the keytab by
// path at each login, is given a path to the file ehrsync opened and
// checked, held open with the pool: a file renamed into the keytab's place
// afterwards (open to others, so refused had it been checked) is never
// what the driver reads.
func TestKerberosKeytabIsTheFileChecked(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the held path is Linux's /proc/self/fd")
	}
	dir := t.TempDir()
	conf, keytab := filepath.Join(dir, "krb5.conf"), filepath.Join(dir, "ehrsync.keytab")
	require.NoError(t, os.WriteFile(conf, []byte("[libdefaults]\n default_realm = HOSPITAL.LOCAL\n"), 0o600))
	require.NoError(t, os.WriteFile(keytab, []byte("checked"), 0o600))
	src := config.Source{Dialect: config.SQLServer, Host: "ngsql01", Port: 1433, Database: "NGProd", User: "ehrsync",
		Kerberos: &config.Kerberos{Realm: "HOSPITAL.LOCAL", ConfigFile: conf, Keytab: keytab}}
	c, err := newConnector(src)
	require.NoError(t, err)
	defer c.Close()
	// The driver's settings are unexported: read the one it opens.
	params := reflect.ValueOf(c.inner).Elem().FieldByName("params").FieldByName("Parameters")
	given := params.MapIndex(reflect.ValueOf("krb5-keytabfile")).String()
	require.NotEqual(t, keytab, given, "the driver reads the keytab by its configured path")

	swapped := filepath.Join(dir, "swapped")
	require.NoError(t, os.WriteFile(swapped, []byte("swapped"), 0o644))
	require.NoError(t, os.Rename(swapped, keytab))
	b, err := os.ReadFile(given)
	require.NoError(t, err)
	require.Equal(t, "checked", string(b))
}
