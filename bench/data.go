package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Columns are the 17 columns of dbo.charges (the NextGen claim line) the
// benchmark syncs, in table order: the configured column allow-list.
var Columns = []string{
	"charge_id", "practice_id", "person_id", "service_item_id", "cpt4_code_id",
	"quantity", "unit_price", "amt", "pat_amt",
	"begin_date_of_service", "end_date_of_service", "status",
	"created_by", "create_timestamp", "modified_by", "modify_timestamp",
	"row_timestamp",
}

// dataColumns are the columns written at the source; the source's trigger
// sets row_timestamp to the writing transaction's id.
var dataColumns = Columns[:len(Columns)-1]

// row is one synthetic claim line. Amounts are scaled by 100 (numeric(19,2)).
type row struct {
	id, person               [16]byte
	practice                 string
	serviceItem, cpt4        string
	quantity, unitPrice      int64
	amt, patAmt              int64
	beginDOS, endDOS, status string
	createdBy, modifiedBy    int32
	createTS, modifyTS       int64 // microseconds since 2000-01-01, whole 10 ms
	version                  int   // 0: as inserted; 1: after the benchmark's update
}

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func mix(i int) uint64 { return uint64(i)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019 }

// genID returns claim line i's key (RFC 4122 byte order, a version 4 UUID).
// Its first six bytes and its last six are both i+1 (big-endian), so that
// the keys sort by i in PostgreSQL's uuid order (bytewise) and in SQL
// Server's uniqueidentifier order (bytes 10-15 first, PITFALLS.md P12)
// alike: both sources serve the rows in the same order.
func genID(i int) [16]byte {
	var id [16]byte
	n, x := uint64(i)+1, mix(i)
	put48(id[0:6], n)
	id[6] = 0x40 | byte(x)&0x0f
	id[7] = byte(x >> 8)
	id[8] = 0x80 | byte(x>>16)&0x3f
	id[9] = byte(x >> 24)
	put48(id[10:16], n)
	return id
}

func put48(b []byte, v uint64) {
	for k := 5; k >= 0; k-- {
		b[k] = byte(v)
		v >>= 8
	}
}

// genRow returns claim line i; version 1 is the same line after the update
// the incremental scenarios apply at the source (updateSQL).
func genRow(i int, version int) row {
	x := mix(i)
	r := row{version: version, id: genID(i)}
	binary.BigEndian.PutUint64(r.person[:8], x>>7)
	binary.BigEndian.PutUint64(r.person[8:], uint64(i%50000))
	r.practice = fmt.Sprintf("%04d", x%40)
	r.serviceItem = "SVC" + strconv.Itoa(int(x%9000))
	r.cpt4 = strconv.Itoa(int(99000 + x%1000))
	r.quantity = int64(100 * (1 + x%3))
	r.unitPrice = int64(x % 50000)
	r.amt = r.quantity * r.unitPrice / 100
	r.patAmt = r.amt / 5
	day := pgEpoch.AddDate(20, 0, int(x%2000))
	r.beginDOS = day.Format("20060102")
	r.endDOS = day.AddDate(0, 0, int(x%3)).Format("20060102")
	r.status = "A"
	r.createdBy = int32(i)
	r.modifiedBy = int32(x % 500)
	// Whole 10 ms: a value SQL Server's datetime (1/300 s ticks) holds
	// exactly, so that both sources serve the same instants.
	r.createTS = int64(day.Sub(pgEpoch)/time.Microsecond) + int64(x%8640000)*10000
	r.modifyTS = r.createTS
	if version == 1 {
		r.amt += 100
		r.status = "U"
		r.modifiedBy++
		r.modifyTS += int64(24 * time.Hour / time.Microsecond)
	}
	return r
}

// updateSQL turns rows with created_by in [$1, $2) into version 1 at the
// source (created_by is the row's index).
const updateSQL = `UPDATE dbo.charges SET amt = amt + 1.00, status = 'U', modified_by = modified_by + 1,
	modify_timestamp = modify_timestamp + interval '1 day' WHERE created_by >= $1 AND created_by < $2`

// copyWriter writes PostgreSQL's binary COPY format.
type copyWriter struct {
	w     *bufio.Writer
	bytes int64 // tuple bytes written
	buf   []byte
}

func newCopyWriter(w io.Writer) *copyWriter {
	cw := &copyWriter{w: bufio.NewWriterSize(w, 1<<16)}
	cw.w.WriteString("PGCOPY\n\xff\r\n\x00")
	cw.w.Write(make([]byte, 8)) // flags, header extension length
	return cw
}

// writeRow writes r's data columns, and its row version when withVersion.
func (cw *copyWriter) writeRow(r *row, withVersion bool) {
	b := cw.buf[:0]
	n := len(dataColumns)
	if withVersion {
		n++
	}
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	field := func(v []byte) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	text := func(s string) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	i32 := func(v int32) {
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	i64 := func(v int64) {
		b = binary.BigEndian.AppendUint32(b, 8)
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	num := func(v int64) {
		at := len(b)
		b = append(b, 0, 0, 0, 0)
		b = appendNumeric2(b, v)
		binary.BigEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	}
	field(r.id[:])
	text(r.practice)
	field(r.person[:])
	text(r.serviceItem)
	text(r.cpt4)
	num(r.quantity)
	num(r.unitPrice)
	num(r.amt)
	num(r.patAmt)
	text(r.beginDOS)
	text(r.endDOS)
	text(r.status)
	i32(r.createdBy)
	i64(r.createTS)
	i32(r.modifiedBy)
	i64(r.modifyTS)
	if withVersion {
		i64(int64(1 + r.version))
	}
	cw.buf = b
	cw.bytes += int64(len(b))
	cw.w.Write(b)
}

func (cw *copyWriter) close() error {
	cw.w.Write([]byte{0xff, 0xff})
	return cw.w.Flush()
}

// appendNumeric2 appends the binary numeric of v/100 with dscale 2.
func appendNumeric2(b []byte, v int64) []byte {
	var sign uint16
	u := uint64(v)
	if v < 0 {
		sign, u = 0x4000, uint64(-v)
	}
	var groups [8]uint16 // least significant first: fraction group, then integer groups
	n := 0
	groups[n] = uint16(u%100) * 100
	n++
	for ip := u / 100; ip > 0; ip /= 10000 {
		groups[n] = uint16(ip % 10000)
		n++
	}
	weight := n - 2 // weight of the most significant integer group
	lo := 0         // drop trailing zero groups
	for lo < n && groups[lo] == 0 {
		lo++
	}
	if lo == n { // zero
		return append(b, 0, 0, 0, 0, 0, 0, 0, 2)
	}
	hi := n // drop leading zero groups
	for groups[hi-1] == 0 {
		hi--
		weight--
	}
	b = binary.BigEndian.AppendUint16(b, uint16(hi-lo))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(weight)))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, 2)
	for g := hi - 1; g >= lo; g-- {
		b = binary.BigEndian.AppendUint16(b, groups[g])
	}
	return b
}

// copyRows streams rows gen(0..n-1) into table with binary COPY and returns
// the tuple bytes sent.
func copyRows(ctx context.Context, conn *pgconn.PgConn, table pgx.Identifier, withVersion bool, n int, gen func(k int) row) (int64, error) {
	cols := dataColumns
	if withVersion {
		cols = Columns
	}
	list := ""
	for i, c := range cols {
		if i > 0 {
			list += ", "
		}
		list += pgx.Identifier{c}.Sanitize()
	}
	pr, pw := io.Pipe()
	done := make(chan int64, 1)
	go func() {
		cw := newCopyWriter(pw)
		for k := range n {
			r := gen(k)
			cw.writeRow(&r, withVersion)
		}
		pw.CloseWithError(cw.close())
		done <- cw.bytes
	}()
	_, err := conn.CopyFrom(ctx, pr, "COPY "+table.Sanitize()+" ("+list+") FROM STDIN BINARY")
	pr.CloseWithError(io.ErrClosedPipe) // unblock the writer if COPY failed early
	bytes := <-done
	if err != nil {
		return 0, fmt.Errorf("copy into %s: %w", table.Sanitize(), err)
	}
	return bytes, nil
}
