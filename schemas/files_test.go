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

// TestPracticeDeclarations: a table names its practice column or declares
// `practice: none` (its rows shared by every practice); one that does
// neither is refused for an organization that filters by practice, and a
// practice-like column it does not name is found.
func TestPracticeDeclarations(t *testing.T) {
	dir := t.TempDir()
	file := func(name, practice string) string {
		p := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(p, []byte("schema: app\nname: "+name+"\ndialect: postgres\nkey: [id]\n"+practice+
			"columns:\n  - {name: id, type: bigint, nullable: false}\n  - {name: PracticeID, type: text, nullable: true}\n"), 0o600))
		return p
	}
	tables, err := schemas.LoadTableFiles(file("named", "practice: PracticeID\n"), file("shared", "practice: none\n"), file("silent", ""))
	require.NoError(t, err)
	named, shared, silent := tables[0], tables[1], tables[2]
	require.Equal(t, "PracticeID", named.Practice)
	require.False(t, named.Shared)
	require.NoError(t, named.CheckPracticeFilter())
	require.Empty(t, named.PracticeLike())

	require.True(t, shared.Shared)
	require.Empty(t, shared.Practice, "none is a declaration, not a column")
	require.NoError(t, shared.CheckPracticeFilter())
	require.Equal(t, []string{"PracticeID"}, shared.PracticeLike())

	err = silent.CheckPracticeFilter()
	require.ErrorIs(t, err, schemas.ErrPracticeUndeclared)
	require.ErrorContains(t, err, "practice: <column>")
	require.ErrorContains(t, err, "practice: none")
	require.ErrorContains(t, err, "it has a column PracticeID")

	bad := *named
	bad.Shared = true
	require.ErrorContains(t, bad.Validate(), "keep one")

	for _, tb := range schemas.NextGen().Tables() {
		require.NoError(t, tb.CheckPracticeFilter(), "every NextGen table declares its practice column or none")
	}
}
