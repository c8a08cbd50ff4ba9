package mssqlmodel

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// Scalar functions and system variables.

func isDatepartFunc(name string) bool {
	switch name {
	case "datediff", "datediff_big", "dateadd", "datepart", "datename":
		return true
	}
	return false
}

// funcType checks a call's arguments and returns its type.
func (x *exec) funcType(f *Func) (schemas.Type, error) {
	args := func(lo, hi int) error {
		if len(f.Args) < lo || len(f.Args) > hi || (f.Star && f.Name != "count" && f.Name != "count_big") {
			return sqlError(174, 15, "The %s function requires %d argument(s).", f.Name, lo)
		}
		return nil
	}
	var t schemas.Type
	var err error
	switch f.Name {
	case "min_active_rowversion":
		t, err = binaryT(8), args(0, 0)
	case "change_tracking_current_version":
		t, err = tBigint, args(0, 0)
	case "change_tracking_min_valid_version":
		t, err = tBigint, args(1, 1)
	case "object_id":
		t, err = tInt, args(1, 2)
	case "object_name":
		t, err = tSysname, args(1, 2)
	case "db_id":
		t, err = schemas.Type{Name: "smallint"}, args(0, 1)
	case "db_name":
		t, err = tSysname, args(0, 1)
	case "user_name", "suser_name", "suser_sname", "original_login", "current_user", "system_user":
		t, err = tSysname, args(0, 1)
	case "has_perms_by_name":
		t, err = tInt, args(3, 5)
	case "is_rolemember", "is_member":
		t, err = tInt, args(1, 2)
	case "serverproperty":
		t, err = tVariant, args(1, 1)
	case "sys.fn_cdc_get_min_lsn":
		t, err = tLSN, args(1, 1)
	case "sys.fn_cdc_get_max_lsn":
		t, err = tLSN, args(0, 0)
	case "col_length":
		t, err = tSmallint, args(2, 2)
	case "datediff":
		t, err = tInt, args(3, 3)
	case "datediff_big":
		t, err = tBigint, args(3, 3)
	case "dateadd":
		if err = args(3, 3); err == nil {
			t = x.types[f.Args[2]]
			if familyOf(t) == famString {
				t = tDatetime
			}
		}
	case "getdate", "getutcdate", "current_timestamp":
		t, err = tDatetime, args(0, 0)
	case "sysdatetime", "sysutcdatetime":
		t, err = tDatetime2, args(0, 0)
	case "sysdatetimeoffset":
		t, err = tDTO, args(0, 0)
	case "isnull":
		if err = args(2, 2); err == nil {
			t = x.types[f.Args[0]]
			if l, ok := f.Args[0].(*Literal); ok && l.Value == nil {
				t = x.types[f.Args[1]]
			}
		}
	case "coalesce":
		if err = args(1, 64); err == nil {
			t = x.resultType(f.Args)
		}
	case "max", "min":
		if err = args(1, 1); err == nil {
			t = x.types[f.Args[0]]
		}
	case "count":
		t = tInt
		if !f.Star {
			err = args(1, 1)
		}
	case "count_big":
		t = tBigint
		if !f.Star {
			err = args(1, 1)
		}
	case "sum", "avg":
		if err = args(1, 1); err == nil {
			t = x.types[f.Args[0]]
			switch familyOf(t) {
			case famInt, famBit:
				t = tInt
				if x.types[f.Args[0]].Name == "bigint" {
					t = tBigint
				}
			case famDecimal:
				t = schemas.Type{Name: "numeric", Precision: 38, Scale: decimalScale(t)}
				if f.Name == "avg" {
					t.Scale = max(6, t.Scale)
				}
			case famFloat:
				t = tFloat
			default:
				err = sqlError(8117, 16, "Operand data type %s is invalid for %s operator.", typeText(t), f.Name)
			}
		}
	case "len", "datalength":
		t, err = tInt, args(1, 1)
	case "upper", "lower", "ltrim", "rtrim", "trim":
		if err = args(1, 1); err == nil {
			t = x.types[f.Args[0]]
		}
	default:
		return schemas.Type{}, notModelled("function %s", f.Name)
	}
	return t, err
}

func (x *exec) args(f *Func, en *env) ([]any, error) {
	out := make([]any, len(f.Args))
	for i, a := range f.Args {
		if isDatepartFunc(f.Name) && i == 0 {
			continue
		}
		v, err := x.eval(a, en)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// text converts an argument to a string (NULL stays nil).
func (x *exec) text(f *Func, vals []any, i int) (any, error) {
	if i >= len(vals) || vals[i] == nil {
		return nil, nil
	}
	return convert(vals[i], x.types[f.Args[i]], nvarchar(4000), false)
}

func (x *exec) evalFunc(f *Func, en *env) (any, error) {
	if f.Name == "isnull" || f.Name == "coalesce" {
		t := x.types[f]
		for _, a := range f.Args {
			v, err := x.eval(a, en)
			if err != nil {
				return nil, err
			}
			if v != nil {
				return convert(v, x.types[a], t, false)
			}
		}
		return nil, nil
	}
	vals, err := x.args(f, en)
	if err != nil {
		return nil, err
	}
	m, db := x.m, x.db
	switch f.Name {
	case "min_active_rowversion":
		return binary.BigEndian.AppendUint64(nil, m.minActiveRowVersion()), nil
	case "change_tracking_current_version":
		if !db.ctEnabled {
			return nil, nil
		}
		return db.ctVersion, nil
	case "change_tracking_min_valid_version":
		id, err := convert(vals[0], x.types[f.Args[0]], tInt, false)
		if err != nil || id == nil {
			return nil, err
		}
		ts := x.tableByID(int(id.(int64)))
		if ts == nil || ts.ct == nil || !db.ctEnabled || !m.may(x.login, "VIEW CHANGE TRACKING", ts.def.schema, ts.def.name) {
			return nil, nil
		}
		return ts.ct.minValid, nil
	case "object_id":
		name, err := x.text(f, vals, 0)
		if err != nil || name == nil {
			return nil, err
		}
		kind := "U"
		if len(vals) > 1 {
			k, err := x.text(f, vals, 1)
			if err != nil || k == nil {
				return nil, err
			}
			kind = strings.ToUpper(strings.TrimSpace(k.(string)))
		}
		id := x.objectID(name.(string), len(vals) > 1, kind)
		if id == 0 {
			return nil, nil
		}
		return int64(id), nil
	case "object_name":
		id, err := convert(vals[0], x.types[f.Args[0]], tInt, false)
		if err != nil || id == nil {
			return nil, err
		}
		if ts := x.tableByID(int(id.(int64))); ts != nil && m.visible(x.login, ts.def.schema, ts.def.name) {
			return ts.def.name, nil
		}
		return nil, nil
	case "db_id":
		if len(vals) == 0 {
			return int64(5), nil
		}
		name, err := x.text(f, vals, 0)
		if err != nil || name == nil {
			return nil, err
		}
		for _, d := range x.databases() {
			if strings.EqualFold(d.name, name.(string)) {
				return int64(d.id), nil
			}
		}
		return nil, nil
	case "db_name":
		if len(vals) == 0 {
			return m.opts.Database, nil
		}
		id, err := convert(vals[0], x.types[f.Args[0]], tInt, false)
		if err != nil || id == nil {
			return nil, err
		}
		for _, d := range x.databases() {
			if int64(d.id) == id.(int64) {
				return d.name, nil
			}
		}
		return nil, nil
	case "user_name", "current_user":
		if len(vals) > 0 {
			return nil, notModelled("USER_NAME(id)")
		}
		return m.userName(x.login), nil
	case "suser_name", "suser_sname", "original_login", "system_user":
		return x.login, nil
	case "has_perms_by_name":
		return x.hasPermsByName(f, vals)
	case "is_rolemember", "is_member":
		role, err := x.text(f, vals, 0)
		if err != nil || role == nil {
			return nil, err
		}
		login := x.login
		if len(vals) > 1 {
			p, err := x.text(f, vals, 1)
			if err != nil || p == nil {
				return nil, err
			}
			login = p.(string)
		}
		if _, ok := m.principals[strings.ToLower(role.(string))]; !ok || !m.principals[strings.ToLower(role.(string))].role {
			return nil, nil
		}
		if strings.EqualFold(role.(string), "public") || m.isMember(login, role.(string)) {
			return int64(1), nil
		}
		return int64(0), nil
	case "serverproperty":
		p, err := x.text(f, vals, 0)
		if err != nil || p == nil {
			return nil, err
		}
		return x.serverProperty(p.(string)), nil
	case "sys.fn_cdc_get_min_lsn":
		name, err := x.text(f, vals, 0)
		if err != nil {
			return nil, err
		}
		zero := make([]byte, 10)
		if name == nil {
			return zero, nil
		}
		in := m.instanceLocked(db, name.(string))
		if in == nil {
			return zero, nil
		}
		ts := x.tableByID(in.table)
		if ts == nil || !m.may(x.login, "SELECT", ts.def.schema, ts.def.name) {
			return zero, nil
		}
		// A caller outside the instance's gating role is not authorized
		// either: the function answers zero, not an error.
		if in.role != "" && !m.isOwner(x.login) && !m.isMember(x.login, in.role) {
			return zero, nil
		}
		return LSN(in.start), nil
	case "sys.fn_cdc_get_max_lsn":
		if b := db.maxLSN(); b != nil {
			return b, nil
		}
		return nil, nil
	case "col_length":
		table, err := x.text(f, vals, 0)
		if err != nil || table == nil {
			return nil, err
		}
		col, err := x.text(f, vals, 1)
		if err != nil || col == nil {
			return nil, err
		}
		return x.colLength(table.(string), col.(string)), nil
	case "datediff", "datediff_big":
		return x.dateDiff(f, vals)
	case "dateadd":
		return x.dateAdd(f, vals)
	case "getdate", "current_timestamp":
		return roundDatetime(m.localNow()), nil
	case "getutcdate":
		return roundDatetime(wallUTC(m.now.UTC())), nil
	case "sysdatetime":
		return roundFraction(m.localNow(), 7), nil
	case "sysutcdatetime":
		return roundFraction(wallUTC(m.now.UTC()), 7), nil
	case "sysdatetimeoffset":
		return roundFraction(m.now.In(m.opts.ServerZone), 7), nil
	case "len":
		s, err := x.text(f, vals, 0)
		if err != nil || s == nil {
			return nil, err
		}
		return int64(len([]rune(strings.TrimRight(s.(string), " ")))), nil
	case "datalength":
		if vals[0] == nil {
			return nil, nil
		}
		switch v := vals[0].(type) {
		case []byte:
			return int64(len(v)), nil
		case string:
			if isUnicode(x.types[f.Args[0]]) {
				return int64(2 * len([]rune(v))), nil
			}
			return int64(len([]rune(v))), nil
		}
		return int64(colBytes(x.types[f.Args[0]])), nil
	case "upper", "lower", "ltrim", "rtrim", "trim":
		s, ok := vals[0].(string)
		if !ok {
			return vals[0], nil
		}
		switch f.Name {
		case "upper":
			return strings.ToUpper(s), nil
		case "lower":
			return strings.ToLower(s), nil
		case "ltrim":
			return strings.TrimLeft(s, " "), nil
		case "rtrim":
			return strings.TrimRight(s, " "), nil
		}
		return strings.Trim(s, " "), nil
	}
	return nil, notModelled("function %s", f.Name)
}

func sysVarType(name string) (schemas.Type, error) {
	switch strings.ToLower(name) {
	case "@@dbts":
		return varbinaryT(8), nil
	case "@@version":
		return nvarchar(300), nil
	case "@@spid":
		return tSmallint, nil
	case "@@servername", "@@servicename":
		return tSysname, nil
	case "@@trancount", "@@rowcount", "@@error":
		return tInt, nil
	}
	return schemas.Type{}, notModelled("system variable %s", name)
}

func (x *exec) sysVar(name string) (any, error) {
	switch strings.ToLower(name) {
	case "@@dbts":
		return binary.BigEndian.AppendUint64(nil, x.m.dbts), nil
	case "@@version":
		return "Microsoft SQL Server 2022 (RTM-CU12) (KB5033663) - " + x.m.opts.ProductVersion + " (X64) \n\t" +
			x.m.opts.Edition + " on Linux (mssqlmodel)", nil
	case "@@spid":
		if x.sess != nil {
			return int64(x.sess.ID), nil
		}
		return int64(51), nil
	case "@@servername", "@@servicename":
		if x.sess != nil && x.sess.ServerName != "" {
			return x.sess.ServerName, nil
		}
		return "MSSQLSERVER", nil
	case "@@trancount":
		if x.sess != nil && x.sess.InTransaction {
			return int64(1), nil
		}
		return int64(0), nil
	case "@@rowcount", "@@error":
		return int64(0), nil
	}
	return nil, notModelled("system variable %s", name)
}

func (x *exec) serverProperty(p string) any {
	o := x.m.opts
	s := func(v string) any { return tdstest.Variant{Type: nvarchar(128), Value: v} }
	switch strings.ToLower(p) {
	case "productversion":
		return s(o.ProductVersion)
	case "edition":
		return s(o.Edition)
	case "engineedition":
		return tdstest.Variant{Type: tInt, Value: int64(3)}
	case "productlevel":
		return s("RTM")
	case "productmajorversion":
		major, _, _ := strings.Cut(o.ProductVersion, ".")
		return s(major)
	case "servername", "machinename":
		return s("MSSQLSERVER")
	case "collation":
		return s("SQL_Latin1_General_CP1_CI_AS")
	case "ishadrenabled":
		return tdstest.Variant{Type: tInt, Value: int64(0)}
	}
	return nil
}

// tableByID finds a user table by object id.
func (x *exec) tableByID(id int) *tableState {
	for _, ts := range x.db.tables {
		if ts.def.objectID == id {
			return ts
		}
	}
	return nil
}

// objectID is OBJECT_ID(name [, type]): user tables the login can see and
// the cdc schema's tables; NULL (0) otherwise.
func (x *exec) objectID(name string, typed bool, kind string) int {
	parts := splitObjectName(name)
	if len(parts) > 3 || len(parts) == 0 {
		return 0
	}
	if len(parts) == 3 && parts[0] != "" && !strings.EqualFold(parts[0], x.m.opts.Database) {
		return 0
	}
	schema, obj := "dbo", parts[len(parts)-1]
	if len(parts) >= 2 && parts[len(parts)-2] != "" {
		schema = parts[len(parts)-2]
	}
	if typed && kind != "U" {
		return 0
	}
	if ts, ok := x.db.tables[tableKey(schema, obj)]; ok {
		if !x.m.visible(x.login, schema, obj) {
			return 0
		}
		return ts.def.objectID
	}
	if strings.EqualFold(schema, "cdc") && x.db.cdcEnabled && x.m.visible(x.login, "cdc", obj) {
		if id, ok := cdcMetaIDs[strings.ToLower(obj)]; ok {
			return id
		}
		for _, in := range x.db.instances {
			if strings.EqualFold(in.name+"_CT", obj) {
				return in.objectID
			}
		}
	}
	return 0
}

var cdcMetaIDs = map[string]int{"change_tables": 901578250, "captured_columns": 933578364, "lsn_time_mapping": 965578478}

// colLength is COL_LENGTH: the column's length in bytes, NULL when the
// table or the column does not exist or cannot be seen.
func (x *exec) colLength(table, col string) any {
	parts := splitObjectName(table)
	schema, obj := "dbo", parts[len(parts)-1]
	if len(parts) >= 2 {
		schema = parts[len(parts)-2]
	}
	cols, ok := x.objectColumns(schema, obj)
	if !ok {
		return nil
	}
	for _, c := range cols {
		if strings.EqualFold(c.name, col) {
			return int64(colBytes(c.typ))
		}
	}
	return nil
}

// objectColumns returns the columns of a table or cdc table the login can
// see.
func (x *exec) objectColumns(schema, obj string) ([]colMeta, bool) {
	if ts, ok := x.db.tables[tableKey(schema, obj)]; ok {
		if !x.m.visible(x.login, schema, obj) {
			return nil, false
		}
		return tableCols(ts.def, obj), true
	}
	if strings.EqualFold(schema, "cdc") && x.db.cdcEnabled && x.m.visible(x.login, "cdc", obj) {
		for _, in := range x.db.instances {
			if strings.EqualFold(in.name+"_CT", obj) {
				return in.columns(obj), true
			}
		}
	}
	return nil, false
}

// colBytes is a type's max_length.
func colBytes(t schemas.Type) int {
	switch t.Name {
	case "bit", "tinyint":
		return 1
	case "smallint":
		return 2
	case "int", "real", "smallmoney", "smalldatetime":
		return 4
	case "bigint", "float", "money", "datetime", "rowversion":
		return 8
	case "date":
		return 3
	case "uniqueidentifier", "text", "ntext", "image":
		return 16
	case "decimal", "numeric":
		p, _ := decimalPS(t)
		switch {
		case p <= 9:
			return 5
		case p <= 19:
			return 9
		case p <= 28:
			return 13
		}
		return 17
	case "time":
		return [8]int{3, 3, 3, 4, 4, 5, 5, 5}[fraction(t)]
	case "datetime2":
		return [8]int{6, 6, 6, 7, 7, 8, 8, 8}[fraction(t)]
	case "datetimeoffset":
		return [8]int{8, 8, 8, 9, 9, 10, 10, 10}[fraction(t)]
	case "char", "varchar", "binary", "varbinary":
		return t.Length
	case "nchar", "nvarchar":
		if t.Length == schemas.Max {
			return -1
		}
		return 2 * t.Length
	case "xml":
		return -1
	case "sql_variant":
		return 8016
	}
	return 0
}

func (x *exec) hasPermsByName(f *Func, vals []any) (any, error) {
	var s [3]string
	for i := range 3 {
		v, err := x.text(f, vals, i)
		if err != nil {
			return nil, err
		}
		if v == nil {
			if i == 0 {
				s[0] = ""
				continue
			}
			return nil, nil
		}
		s[i] = v.(string)
	}
	if len(vals) > 3 {
		return nil, notModelled("HAS_PERMS_BY_NAME with a sub-securable")
	}
	perm := strings.ToUpper(strings.Join(strings.Fields(s[2]), " "))
	switch strings.ToUpper(strings.TrimSpace(s[1])) {
	case "OBJECT":
		parts := splitObjectName(s[0])
		schema, obj := "dbo", parts[len(parts)-1]
		if len(parts) >= 2 {
			schema = parts[len(parts)-2]
		}
		if _, ok := x.db.tables[tableKey(schema, obj)]; !ok {
			return nil, nil
		}
		return boolInt(x.m.may(x.login, perm, schema, obj)), nil
	case "SCHEMA":
		name := strings.Trim(strings.TrimSpace(s[0]), "[]")
		if !x.schemaExists(name) {
			return nil, nil
		}
		return boolInt(x.m.may(x.login, perm, name, "")), nil
	case "DATABASE":
		if s[0] != "" && !strings.EqualFold(s[0], x.m.opts.Database) {
			return nil, notModelled("HAS_PERMS_BY_NAME on another database")
		}
		return boolInt(x.m.may(x.login, perm, "", "")), nil
	}
	return nil, notModelled("HAS_PERMS_BY_NAME class %s", s[1])
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (x *exec) schemaExists(name string) bool {
	for _, s := range x.schemas() {
		if strings.EqualFold(s.name, name) {
			return true
		}
	}
	return false
}

// dateparts: the units DATEDIFF and DATEADD take.
func datepart(e Expr) (string, error) {
	ref, ok := e.(*ColumnRef)
	if !ok || len(ref.Parts) != 1 {
		return "", sqlError(155, 15, "'%v' is not a recognized datediff option.", e)
	}
	switch p := strings.ToLower(ref.Parts[0]); p {
	case "year", "yy", "yyyy":
		return "year", nil
	case "month", "mm", "m":
		return "month", nil
	case "day", "dd", "d", "dayofyear", "dy", "y":
		return "day", nil
	case "week", "wk", "ww":
		return "week", nil
	case "hour", "hh":
		return "hour", nil
	case "minute", "mi", "n":
		return "minute", nil
	case "second", "ss", "s":
		return "second", nil
	case "millisecond", "ms":
		return "millisecond", nil
	case "microsecond", "mcs":
		return "microsecond", nil
	case "nanosecond", "ns":
		return "nanosecond", nil
	default:
		return "", sqlError(155, 15, "'%s' is not a recognized datediff option.", p)
	}
}

// dateDiff counts the boundaries of the unit crossed between two values,
// as DATEDIFF does (not the elapsed time).
func (x *exec) dateDiff(f *Func, vals []any) (any, error) {
	part, err := datepart(f.Args[0])
	if err != nil {
		return nil, err
	}
	if vals[1] == nil || vals[2] == nil {
		return nil, nil
	}
	a, err := convert(vals[1], x.types[f.Args[1]], tDatetime2, false)
	if err != nil {
		return nil, err
	}
	b, err := convert(vals[2], x.types[f.Args[2]], tDatetime2, false)
	if err != nil {
		return nil, err
	}
	s, e := a.(time.Time), b.(time.Time)
	var n int64
	switch part {
	case "year":
		n = int64(e.Year() - s.Year())
	case "month":
		n = int64((e.Year()-s.Year())*12 + int(e.Month()) - int(s.Month()))
	case "day":
		n = int64(dayNumber(e) - dayNumber(s))
	case "week":
		n = int64((dayNumber(e) - int(e.Weekday()) - (dayNumber(s) - int(s.Weekday()))) / 7)
	case "hour":
		n = floorDiv(e, s, time.Hour)
	case "minute":
		n = floorDiv(e, s, time.Minute)
	case "second":
		n = floorDiv(e, s, time.Second)
	case "millisecond":
		n = floorDiv(e, s, time.Millisecond)
	case "microsecond":
		n = floorDiv(e, s, time.Microsecond)
	case "nanosecond":
		n = e.Sub(s).Nanoseconds()
	}
	if f.Name == "datediff" && (n > 2147483647 || n < -2147483648) {
		return nil, sqlError(535, 16, "The datediff function resulted in an overflow. The number of dateparts separating two date/time instances is too large. Try to use datediff with a less precise datepart.")
	}
	return n, nil
}

func dayNumber(t time.Time) int {
	return int(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// floorDiv counts unit boundaries between s and e.
func floorDiv(e, s time.Time, unit time.Duration) int64 {
	base := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	fl := func(t time.Time) int64 {
		d := t.Sub(base)
		q := int64(d / unit)
		if d < 0 && d%unit != 0 {
			q--
		}
		return q
	}
	return fl(e) - fl(s)
}

func (x *exec) dateAdd(f *Func, vals []any) (any, error) {
	part, err := datepart(f.Args[0])
	if err != nil {
		return nil, err
	}
	if vals[1] == nil || vals[2] == nil {
		return nil, nil
	}
	nv, err := convert(vals[1], x.types[f.Args[1]], tBigint, false)
	if err != nil {
		return nil, err
	}
	n := nv.(int64)
	t := x.types[f]
	v, err := convert(vals[2], x.types[f.Args[2]], t, false)
	if err != nil {
		return nil, err
	}
	d := v.(time.Time)
	switch part {
	case "year":
		d = d.AddDate(int(n), 0, 0)
	case "month":
		d = d.AddDate(0, int(n), 0)
	case "day":
		d = d.AddDate(0, 0, int(n))
	case "week":
		d = d.AddDate(0, 0, 7*int(n))
	case "hour":
		d = d.Add(time.Duration(n) * time.Hour)
	case "minute":
		d = d.Add(time.Duration(n) * time.Minute)
	case "second":
		d = d.Add(time.Duration(n) * time.Second)
	case "millisecond":
		d = d.Add(time.Duration(n) * time.Millisecond)
	case "microsecond":
		d = d.Add(time.Duration(n) * time.Microsecond)
	case "nanosecond":
		d = d.Add(time.Duration(n))
	}
	return fitTime(d, t)
}

func lsnText(n uint64) string {
	b := LSN(n)
	return fmt.Sprintf("%08x:%08x:%04x", binary.BigEndian.Uint32(b[0:4]), binary.BigEndian.Uint32(b[4:8]), binary.BigEndian.Uint16(b[8:10]))
}
