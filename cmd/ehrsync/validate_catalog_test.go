package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateChecksTablesAgainstTheCatalog(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "tables"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tables", "odd.yaml"), []byte(`schema: app
name: 'we"ird [t];able 𝄞'
dialect: postgres
key: [id]
columns:
  - {name: id, type: bigint, nullable: false}
`), 0o600))
	write := func(tables string) string {
		p := filepath.Join(dir, "ehrsync.yaml")
		require.NoError(t, os.WriteFile(p, []byte(`store:
  url: env:EHRSYNC_STORE_URL
catalog: [tables/odd.yaml]
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source: {dialect: postgres, via: direct, host: localhost, database: emr, user: ehrsync, tls: {mode: disable}}
    tables:
`+tables), 0o600))
		return p
	}
	var out, errOut bytes.Buffer
	path := write("      - name: dbo.claims\n      - name: 'app.we\"ird [t];able 𝄞'\n")
	require.NoError(t, run(context.Background(), []string{"validate", "--config", path}, &out, &errOut))
	require.Contains(t, out.String(), "valid (1 organizations, 2 tables)")

	path = write("      - name: dbo.claims\n      - name: app.missing\n")
	err := run(context.Background(), []string{"validate", "--config", path}, &out, &errOut)
	require.ErrorContains(t, err, `orgs[0].tables[1].name: table "app.missing" is in neither the NextGen catalog nor a file of catalog:`)
}
