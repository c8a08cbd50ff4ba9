package laketest_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	icesql "github.com/apache/iceberg-go/catalog/sql"
	_ "github.com/apache/iceberg-go/io/gocloud/azure"
	"github.com/apache/iceberg-go/table"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// value is one written row, as Go values; a nil pointer or slice is SQL NULL
// (blob distinguishes nil, NULL, from an empty non-nil slice).
type value struct {
	id      int64
	amount  *int64 // decimal(19,2), unscaled
	localTS *int64 // timestamp[us], no zone
	utcTS   *int64 // timestamp[us, UTC]
	uid     *uuid.UUID
	day     *int32 // date32
	blob    []byte
	name    *string
	big     *int64
	num     *int32
	op      *int8
	rv      []byte // fixed_size_binary[8]
}

func ptr[T any](v T) *T { return &v }

// columns are the written columns, in schema order, besides id.
var columns = []string{"amount", "local_ts", "utc_ts", "uid", "day", "blob", "name", "big", "num", "op", "rv"}

func arrowSchema() *arrow.Schema {
	return arrow.NewSchema([]arrow.Field{
		{Name: "id", Type: arrow.PrimitiveTypes.Int64},
		{Name: "amount", Type: &arrow.Decimal128Type{Precision: 19, Scale: 2}, Nullable: true},
		{Name: "local_ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond}, Nullable: true},
		{Name: "utc_ts", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
		{Name: "uid", Type: extensions.NewUUIDType(), Nullable: true},
		{Name: "day", Type: arrow.FixedWidthTypes.Date32, Nullable: true},
		{Name: "blob", Type: arrow.BinaryTypes.Binary, Nullable: true},
		{Name: "name", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "big", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		{Name: "num", Type: arrow.PrimitiveTypes.Int32, Nullable: true},
		{Name: "op", Type: arrow.PrimitiveTypes.Int8, Nullable: true},
		{Name: "rv", Type: &arrow.FixedSizeBinaryType{ByteWidth: 8}, Nullable: true},
	}, nil)
}

// rows makes n rows with ids from first: edge values first (extreme and
// pre-1970 values, an empty string and an empty binary), then ordinary
// ones, with a NULL in each nullable column on some rows.
func rows(first int64, n int) []value {
	const day = int64(86400_000_000)
	edges := []value{
		{amount: ptr(int64(math.MaxInt64)), localTS: ptr(int64(-1)), utcTS: ptr(-day*365*70 - 123456),
			day: ptr(int32(-719162)), blob: []byte{}, name: ptr(""), big: ptr(int64(math.MaxInt64)),
			num: ptr(int32(math.MaxInt32)), op: ptr(int8(math.MaxInt8)), rv: []byte{0, 0, 0, 0, 0, 0, 0, 0}},
		{amount: ptr(int64(math.MinInt64 + 1)), localTS: ptr(-day*365*300 - 7), utcTS: ptr(int64(-1)),
			day: ptr(int32(2932896)), blob: []byte{0xff, 0x00, 0xfe, 0x80}, name: ptr("é \"q\" \\ 東京 \n\t"),
			big: ptr(int64(math.MinInt64)), num: ptr(int32(math.MinInt32)), op: ptr(int8(math.MinInt8)),
			rv: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{amount: ptr(int64(-1)), localTS: ptr(int64(0)), utcTS: ptr(int64(0)), day: ptr(int32(-1)),
			big: ptr(int64(1) << 53), num: ptr(int32(0)), op: ptr(int8(0))},
		{amount: ptr(int64(1)), localTS: ptr(day*365*400 + 1), utcTS: ptr(day*365*400 + 999999), day: ptr(int32(0)),
			big: ptr(-(int64(1) << 53)), num: ptr(int32(-1)), op: ptr(int8(-1))},
		{amount: ptr(int64(0)), big: ptr(int64(1)<<53 - 1), name: ptr("plain")},
		{amount: ptr(int64(-99)), big: ptr(-(int64(1)<<53 - 1))},
	}
	out := make([]value, n)
	for i := range out {
		id := first + int64(i)
		v := value{id: id}
		if i < len(edges) {
			v = edges[i]
			v.id = id
			u := uuid.NewSHA1(uuid.NameSpaceOID, []byte(strconv.FormatInt(id, 10)))
			v.uid = &u
		} else {
			k := id * 7919
			v.amount = ptr((k%200_000_001 - 100_000_000) * 37)
			v.localTS = ptr((k%4_000_000 - 2_000_000) * 1_000_003_117)
			v.utcTS = ptr((k%3_000_000 - 1_500_000) * 2_000_000_011)
			u := uuid.NewSHA1(uuid.NameSpaceURL, []byte(strconv.FormatInt(id, 10)))
			v.uid = &u
			v.day = ptr(int32(k%60_000 - 30_000))
			v.blob = []byte(fmt.Sprintf("b%d\x00\xff", id))
			v.name = ptr(fmt.Sprintf("name %d ü", id))
			v.big = ptr(k*1_000_003 - 5_000_000_000)
			v.num = ptr(int32(k%2_000_001 - 1_000_000))
			v.op = ptr(int8(k%3 + 1))
			v.rv = []byte(fmt.Sprintf("%08x", k))
			// NULLs: each nullable column on some rows.
			for c := range columns {
				if (id*3+int64(c))%11 == 0 {
					v.setNull(columns[c])
				}
			}
		}
		out[i] = v
	}
	return out
}

func (v *value) setNull(col string) {
	switch col {
	case "amount":
		v.amount = nil
	case "local_ts":
		v.localTS = nil
	case "utc_ts":
		v.utcTS = nil
	case "uid":
		v.uid = nil
	case "day":
		v.day = nil
	case "blob":
		v.blob = nil
	case "name":
		v.name = nil
	case "big":
		v.big = nil
	case "num":
		v.num = nil
	case "op":
		v.op = nil
	case "rv":
		v.rv = nil
	}
}

// record builds one Arrow record batch of vs.
func record(vs []value) arrow.RecordBatch {
	b := array.NewRecordBuilder(memory.DefaultAllocator, arrowSchema())
	defer b.Release()
	for _, v := range vs {
		b.Field(0).(*array.Int64Builder).Append(v.id)
		appendOr(b.Field(1), v.amount, func(x int64) { b.Field(1).(*array.Decimal128Builder).Append(decimal128.FromI64(x)) })
		appendOr(b.Field(2), v.localTS, func(x int64) { b.Field(2).(*array.TimestampBuilder).Append(arrow.Timestamp(x)) })
		appendOr(b.Field(3), v.utcTS, func(x int64) { b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(x)) })
		appendOr(b.Field(4), v.uid, func(x uuid.UUID) { b.Field(4).(*extensions.UUIDBuilder).Append(x) })
		appendOr(b.Field(5), v.day, func(x int32) { b.Field(5).(*array.Date32Builder).Append(arrow.Date32(x)) })
		if v.blob == nil {
			b.Field(6).AppendNull()
		} else {
			b.Field(6).(*array.BinaryBuilder).Append(v.blob)
		}
		appendOr(b.Field(7), v.name, func(x string) { b.Field(7).(*array.StringBuilder).Append(x) })
		appendOr(b.Field(8), v.big, func(x int64) { b.Field(8).(*array.Int64Builder).Append(x) })
		appendOr(b.Field(9), v.num, func(x int32) { b.Field(9).(*array.Int32Builder).Append(x) })
		appendOr(b.Field(10), v.op, func(x int8) { b.Field(10).(*array.Int8Builder).Append(x) })
		if v.rv == nil {
			b.Field(11).AppendNull()
		} else {
			b.Field(11).(*array.FixedSizeBinaryBuilder).Append(v.rv)
		}
	}
	return b.NewRecordBatch()
}

func appendOr[T any](b array.Builder, p *T, app func(T)) {
	if p == nil {
		b.AppendNull()
		return
	}
	app(*p)
}

// The encodings below are read.mjs's, written out independently in Go.

// jsonInt is an integer as read.mjs prints it: a number when it is exact in
// a float64 (|x| <= 2^53-1), a decimal string otherwise.
func jsonInt(x int64) any {
	const maxSafe = int64(1)<<53 - 1
	if x > maxSafe || x < -maxSafe {
		return strconv.FormatInt(x, 10)
	}
	return json.Number(strconv.FormatInt(x, 10))
}

// decimalString is an unscaled decimal at scale 2 as an exact string.
func decimalString(unscaled int64) string {
	sign := ""
	u := uint64(unscaled)
	if unscaled < 0 {
		sign, u = "-", uint64(-unscaled)
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}

func dateString(days int32) string {
	return time.Unix(int64(days)*86400, 0).UTC().Format("2006-01-02")
}

// want is v in read.mjs's encoding.
func (v value) want() laketest.Row {
	r := laketest.Row{"id": jsonInt(v.id)}
	set := func(col string, isNull bool, enc func() any) {
		if isNull {
			r[col] = nil
		} else {
			r[col] = enc()
		}
	}
	set("amount", v.amount == nil, func() any { return decimalString(*v.amount) })
	set("local_ts", v.localTS == nil, func() any { return jsonInt(*v.localTS) })
	set("utc_ts", v.utcTS == nil, func() any { return jsonInt(*v.utcTS) })
	set("uid", v.uid == nil, func() any { return v.uid.String() })
	set("day", v.day == nil, func() any { return dateString(*v.day) })
	set("blob", v.blob == nil, func() any { return hex.EncodeToString(v.blob) })
	set("name", v.name == nil, func() any { return *v.name })
	set("big", v.big == nil, func() any { return jsonInt(*v.big) })
	set("num", v.num == nil, func() any { return jsonInt(int64(*v.num)) })
	set("op", v.op == nil, func() any { return jsonInt(int64(*v.op)) })
	set("rv", v.rv == nil, func() any { return hex.EncodeToString(v.rv) })
	return r
}

// compare checks got against the written rows, matched by id; errors name
// the row id and column, not the values.
func compare(t *testing.T, written []value, got []laketest.Row) {
	t.Helper()
	if len(got) != len(written) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(written))
	}
	byID := map[string]laketest.Row{}
	for i, r := range got {
		id := fmt.Sprint(r["id"])
		if _, dup := byID[id]; dup {
			t.Fatalf("row %d: id read twice", i)
		}
		byID[id] = r
	}
	differing := 0
	for _, v := range written {
		w := v.want()
		g, ok := byID[fmt.Sprint(w["id"])]
		if !ok {
			t.Errorf("id %d: not read", v.id)
			continue
		}
		if len(g) != len(w) {
			t.Errorf("id %d: read %d columns, want %d", v.id, len(g), len(w))
		}
		for col, wv := range w {
			if gv, ok := g[col]; !ok || !reflect.DeepEqual(gv, wv) {
				differing++
				t.Errorf("id %d column %s: read value (%T) differs from the written one (%T)", v.id, col, gv, wv)
			}
		}
	}
	t.Logf("compared %d rows x %d columns, %d values differing", len(written), len(columns)+1, differing)
}

// openCatalog opens iceberg-go's SQL catalog on a fresh PostgreSQL database
// (schema lake), with the warehouse and IO properties given.
func openCatalog(t *testing.T, name string, props iceberg.Properties) *icesql.Catalog {
	t.Helper()
	dbURL := pgtest.URL(t)
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	setup := stdlib.OpenDB(*cfg.Copy())
	if _, err := setup.Exec("CREATE SCHEMA lake"); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	cfg.RuntimeParams["search_path"] = "lake"
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	cat, err := icesql.NewCatalog(name, db, icesql.Postgres, props)
	if err != nil {
		t.Fatalf("sql catalog: %v", err)
	}
	t.Cleanup(func() { cat.Close() })
	return cat
}

// writeTable creates ns.changes and appends batches, one commit (snapshot)
// each, and returns the table after the last commit.
func writeTable(t *testing.T, cat *icesql.Catalog, batches ...[]value) *table.Table {
	t.Helper()
	tbl, _ := writeTableCommits(t, cat, batches...)
	return tbl
}

// writeTableCommits is writeTable that also returns the metadata location
// after each commit.
func writeTableCommits(t *testing.T, cat *icesql.Catalog, batches ...[]value) (*table.Table, []string) {
	t.Helper()
	ctx := context.Background()
	sc, err := table.ArrowSchemaToIcebergWithFreshIDs(arrowSchema(), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := cat.CreateNamespace(ctx, catalog.ToIdentifier("ns"), nil); err != nil {
		t.Fatal(err)
	}
	ident := catalog.ToIdentifier("ns", "changes")
	tbl, err := cat.CreateTable(ctx, ident, sc)
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	var locations []string
	for i, vs := range batches {
		rec := record(vs)
		rdr, err := array.NewRecordReader(rec.Schema(), []arrow.RecordBatch{rec})
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		tx := tbl.NewTransaction()
		if err := tx.Append(ctx, rdr, iceberg.Properties{"laketest.batch": strconv.Itoa(i)}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		rdr.Release()
		if tbl, err = tx.Commit(ctx); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		locations = append(locations, tbl.MetadataLocation())
	}
	if n := len(tbl.Metadata().Snapshots()); n != len(batches) {
		t.Fatalf("%d snapshots, want %d", n, len(batches))
	}
	return tbl, locations
}

// TestReadEveryType writes every column type the lake uses in two appends
// (two snapshots, two data files) to a local warehouse and reads the table
// back with read.mjs, comparing every value.
func TestReadEveryType(t *testing.T) {
	wh := t.TempDir()
	cat := openCatalog(t, "laketest", iceberg.Properties{"warehouse": "file://" + filepath.ToSlash(wh)})
	first, second := rows(1, 40), rows(1001, 30)
	tbl := writeTable(t, cat, first, second)

	got := laketest.Read(t, tbl.MetadataLocation())
	compare(t, append(append([]value{}, first...), second...), got)
}

// TestReadCurrentSnapshot reads the table at each commit's metadata file:
// the reader reads the data files of the snapshot that metadata names as
// current (not the first snapshot, nor every data file in the table's
// folder: the later appends' files are there when the first metadata is
// read).
func TestReadCurrentSnapshot(t *testing.T) {
	wh := t.TempDir()
	cat := openCatalog(t, "laketest", iceberg.Properties{"warehouse": "file://" + filepath.ToSlash(wh)})
	first, second, third := rows(1, 12), rows(101, 9), rows(201, 7)
	_, locations := writeTableCommits(t, cat, first, second, third)

	compare(t, first, laketest.Read(t, locations[0]))
	compare(t, append(append([]value{}, first...), second...), laketest.Read(t, locations[1]))
	// A plain path works as well as a file:// URL.
	u, err := url.Parse(locations[2])
	if err != nil {
		t.Fatal(err)
	}
	compare(t, append(append(append([]value{}, first...), second...), third...), laketest.Read(t, u.Path))
}

// TestAzurite writes the same table to Azurite through iceberg-go's abfs IO,
// scans it back with iceberg-go and compares every value, then plans orphan
// cleanup with a file planted in the table's data folder.
//
// Finding (iceberg-go v0.7.0, Azurite 3.37.0): the Azure IO (gocloud
// blobfs.FileIO) implements io.ListableIO, and DeleteOrphanFiles with
// WithFilesOlderThan(0) and a dry run lists the planted blob and nothing
// else; the table's own files are not listed as orphans.
func TestAzurite(t *testing.T) {
	az := laketest.StartAzurite(t)
	props := iceberg.Properties{"warehouse": az.Warehouse}
	for k, v := range az.Props {
		props[k] = v
	}
	cat := openCatalog(t, "laketest_azure", props)
	first, second := rows(1, 40), rows(1001, 30)
	tbl := writeTable(t, cat, first, second)
	if !strings.HasPrefix(tbl.MetadataLocation(), "abfs://") {
		t.Fatalf("metadata location scheme: %s", tbl.MetadataLocation())
	}

	ctx := context.Background()
	at, err := tbl.Scan().ToArrowTable(ctx)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer at.Release()
	compare(t, append(append([]value{}, first...), second...), arrowRows(t, at))

	// Plant an orphan in the data folder, as a failed commit leaves one.
	loc, err := url.Parse(tbl.Location())
	if err != nil {
		t.Fatal(err)
	}
	orphanBlob := strings.TrimPrefix(loc.Path, "/") + "/data/orphan-planted.parquet"
	if _, err := az.Client.UploadBuffer(ctx, az.Container, orphanBlob, []byte("not parquet"), nil); err != nil {
		t.Fatalf("plant orphan: %v", err)
	}
	res, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(0), table.WithDryRun(true))
	if err != nil {
		t.Fatalf("orphan listing on the Azure IO: %v", err)
	}
	want := tbl.Location() + "/data/orphan-planted.parquet"
	if len(res.OrphanFileLocations) != 1 || res.OrphanFileLocations[0] != want {
		t.Fatalf("orphans %v, want [%s]", res.OrphanFileLocations, want)
	}
	if len(res.DeletedFiles) != 0 {
		t.Fatalf("dry run deleted %v", res.DeletedFiles)
	}
}

// arrowRows encodes a scanned Arrow table as read.mjs would, so one compare
// serves both readers.
func arrowRows(t *testing.T, at arrow.Table) []laketest.Row {
	t.Helper()
	var out []laketest.Row
	tr := array.NewTableReader(at, 1024)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		sc := rec.Schema()
		for i := 0; i < int(rec.NumRows()); i++ {
			r := laketest.Row{}
			for c, f := range sc.Fields() {
				r[f.Name] = arrowValue(t, f.Name, rec.Column(c), i)
			}
			out = append(out, r)
		}
	}
	if err := tr.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func arrowValue(t *testing.T, col string, a arrow.Array, i int) any {
	if a.IsNull(i) {
		return nil
	}
	switch a := a.(type) {
	case *array.Int64:
		return jsonInt(a.Value(i))
	case *array.Int32:
		return jsonInt(int64(a.Value(i)))
	case *array.Int8:
		return jsonInt(int64(a.Value(i)))
	case *array.Decimal128:
		typ := a.DataType().(*arrow.Decimal128Type)
		unscaled := a.Value(i).BigInt()
		if typ.Scale != 2 || !unscaled.IsInt64() {
			t.Fatalf("column %s: %s value out of the test's range", col, typ)
		}
		return decimalString(unscaled.Int64())
	case *array.Timestamp:
		return jsonInt(int64(a.Value(i)))
	case *extensions.UUIDArray:
		return a.Value(i).String()
	case *array.Date32:
		return dateString(int32(a.Value(i)))
	case *array.Binary:
		return hex.EncodeToString(a.Value(i))
	case *array.String:
		return a.Value(i)
	case *array.FixedSizeBinary:
		return hex.EncodeToString(a.Value(i))
	}
	t.Fatalf("column %s: unexpected Arrow type %s", col, a.DataType())
	return nil
}
