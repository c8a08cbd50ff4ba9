package daemon

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func TestSourceSchemaChangeIsItsOwnPermanentClass(t *testing.T) {
	err := fmt.Errorf("table dbo.x: %w: column a is in the catalog but no longer at the source", schemas.ErrSourceChanged)
	require.Equal(t, "source_schema_changed", Class(err))
	require.False(t, Transient(err), "retrying does not bring a dropped column back")
}
