package lake_test

import (
	"context"
	"encoding/base64"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
)

// TestProbeWarehouseDirectory: a writable directory passes and keeps no
// probe file; a read-only one is refused, and a path under a regular file
// fails; both errors name the warehouse.
func TestProbeWarehouseDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, lake.ProbeWarehouse(ctx, "file://"+dir, nil))
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range left {
		sub, err := os.ReadDir(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		require.Empty(t, sub, "the probe file is deleted")
	}

	file := filepath.Join(t.TempDir(), "regular")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	cases := []struct {
		name, warehouse string
		kind            lake.ProbeKind
		reason          string
	}{
		{"under a regular file", "file://" + file + "/lake", lake.ProbeFailed, "not a directory"},
		{"read-only", "file://" + laketest.ReadOnlyDir(t), lake.ProbeDenied, "mkdir"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := lake.ProbeWarehouse(ctx, c.warehouse, nil)
			var pe *lake.ProbeError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, c.kind, pe.Kind, err.Error())
			require.Equal(t, "write", pe.Step)
			require.Contains(t, err.Error(), "lake warehouse "+c.warehouse+": write a probe file: ")
			require.Contains(t, pe.Reason(), c.reason)
		})
	}
}

// TestProbeWarehouseAzure: an Azure warehouse (Azurite) with its account
// key passes and keeps no probe blob; with a wrong key the storage refuses
// it, and the error names the warehouse and the refusal, never the key.
func TestProbeWarehouseAzure(t *testing.T) {
	ctx := context.Background()
	az := laketest.StartAzurite(t)
	require.NoError(t, lake.ProbeWarehouse(ctx, az.Warehouse, az.Props))
	pager := az.Client.NewListBlobsFlatPager(az.Container, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		require.NoError(t, err)
		require.Empty(t, page.Segment.BlobItems, "the probe blob is deleted")
	}

	wrong := maps.Clone(az.Props)
	key := base64.StdEncoding.EncodeToString([]byte("not the account key of devstoreaccount1, 64 bytes long, padded..."))
	wrong["adls.auth.shared-key.account.key"] = key
	err := lake.ProbeWarehouse(ctx, az.Warehouse, wrong)
	var pe *lake.ProbeError
	require.ErrorAs(t, err, &pe)
	t.Log(err)
	require.Equal(t, lake.ProbeDenied, pe.Kind)
	require.Contains(t, err.Error(), "lake warehouse "+az.Warehouse+": write a probe file: the storage answered HTTP 403")
	require.NotContains(t, err.Error(), key)
	require.NotContains(t, err.Error(), laketest.AzuriteKey)

	// Nothing listens: unreachable.
	gone := maps.Clone(az.Props)
	gone["adls.endpoint"] = "127.0.0.1:1"
	ctx, cancel := context.WithTimeout(ctx, 20e9)
	defer cancel()
	err = lake.ProbeWarehouse(ctx, az.Warehouse, gone)
	require.ErrorAs(t, err, &pe)
	require.Equal(t, lake.ProbeUnreachable, pe.Kind, err.Error())
	require.False(t, errors.Is(err, context.Canceled))
}
