package dialect

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-sql/civil"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/schemas"
)

// Param binds v, a native value (see arrowscan.Scanner.Native: int64, bool,
// float64, string, uuid.UUID, time.Time, []byte) of column c, declared in
// dialect typeDialect, as a parameter of the column's exact type
// (PITFALLS.md P15).
//
// SQL Server: go-mssqldb sends a Go string as nvarchar, which turns a seek on
// a varchar key into a scan per chunk, so char and varchar values go as
// mssql.VarChar when they are ASCII, and otherwise as nvarchar cast to the
// column's type in the query text (go-mssqldb sends a VarChar as UTF-8
// bytes, which a server in another code page, CP1252 for NextGen, misreads); uniqueidentifier as mssql.UniqueIdentifier (a real
// uniqueidentifier parameter, converted to the wire's mixed-endian order by
// the driver, so the server compares GUIDs in its own order, P12); datetime
// as mssql.DateTime1 (1/300 s ticks, round-tripping the driver's
// millisecond reading exactly, P14); datetime2 as civil.DateTime
// (datetime2(7)); date and time as civil.Date and civil.Time;
// datetimeoffset as mssql.DateTimeOffset; integers at their own width;
// rowversion and binary as []byte. Types the driver has no exact argument
// for are cast in the query text to the column's declared type: decimals
// and money travel as their exact text (never a float, P13), smalldatetime
// as a datetime, datetime2(n), time(n) and datetimeoffset(n) at precision 7.
//
// PostgreSQL: pgx binds by the parameter type the server infers from the
// comparison, so the native value is passed as it is (uuid.UUID, time.Time
// with its wall-clock reading for timestamp, the exact text for numeric).
func (d Dialect) Param(c schemas.Column, typeDialect schemas.Dialect, v any) (Param, error) {
	if v == nil {
		return Param{}, fmt.Errorf("column %s: null key or cursor value", c.Name)
	}
	if d.name == schemas.Postgres {
		return postgresParam(c, v)
	}
	if typeDialect != schemas.SQLServer {
		return Param{}, fmt.Errorf("column %s: a SQL Server source needs sqlserver column types", c.Name)
	}
	p, err := sqlServerParam(c.Type, v)
	if err != nil {
		return Param{}, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return p, nil
}

// PracticeParam binds one organization filter value for column c (char(4)
// practice_id in NextGen).
func (d Dialect) PracticeParam(c schemas.Column, typeDialect schemas.Dialect, practice string) (Param, error) {
	return d.Param(c, typeDialect, practice)
}

var errNativeType = errors.New("unexpected native value")

func wrongNative(v any) error {
	return fmt.Errorf("%w of type %T", errNativeType, v)
}

func sqlServerParam(t schemas.Type, v any) (Param, error) {
	switch t.Name {
	case "bit":
		b, ok := v.(bool)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: b}, nil
	case "tinyint", "smallint", "int", "bigint":
		n, ok := v.(int64)
		if !ok {
			return Param{}, wrongNative(v)
		}
		switch t.Name {
		case "tinyint":
			if n < 0 || n > 255 {
				return Param{}, errors.New("tinyint out of range")
			}
			return Param{Arg: uint8(n)}, nil
		case "smallint":
			if n != int64(int16(n)) {
				return Param{}, errors.New("smallint out of range")
			}
			return Param{Arg: int16(n)}, nil
		case "int":
			if n != int64(int32(n)) {
				return Param{}, errors.New("int out of range")
			}
			return Param{Arg: int32(n)}, nil
		}
		return Param{Arg: n}, nil
	case "decimal", "numeric", "money", "smallmoney":
		s, ok := v.(string)
		if !ok {
			return Param{}, wrongNative(v)
		}
		// Decimal text is ASCII: varchar, cast to the exact column type.
		return Param{Arg: mssql.VarChar(s), Cast: t.String()}, nil
	case "float":
		f, ok := v.(float64)
		if !ok {
			return Param{}, wrongNative(v)
		}
		if t.Precision >= 1 && t.Precision <= 24 {
			return Param{Arg: float32(f)}, nil
		}
		return Param{Arg: f}, nil
	case "real":
		f, ok := v.(float64)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: float32(f)}, nil
	case "char", "varchar", "text":
		s, ok := v.(string)
		if !ok {
			return Param{}, wrongNative(v)
		}
		if isASCII(s) {
			return Param{Arg: mssql.VarChar(s)}, nil
		}
		// go-mssqldb sends a VarChar's UTF-8 bytes under the connection's
		// collation: a CP1252 server reads O’Brien as mojibake, compares
		// the wrong value and keyset resume skips rows. Send the text as
		// nvarchar, which the server converts to varchar in the database's
		// code page (the column's, for NextGen). A declared length keeps
		// the seek exact; without one, CAST would cut at 30 characters, so
		// varchar(max) it is.
		cast := "varchar(max)"
		if t.Length > 0 && t.Name != "text" {
			cast = t.String()
		}
		return Param{Arg: s, Cast: cast}, nil
	case "nchar", "nvarchar", "ntext":
		s, ok := v.(string)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: s}, nil // go-mssqldb's string is nvarchar
	case "uniqueidentifier":
		u, ok := v.(uuid.UUID)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: mssql.UniqueIdentifier(u)}, nil
	case "date":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: civil.DateOf(x)}, nil
	case "time":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: civil.TimeOf(x), Cast: castUnless7(t)}, nil
	case "datetime":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: mssql.DateTime1(x)}, nil
	case "smalldatetime":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: mssql.DateTime1(x), Cast: "smalldatetime"}, nil
	case "datetime2":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: civil.DateTimeOf(x), Cast: castUnless7(t)}, nil
	case "datetimeoffset":
		x, ok := v.(time.Time)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: mssql.DateTimeOffset(x), Cast: castUnless7(t)}, nil
	case "binary", "varbinary", "rowversion":
		b, ok := v.([]byte)
		if !ok {
			return Param{}, wrongNative(v)
		}
		return Param{Arg: b}, nil
	}
	return Param{}, fmt.Errorf("type %s cannot be a key or cursor", t)
}

// isASCII reports whether s is the same bytes in every code page SQL
// Server's varchar collations use.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// castUnless7 returns the cast for a fractional-second type whose precision
// is not the 7 digits go-mssqldb's date-time arguments carry.
func castUnless7(t schemas.Type) string {
	if t.Precision == -1 || t.Precision == 7 {
		return ""
	}
	return t.String()
}

func postgresParam(c schemas.Column, v any) (Param, error) {
	switch x := v.(type) {
	case int64, bool, float64, string, time.Time, []byte:
		return Param{Arg: x}, nil
	case uuid.UUID:
		return Param{Arg: x.String()}, nil
	}
	return Param{}, fmt.Errorf("column %s: %w", c.Name, wrongNative(v))
}
