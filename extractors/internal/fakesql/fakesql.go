// Package fakesql is an in-process database/sql driver for tests of the
// extractors' SQL Server path, where no SQL Server runs: it records every
// statement with its arguments exactly as the extractor bound them (their Go
// types included, e.g. mssql.VarChar, mssql.UniqueIdentifier), and answers
// from a script with values shaped as go-mssqldb returns them.
package fakesql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Result is a scripted answer: column names and rows of driver values.
type Result struct {
	Columns []string
	Rows    [][]driver.Value
}

// Script answers one statement.
type Script func(query string, args []any) (Result, error)

// Call is one recorded statement.
type Call struct {
	Query string
	Args  []any
}

// DB is a fake database.
type DB struct {
	mu     sync.Mutex
	script Script
	calls  []Call
}

// Open returns a *sql.DB answering by script, and its recorder.
func Open(script Script) (*sql.DB, *DB) {
	f := &DB{script: script}
	return sql.OpenDB(connector{f}), f
}

// Calls returns the statements run so far.
func (f *DB) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Transcript renders the calls for a golden file: each query, then each
// argument with its Go type and value.
func (f *DB) Transcript() string {
	var b strings.Builder
	for i, c := range f.Calls() {
		fmt.Fprintf(&b, "-- statement %d\n%s\n", i+1, c.Query)
		for j, a := range c.Args {
			fmt.Fprintf(&b, "--   @p%d %T %s\n", j+1, a, render(a))
		}
	}
	return b.String()
}

func render(a any) string {
	switch x := a.(type) {
	case []byte:
		return "0x" + strings.ToUpper(hex.EncodeToString(x))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case fmt.Stringer:
		return x.String()
	case string:
		return fmt.Sprintf("%q", x)
	}
	v := reflect.ValueOf(a)
	switch {
	case v.Kind() == reflect.String:
		return fmt.Sprintf("%q", v.String())
	case v.IsValid() && v.Type().ConvertibleTo(timeType):
		return render(v.Convert(timeType).Interface())
	}
	return fmt.Sprintf("%v", a)
}

var timeType = reflect.TypeFor[time.Time]()

type connector struct{ f *DB }

func (c connector) Connect(context.Context) (driver.Conn, error) { return conn(c), nil }
func (c connector) Driver() driver.Driver                        { return drv{} }

type drv struct{}

func (drv) Open(string) (driver.Conn, error) { return nil, errors.New("fakesql: use Open") }

type conn struct{ f *DB }

func (conn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("fakesql: no prepare") }
func (conn) Close() error                        { return nil }
func (conn) Begin() (driver.Tx, error)           { return nil, errors.New("fakesql: no transactions") }

// CheckNamedValue keeps every argument as the caller bound it, so that the
// transcript shows the driver types the extractor chose.
func (conn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c conn) QueryContext(_ context.Context, query string, nv []driver.NamedValue) (driver.Rows, error) {
	args := make([]any, len(nv))
	for i, v := range nv {
		args[i] = v.Value
	}
	c.f.mu.Lock()
	c.f.calls = append(c.f.calls, Call{Query: query, Args: args})
	c.f.mu.Unlock()
	res, err := c.f.script(query, args)
	if err != nil {
		return nil, err
	}
	return &rows{res: res}, nil
}

type rows struct {
	res Result
	i   int
}

func (r *rows) Columns() []string { return r.res.Columns }
func (r *rows) Close() error      { return nil }

func (r *rows) Next(dest []driver.Value) error {
	if r.i >= len(r.res.Rows) {
		return io.EOF
	}
	copy(dest, r.res.Rows[r.i])
	r.i++
	return nil
}
