package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestClass: every error has one stable class and one retry decision,
// decided on types, sentinels and SQLSTATEs.
func TestClass(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	notWritten := &engine.StoreError{Err: &audit.WriteError{Err: errors.New("permission denied for table audit")}}
	cases := []struct {
		name      string
		err       error
		class     string // "": any class but store_unavailable
		transient bool
	}{
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), "transient", true},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, "transient", true},
		{"lock timeout", &pgconn.PgError{Code: "55P03"}, "transient", true}, // a direct chunk's bounded wait
		{"catalog race", &pgconn.PgError{Code: "23505", ConstraintName: "pg_namespace_nspname_index"}, "", true},
		{"user unique violation", &pgconn.PgError{Code: "23505", ConstraintName: "claims_pkey"}, "", false},
		{"login failed", &pgconn.PgError{Code: "28P01"}, "", false},
		{"position expired", fmt.Errorf("open: %w", extractors.ErrExpired), "position_expired", false},
		{"position moved", fmt.Errorf("save: %w", watermarks.ErrPositionMoved), "position_moved", true},
		{"canceled", context.Canceled, "canceled", false},
		{"unknown", errors.New("boom"), "unclassified", false},
		// A revoked INSERT does not come back by retrying.
		{"audit not written", notWritten, "audit_not_written", false},
		// A run that failed for its own reason keeps that class.
		{"expired, and audit not written", fmt.Errorf("%w; and %w", extractors.ErrExpired, notWritten), "position_expired", false},
		// Retrying does not bring a dropped column back.
		{"source schema changed", fmt.Errorf("table dbo.x: %w: column a is in the catalog but no longer at the source", schemas.ErrSourceChanged),
			"source_schema_changed", false},
		// Nor does a source that sent one key twice.
		{"duplicate source keys", &engine.StoreError{Err: fmt.Errorf("apply: %w", &sink.KeyBuildError{Table: `"a"."b"`, Key: []string{"id"}})},
			"duplicate_source_keys", false},
		// A lake flush that failed after the store committed: the run is
		// not redone for it; the outbox waits for the next flush.
		{"lake flush failed", fmt.Errorf("%w: %w", engine.ErrLake, errors.New("append to lake table st_mary.claims: connection refused")),
			"lake_failed", false},

		// A store failure caused by a refused, lost or shut-down
		// connection is store_unavailable and retried; other store
		// failures, and the same causes at the source, are not.
		{"store refused", fmt.Errorf("lease: %w", &engine.StoreError{Err: refused}), "store_unavailable", true},
		{"store shutting down", fmt.Errorf("commit chunk 3: %w", &engine.StoreError{Err: &pgconn.PgError{Code: "57P01"}}), "store_unavailable", true},
		{"store connection lost", &engine.StoreError{Err: fmt.Errorf("read: %w", io.ErrUnexpectedEOF)}, "store_unavailable", true},
		{"store connection closed", &engine.StoreError{Err: fmt.Errorf("commit chunk 3: %w", pgconn.ErrConnClosed)}, "store_unavailable", true},
		{"store permission", &engine.StoreError{Err: &pgconn.PgError{Code: "42501"}}, "permission_missing", false},
		{"source lost", fmt.Errorf("read chunk 2: %w", io.ErrUnexpectedEOF), "", true},
		// Error text decides nothing: a message that reads like a closed
		// connection is not one.
		{"store error naming a closed connection", &engine.StoreError{Err: fmt.Errorf("copy into %s: %w",
			pgx.Identifier{"conn closed"}.Sanitize(), errors.New("unexpected column"))}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := engine.Class(c.err)
			require.NotEmpty(t, got)
			if c.class == "" {
				require.NotEqual(t, "store_unavailable", got)
			} else {
				require.Equal(t, c.class, got)
			}
			require.Equal(t, c.transient, engine.IsTransient(c.err))
		})
	}
	require.Empty(t, engine.Class(nil))
	require.False(t, engine.IsTransient(nil))
}

// TestClosedStoreConnectionIsUnavailable: once the store's server ends a
// session, pgx closes the connection and every later use of it fails with
// pgconn.ErrConnClosed; as the store's failure that is store_unavailable,
// and retried.
func TestClosedStoreConnectionIsUnavailable(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "SELECT pg_terminate_backend($1)", conn.PgConn().PID())
	require.NoError(t, err)

	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err, "the terminated session's next query")
	require.True(t, conn.IsClosed(), "pgx closed the connection")
	_, err = conn.Exec(ctx, "SELECT 1")
	require.ErrorIs(t, err, pgconn.ErrConnClosed)

	err = fmt.Errorf("save position: %w", &engine.StoreError{Err: err})
	require.Equal(t, "store_unavailable", engine.Class(err))
	require.True(t, engine.IsTransient(err))
}
