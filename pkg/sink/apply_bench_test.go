package sink

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// BenchmarkApply applies 10,000-row change chunks to a charges-like table
// (17 columns, a uuid key) that holds benchRows rows, in three mixes: half
// updates of held keys and half new keys, updates only, inserts only. Each
// mix applies each chunk with every apply form in turn, each on a table of
// its own, through Target.Apply; <form>-rows/s is change rows applied per
// second, <form>/staged its speed over the staged form's.
func BenchmarkApply(b *testing.B) {
	ctx := context.Background()
	s, tb, mem := benchSink(b)
	// The apply forms compared: the staged upsert, the sink's one. A form
	// to try is added here and chosen on the Targets of its tables.
	forms := []struct{ name string }{{"staged"}}
	for _, mix := range []string{"half", "update", "insert"} {
		b.Run(mix, func(b *testing.B) {
			// Every iteration applies one chunk to each form's table, in
			// an order that turns: the forms share the machine's moments.
			sts := make([]*benchTable, len(forms))
			for i, form := range forms {
				name := "charges_" + mix + "_" + form.name
				if benchTables[name] == nil {
					b.StopTimer()
					benchTables[name] = benchPrepare(b, s, tb, name, mem)
					b.StartTimer()
				}
				sts[i] = benchTables[name]
			}
			spent := make([]time.Duration, len(forms))
			var rows int64
			for n := range b.N {
				for r := range forms {
					i := (n + r) % len(forms)
					st := sts[i]
					rec := benchChunk(b, st.tg, mem, mix, st.chunk)
					st.chunk++
					start := time.Now()
					res, err := st.tg.Apply(ctx, rec, watermarks.Move{From: cursorAt(st.pos), To: cursorAt(st.pos + 1), Reason: watermarks.ReasonSync, Actor: "bench"})
					spent[i] += time.Since(start)
					rec.Release()
					if err != nil {
						b.Fatal(err)
					}
					if res.Inserted+res.Updated != benchChunkRows {
						b.Fatalf("%s: %+v: not every change applied", forms[i].name, res)
					}
					st.pos++
				}
				rows += benchChunkRows
			}
			for i, form := range forms {
				b.ReportMetric(float64(rows)/spent[i].Seconds(), form.name+"-rows/s")
				if i > 0 {
					b.ReportMetric(spent[0].Seconds()/spent[i].Seconds(), form.name+"/staged")
				}
			}
		})
	}
	clear(benchTables)
}

// BenchmarkHotKeys applies runs of 10,000-row chunks that share keys with
// the chunk before them (hotKeys keys changed in every chunk, a busy
// claim's status changes; the other rows updates of keys changed once) as
// the engine does: each chunk written while the one before commits. Forms:
// partly-early (the shared keys upserted at commit, the others while the
// chunk before commits) and at-commit (a chunk sharing any key upserted
// wholly at its commit); each on a table of its own, runs alternated.
func BenchmarkHotKeys(b *testing.B) {
	ctx := context.Background()
	s, tb, mem := benchSink(b)
	defer func(v bool) { partlyEarly = v }(partlyEarly)
	forms := []struct {
		name  string
		early bool
	}{{"partly-early", true}, {"at-commit", false}}
	const run = 4 // chunks per run
	sts := make([]*benchTable, len(forms))
	for i, form := range forms {
		sts[i] = benchPrepare(b, s, tb, "charges_hot_"+strings.ReplaceAll(form.name, "-", "_"), mem)
	}
	spent := make([]time.Duration, len(forms))
	var rows int64
	b.ResetTimer()
	for n := range b.N {
		for r := range forms {
			i := (n + r) % len(forms)
			st := sts[i]
			partlyEarly = forms[i].early
			recs := make([]arrow.RecordBatch, run)
			for c := range recs {
				recs[c] = benchHotChunk(b, st.tg, mem, st.chunk)
				st.chunk++
			}
			start := time.Now()
			var prev *Pending
			var prevWritten <-chan error
			commit := func() {
				if err := <-prevWritten; err != nil {
					b.Fatal(err)
				}
				res, err := prev.Commit(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if res.Updated != benchChunkRows {
					b.Fatalf("%s: %+v: not every change applied", forms[i].name, res)
				}
			}
			for _, rec := range recs {
				p, err := st.tg.Begin(ctx, rec, watermarks.Move{From: cursorAt(st.pos), To: cursorAt(st.pos + 1), Reason: watermarks.ReasonSync, Actor: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				st.pos++
				written := writeAsync(ctx, p)
				if prev != nil {
					commit()
				}
				prev, prevWritten = p, written
			}
			commit()
			spent[i] += time.Since(start)
			for _, rec := range recs {
				rec.Release()
			}
		}
		rows += run * benchChunkRows
	}
	for i, form := range forms {
		b.ReportMetric(float64(rows)/spent[i].Seconds(), form.name+"-rows/s")
		if i > 0 {
			b.ReportMetric(spent[i].Seconds()/spent[0].Seconds(), form.name+"/partly-early")
		}
	}
}

// hotKeys is how many keys every chunk of BenchmarkHotKeys changes.
const hotKeys = 1000

// benchHotChunk is chunk k of BenchmarkHotKeys: the hot keys, then updates
// of keys no other chunk changes. Every update changes its row.
func benchHotChunk(b *testing.B, tg *Target, mem memory.Allocator, k int) arrow.RecordBatch {
	return benchRecord(b, tg, mem, func(j int) (int, schemas.Op, int) {
		if j < hotKeys {
			return j, schemas.OpUpdate, k + 1
		}
		return hotKeys + (k*(benchChunkRows-hotKeys)+j-hotKeys)%(benchRows-hotKeys), schemas.OpUpdate, k + 1
	})
}

// benchSink is a sink on a migrated test store, the charges-like table and
// an allocator for its chunks.
func benchSink(b *testing.B) (*Sink, *schemas.Table, memory.Allocator) {
	pool := pgtest.Pool(b)
	if err := storedb.Migrate(context.Background(), pool); err != nil {
		b.Fatal(err)
	}
	return New(pool, watermarks.NewStore(pool)), benchCharges(b), memory.NewGoAllocator()
}

const (
	benchRows      = 200_000 // rows in the target before the chunks
	benchChunkRows = 10_000
)

// benchTable is one benchmark target and where its chunks are.
type benchTable struct {
	tg    *Target
	pos   int64 // its position's cursor
	chunk int   // chunks applied
}

// benchTables keeps each mix and form's table across the runs b.Run makes.
var benchTables = map[string]*benchTable{}

// benchCharges is a table shaped like NextGen's charges.
func benchCharges(b *testing.B) *schemas.Table {
	tb := &schemas.Table{Schema: "dbo", Name: "charges", Dialect: schemas.SQLServer, Key: []string{"charge_id"}}
	for _, c := range []string{
		"charge_id uniqueidentifier NOT NULL", "practice_id char(4)", "enc_id uniqueidentifier", "service_item_id varchar(35)",
		"cpt4_code_id varchar(35)", "amt numeric(19,2)", "paid_amt numeric(19,2)", "adj_amt numeric(19,2)", "bal_amt numeric(19,2)",
		"begin_date_of_service varchar(8)", "end_date_of_service varchar(8)", "status char(1)", "units int",
		"location_id uniqueidentifier", "rendering_id uniqueidentifier", "create_timestamp datetime", "row_version bigint",
	} {
		name, typ, _ := strings.Cut(strings.TrimSuffix(c, " NOT NULL"), " ")
		ty, err := schemas.ParseType(schemas.SQLServer, typ)
		if err != nil {
			b.Fatal(err)
		}
		tb.Columns = append(tb.Columns, schemas.Column{Name: name, Type: ty, Nullable: !strings.HasSuffix(c, "NOT NULL")})
	}
	if err := tb.Validate(); err != nil {
		b.Fatal(err)
	}
	return tb
}

// benchPrepare creates the target name and fills it with benchRows rows
// (a snapshot, copied straight in).
func benchPrepare(b *testing.B, s *Sink, tb *schemas.Table, name string, mem memory.Allocator) *benchTable {
	ctx := context.Background()
	t := *tb
	t.Name = name
	tg, err := s.Prepare(ctx, "bench", &t, TableOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var from watermarks.Position
	for i := 0; i < benchRows; i += benchChunkRows {
		rec := benchRecord(b, tg, mem, func(j int) (int, schemas.Op, int) { return i + j, schemas.OpInsert, 0 })
		to := watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(int64(i + benchChunkRows))}}
		_, err := tg.Apply(ctx, rec, watermarks.Move{From: from, To: to, Reason: watermarks.ReasonSnapshot, Actor: "bench"})
		rec.Release()
		if err != nil {
			b.Fatal(err)
		}
		from = to
	}
	if _, err := s.pool.Exec(ctx, "VACUUM ANALYZE "+tg.Ident().Sanitize()); err != nil {
		b.Fatal(err)
	}
	st := &benchTable{tg: tg, pos: 1}
	// The incremental position starts at a cursor.
	if _, err := tg.Apply(ctx, nil, watermarks.Move{From: from, To: cursorAt(1), Reason: watermarks.ReasonSync, Actor: "bench"}); err != nil {
		b.Fatal(err)
	}
	return st
}

// benchChunk is chunk k of mix: half (updates of held keys, then new
// keys), update or insert. Every update changes its row.
func benchChunk(b *testing.B, tg *Target, mem memory.Allocator, mix string, k int) arrow.RecordBatch {
	held := func(j int) int { return int((int64(k*benchChunkRows+j) * 7919) % benchRows) } // distinct over a chunk
	fresh := func(j int) int { return benchRows + k*benchChunkRows + j }
	return benchRecord(b, tg, mem, func(j int) (int, schemas.Op, int) {
		switch {
		case mix == "update" || mix == "half" && j < benchChunkRows/2:
			return held(j), schemas.OpUpdate, k + 1
		default:
			return fresh(j), schemas.OpInsert, 0
		}
	})
}

// benchRecord builds benchChunkRows changes; row(j) says change j's key
// number, op and version (its values follow from key and version).
func benchRecord(b *testing.B, tg *Target, mem memory.Allocator, row func(j int) (key int, op schemas.Op, version int)) arrow.RecordBatch {
	rb := array.NewRecordBuilder(mem, tg.Schema())
	defer rb.Release()
	id := func(kind byte, n int) uuid.UUID {
		var u uuid.UUID
		binary.BigEndian.PutUint64(u[:8], uint64(n)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(u[8:], uint64(n)^0x5bd1e9955bd1e995)
		u[0] ^= kind
		return u
	}
	created := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for j := range benchChunkRows {
		key, op, v := row(j)
		for i, f := range tg.Schema().Fields() {
			switch bld := rb.Field(i).(type) {
			case *extensions.UUIDBuilder:
				bld.Append(id(byte(i), key))
			case *array.StringBuilder:
				switch f.Name {
				case "practice_id":
					bld.Append("0001")
				case "status":
					bld.Append([]string{"A", "D", "S"}[(key+v)%3])
				case "begin_date_of_service", "end_date_of_service":
					bld.Append(created.AddDate(0, 0, key%900).Format("20060102"))
				default:
					bld.Append("C" + strconv.Itoa(key%5000+v))
				}
			case *array.Decimal128Builder:
				bld.Append(decimal128.FromI64(int64(key%100_000 + 100*v + i)))
			case *array.Int32Builder:
				bld.Append(int32(1 + v))
			case *array.Int64Builder:
				switch f.Name {
				case schemas.SeqColumn:
					bld.Append(int64(j + 1))
				default:
					bld.Append(int64(key)<<8 | int64(v))
				}
			case *array.TimestampBuilder:
				bld.Append(arrow.Timestamp(created.Add(time.Duration(key) * time.Second).UnixMicro()))
			case *array.Int8Builder:
				bld.Append(int8(op))
			case *array.BinaryBuilder:
				bld.AppendNull()
			default:
				b.Fatalf("bench record: no value for %s (%T)", f.Name, bld)
			}
		}
	}
	return rb.NewRecordBatch()
}
