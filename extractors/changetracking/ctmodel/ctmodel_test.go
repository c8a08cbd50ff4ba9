package ctmodel_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/changetracking/ctmodel"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The model's own behaviour, so that the extractor tests stand on a model
// that does what SQL Server's Change Tracking does.

func table(t *testing.T, keyType string) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"k"}, Practice: "practice_id"}
	for _, c := range [][2]string{{"k", keyType}, {"practice_id", "char(4)"}, {"v", "int"}} {
		typ, err := schemas.ParseType(schemas.SQLServer, c[1])
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c[0], Type: typ, Nullable: c[0] == "v"})
	}
	require.NoError(t, tb.Validate())
	return tb
}

func changes(t *testing.T, db *ctmodel.DB, tb *schemas.Table, from, to int64) [][]any {
	t.Helper()
	cs, err := db.Changes(context.Background(), changetracking.Query{Table: tb, From: from, To: to, Limit: 100, Practices: []string{"0001"}})
	require.NoError(t, err)
	return cs.Rows
}

// TestModelOperationsRelativeToFrom: SYS_CHANGE_OPERATION is I for a key
// created after From, U for one that existed at From, D for one gone; one
// row per key with its last version; versions above To are left out.
func TestModelOperationsRelativeToFrom(t *testing.T) {
	tb := table(t, "int")
	db := ctmodel.New()
	require.NoError(t, db.Create(tb))
	require.NoError(t, db.Insert(tb, []any{int64(1), "0001", int64(1)}, []any{int64(2), "0001", int64(1)}))
	from := db.Version()
	require.NoError(t, db.Update(tb, []any{int64(1), "0001", int64(2)}))
	require.NoError(t, db.Insert(tb, []any{int64(3), "0001", int64(1)}))
	require.NoError(t, db.Update(tb, []any{int64(3), "0001", int64(2)}))
	require.NoError(t, db.Delete(tb, []any{int64(2), nil, nil}))
	to := db.Version()
	require.NoError(t, db.Update(tb, []any{int64(1), "0001", int64(9)}))
	got := changes(t, db, tb, from, to)
	require.Equal(t, [][]any{
		{"D", to, false, int64(2), nil, nil},
		{"I", to - 1, true, int64(3), "0001", int64(2)},
	}, got, "key 1's last change is above To")
	require.Len(t, changes(t, db, tb, from, db.Version()), 3)
}

// TestModelOpenTransactionInvisible: uncommitted writes have no version
// and no row until Commit.
func TestModelOpenTransactionInvisible(t *testing.T) {
	tb := table(t, "int")
	db := ctmodel.New()
	require.NoError(t, db.Create(tb))
	v := db.Version()
	tx := db.Begin()
	tx.Insert(tb, []any{int64(1), "0001", nil})
	require.Equal(t, v, db.Version())
	require.Empty(t, db.Rows(tb))
	require.NoError(t, tx.Commit())
	require.Equal(t, v+1, db.Version())
	require.Len(t, changes(t, db, tb, v, v+1), 1)
}

// TestModelGUIDOrder: uniqueidentifier keys come back in SQL Server's
// order (last six bytes first, PITFALLS.md P12), not RFC 4122 order.
func TestModelGUIDOrder(t *testing.T) {
	tb := table(t, "uniqueidentifier")
	db := ctmodel.New()
	require.NoError(t, db.Create(tb))
	a := uuid.MustParse("ffffffff-ffff-ffff-ffff-000000000001") // sorts first at SQL Server
	b := uuid.MustParse("00000000-0000-0000-0000-000000000002")
	v := db.Version()
	require.NoError(t, db.Insert(tb, []any{wire(b), "0001", nil}, []any{wire(a), "0001", nil}))
	got := changes(t, db, tb, v, db.Version())
	require.Equal(t, wire(a), got[0][3])
	require.Equal(t, wire(b), got[1][3])
	// Paging after a continues with b.
	cs, err := db.Changes(context.Background(), changetracking.Query{Table: tb, From: v, To: db.Version(), Limit: 10,
		After: watermarks.Key{watermarks.UUID(a).WithSQLType("uniqueidentifier")}})
	require.NoError(t, err)
	require.Len(t, cs.Rows, 1)
	require.Equal(t, wire(b), cs.Rows[0][3])
}

func wire(u uuid.UUID) []byte {
	b := u
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5], b[6], b[7] = u[5], u[4], u[7], u[6]
	return b[:]
}

// TestModelCleanupAndTruncateRaiseMinValid: cleanup raises the minimum
// valid version and drops older entries; TRUNCATE raises it to its own
// version; a revoked VIEW CHANGE TRACKING reads NULL and fails CHANGETABLE.
func TestModelCleanupAndTruncateRaiseMinValid(t *testing.T) {
	tb := table(t, "int")
	db := ctmodel.New()
	require.NoError(t, db.Create(tb))
	ctx := context.Background()
	require.NoError(t, db.Insert(tb, []any{int64(1), "0001", nil}))
	require.NoError(t, db.Insert(tb, []any{int64(2), "0001", nil}))
	db.Cleanup(tb, db.Version())
	mv, ok, err := db.MinValidVersion(ctx, tb)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, db.Version(), mv)
	require.Len(t, changes(t, db, tb, 0, db.Version()), 1, "the entry below the new minimum is gone")
	db.Truncate(tb)
	mv, _, _ = db.MinValidVersion(ctx, tb)
	require.Equal(t, db.Version(), mv)
	require.Empty(t, db.Rows(tb))
	db.SetGrant(tb, false)
	_, ok, err = db.MinValidVersion(ctx, tb)
	require.NoError(t, err)
	require.False(t, ok)
	_, err = db.Changes(ctx, changetracking.Query{Table: tb, To: db.Version(), Limit: 1})
	require.ErrorIs(t, err, ctmodel.ErrPermission)
}
