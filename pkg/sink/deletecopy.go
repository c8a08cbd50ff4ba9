package sink

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/schemas"
)

// deleteCopy (measured, not kept) deletes the chunk's keys from the target
// and copies its rows straight in. Hard deletes, unique single-column keys.
func (tg *Target) deleteCopy(ctx context.Context, conn *pgx.Conn, rec arrow.RecordBatch, c commit, res *Result) error {
	kc := tg.keyCols()
	if len(kc) != 1 {
		return fmt.Errorf("deletecopy: one key column only")
	}
	k := kc[0]
	keyEnc := fieldEncoderFor(rec.Column(k), tg.cols[k].pgType)
	el, _ := paramElem(tg.cols[k].pgType)
	n := int(rec.NumRows())
	arr := binary.BigEndian.AppendUint32(nil, 1)
	arr = binary.BigEndian.AppendUint32(arr, 0)
	arr = binary.BigEndian.AppendUint32(arr, el.oid)
	arr = binary.BigEndian.AppendUint32(arr, uint32(n))
	arr = binary.BigEndian.AppendUint32(arr, 1)
	keys := make([]string, n)
	for i := range n {
		m := len(arr)
		arr = keyEnc(arr, i)
		keys[i] = string(arr[m+4:])
	}
	key := pgx.Identifier{tg.key[0]}.Sanitize()
	rr := conn.PgConn().ExecParams(ctx, "DELETE FROM "+tg.ident.Sanitize()+" WHERE "+key+" = ANY($1::"+el.array+") RETURNING "+key,
		[][]byte{arr}, []uint32{el.arrayOID}, []int16{1}, []int16{1})
	held := map[string]bool{}
	for rr.NextRow() {
		held[string(rr.Values()[0])] = true
	}
	if _, err := rr.Close(); err != nil {
		return err
	}
	ops := rec.Column(len(tg.cols)).(*array.Int8)
	var idx []int
	var upd []bool
	for i := range n {
		h := held[keys[i]]
		if schemas.Op(ops.Value(i)) == schemas.OpDelete {
			if h {
				res.Deleted++
			} else {
				res.Unchanged++
			}
			continue
		}
		idx = append(idx, i)
		upd = append(upd, h)
		if h {
			res.Updated++
		} else {
			res.Inserted++
		}
	}
	e := &copyEncoder{rows: len(idx)}
	for ci, col := range tg.cols {
		f := fieldEncoderFor(rec.Column(ci), col.pgType)
		e.fields = append(e.fields, func(b []byte, r int) []byte { return f(b, idx[r]) })
	}
	ins, up := constField([]byte("insert")), constField([]byte("update"))
	e.fields = append(e.fields,
		func(b []byte, r int) []byte {
			if upd[r] {
				return up(b, r)
			}
			return ins(b, r)
		},
		constField(binary.BigEndian.AppendUint64(nil, uint64(c.id))),
		constField(binary.BigEndian.AppendUint64(nil, uint64(c.at.UnixMicro()-pgEpochMicros))),
		constField([]byte{0}))
	names := append(tg.colNames(), MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted)
	g := &guardedReader{r: e}
	_, err := conn.PgConn().CopyFrom(ctx, g, "COPY "+tg.ident.Sanitize()+" ("+strings.Join(names, ", ")+") FROM STDIN BINARY")
	g.close()
	return err
}
