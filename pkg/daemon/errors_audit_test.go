package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/engine"
)

func TestAuditNotWrittenIsItsOwnPermanentClass(t *testing.T) {
	err := &engine.StoreError{Err: &audit.WriteError{Err: errors.New("permission denied for table audit")}}
	require.Equal(t, "audit_not_written", Class(err))
	require.False(t, Transient(err), "a revoked INSERT does not come back by retrying")
	// A run that failed for its own reason keeps that class.
	joined := fmt.Errorf("%w; and %w", extractors.ErrExpired, err)
	require.Equal(t, "position_expired", Class(joined))
}
