package schemas_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func TestLoadTableFilesAndWith(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
		return p
	}
	odd := write("odd.yaml", `schema: 'sch "ema'
name: 'we"ird [t];able 𝄞'
dialect: postgres
key: ['key "id"']
columns:
  - {name: 'key "id"', type: bigint, nullable: false}
  - {name: '[bracketed]', type: text, nullable: true}
`)
	tables, err := schemas.LoadTableFiles(odd)
	require.NoError(t, err)
	c, err := schemas.NextGen().With(tables...)
	require.NoError(t, err)
	got, ok := c.Table(`sch "ema.we"ird [t];able 𝄞`)
	require.True(t, ok)
	require.Equal(t, "[bracketed]", got.Columns[1].Name)
	_, ok = c.Table("dbo.claims")
	require.True(t, ok, "the built-in tables stay")

	t.Run("a built-in table cannot be replaced", func(t *testing.T) {
		claims := write("claims.yaml", "schema: dbo\nname: claims\ndialect: postgres\nkey: [id]\ncolumns:\n  - {name: id, type: bigint, nullable: false}\n")
		tables, err := schemas.LoadTableFiles(claims)
		require.NoError(t, err)
		_, err = schemas.NextGen().With(tables...)
		require.ErrorContains(t, err, "table dbo.claims is already in the catalog")
	})
	t.Run("problems name the file", func(t *testing.T) {
		bad := write("bad.yaml", "schema: dbo\nname: x\ndialect: postgres\nkey: [id]\ncolumns:\n  - {name: id, type: interval, nullable: false}\n")
		_, err := schemas.LoadTableFiles(bad, filepath.Join(dir, "missing.yaml"))
		require.ErrorContains(t, err, "catalog file "+bad+": table dbo.x: column id")
		require.ErrorContains(t, err, "missing.yaml")
	})
}
