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
	t.Setenv("EHRSYNC_STORE_URL", "postgres://ehrsync@127.0.0.1/store")
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

// TestValidateRefusesUndeclaredPracticeColumns: an organization that filters
// by practice may read only tables that name their practice column or
// declare `practice: none`; a table that does neither is a configuration
// error naming the table and both fixes.
func TestValidateRefusesUndeclaredPracticeColumns(t *testing.T) {
	t.Setenv("EHRSYNC_STORE_URL", "postgres://ehrsync@127.0.0.1/store")
	dir := t.TempDir()
	table := func(practice string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "visits.yaml"), []byte(`schema: app
name: visits
dialect: postgres
key: [id]
`+practice+`columns:
  - {name: id, type: bigint, nullable: false}
  - {name: practice_id, type: text, nullable: false}
`), 0o600))
	}
	p := filepath.Join(dir, "ehrsync.yaml")
	config := func(practices string) {
		require.NoError(t, os.WriteFile(p, []byte(`store:
  url: env:EHRSYNC_STORE_URL
catalog: [visits.yaml]
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source: {dialect: postgres, via: direct, host: localhost, database: emr, user: ehrsync, tls: {mode: disable}`+practices+`}
    tables:
      - name: dbo.payer_mstr
      - name: app.visits
`), 0o600))
	}
	var out, errOut bytes.Buffer
	validate := func() error { return run(context.Background(), []string{"validate", "--config", p}, &out, &errOut) }

	table("")
	config(`, practice_ids: ["0001"]`)
	err := validate()
	require.ErrorContains(t, err, "orgs[0].tables[1].name: table app.visits: the table neither names its practice column nor declares that it has none")
	require.ErrorContains(t, err, "practice: <column>")
	require.ErrorContains(t, err, "practice: none")
	require.ErrorContains(t, err, "it has a column practice_id")
	require.NotContains(t, err.Error(), "payer_mstr", "NextGen's reference tables declare practice: none")

	table("practice: practice_id\n")
	require.NoError(t, validate())
	table("practice: none\n")
	require.NoError(t, validate())
	table("")
	config("") // no practice filter: nothing to declare
	require.NoError(t, validate())
}
