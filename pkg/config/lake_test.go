package config

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLakeOnAndItsStorageProperties(t *testing.T) {
	c, err := Load("testdata/lake.good.yaml")
	require.NoError(t, err)
	o := c.Orgs[0]
	require.True(t, LakeOn(o, o.Tables[0]), "the organization's default")
	require.False(t, LakeOn(o, o.Tables[1]), "the table's own setting")
	require.True(t, LakeUsed(c.Orgs))
	require.EqualValues(t, 256<<20, c.Lake.FlushBytes)

	t.Setenv("LAKE_KEY", "a2V5")
	p, err := c.Lake.Props()
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"adls.auth.shared-key.account.name": "stmarylake",
		"adls.auth.shared-key.account.key":  "a2V5",
		"adls.protocol":                     "https",
	}, p)

	require.NoError(t, os.Unsetenv("LAKE_KEY"))
	_, err = c.Lake.Props()
	require.ErrorContains(t, err, "lake.azure.key")
	require.NotContains(t, err.Error(), "a2V5")
}
