package schemas

import (
	"fmt"
	"strconv"
	"strings"
)

// Dialect names the SQL dialect a source type is spelled in.
type Dialect string

// The source dialects ehrsync reads.
const (
	SQLServer Dialect = "sqlserver"
	Postgres  Dialect = "postgres"
)

// ParseDialect returns the dialect named by s ("sqlserver" or "postgres",
// case-insensitive).
func ParseDialect(s string) (Dialect, error) {
	d := Dialect(strings.ToLower(strings.TrimSpace(s)))
	if _, ok := dialects[d]; !ok {
		return "", fmt.Errorf("unknown dialect %q (want %q or %q)", s, SQLServer, Postgres)
	}
	return d, nil
}

// Max is Type.Length for the (max) types: varchar(max), nvarchar(max),
// varbinary(max).
const Max = -1

// Type is a parsed source column type.
//
// Build Types with ParseType: in a hand-built Type, Precision 0 means
// "precision 0" (datetime2(0)), not "unspecified" (-1).
type Type struct {
	// Name is the lower-case base name as the dialect spells it, with aliases
	// resolved: SQL Server "timestamp" is "rowversion", "integer" is "int";
	// PostgreSQL "int4" is "integer", "timestamptz" is
	// "timestamp with time zone", "varchar" is "character varying".
	Name string
	// Length is the declared length of char, varchar, nchar, nvarchar,
	// binary, varbinary (and PostgreSQL character, character varying);
	// Max for (max); 0 when not given.
	Length int
	// Precision is the decimal/numeric precision, the float mantissa bits, or
	// the fractional-second digits of time, datetime2, datetimeoffset and the
	// PostgreSQL time and timestamp types. -1 means not given (the dialect's
	// default applies). It is 0 for types that take no precision.
	Precision int
	// Scale is the decimal/numeric scale (0 when not given).
	Scale int
}

// String returns the canonical text of t, which ParseType reads back to the
// same Type: "numeric(19,2)", "nvarchar(max)", "datetime2(7)",
// "timestamp(3) with time zone".
func (t Type) String() string {
	var args string
	switch k := kindOfName(t.Name); {
	case t.Length == Max:
		args = "(max)"
	case t.Length != 0:
		args = "(" + strconv.Itoa(t.Length) + ")"
	case k == kindDecimal && t.Precision >= 0:
		args = "(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	case (k == kindFloat || k == kindFraction) && t.Precision >= 0:
		args = "(" + strconv.Itoa(t.Precision) + ")"
	case k == kindUnknown && (t.Precision != 0 || t.Scale != 0):
		args = "(" + strconv.Itoa(t.Precision) + "," + strconv.Itoa(t.Scale) + ")"
	}
	for _, zone := range []string{" with time zone", " without time zone"} {
		if base, ok := strings.CutSuffix(t.Name, zone); ok {
			return base + args + zone
		}
	}
	return t.Name + args
}

// kind says which arguments a type takes.
type kind int

const (
	kindUnknown  kind = iota
	kindPlain         // no arguments
	kindDecimal       // (p) or (p,s)
	kindFloat         // (n), mantissa bits
	kindLength        // (n), or (max) where allowed
	kindFraction      // (n), fractional-second digits
)

// spec describes one canonical type name of a dialect.
type spec struct {
	kind kind
	// maxLen is the largest length for kindLength; allowMax permits (max).
	maxLen   int
	allowMax bool
	// maxPrec is the largest precision for kindDecimal and kindFraction.
	maxPrec int
}

// alias resolves a spelling to a canonical name, optionally with fixed
// arguments (sysname is nvarchar(128)).
type alias struct {
	name  string
	fixed *Type
}

var dialects = map[Dialect]struct {
	specs   map[string]spec
	aliases map[string]alias
}{
	SQLServer: {
		specs: map[string]spec{
			"bit":              {kind: kindPlain},
			"tinyint":          {kind: kindPlain},
			"smallint":         {kind: kindPlain},
			"int":              {kind: kindPlain},
			"bigint":           {kind: kindPlain},
			"decimal":          {kind: kindDecimal, maxPrec: 38},
			"numeric":          {kind: kindDecimal, maxPrec: 38},
			"money":            {kind: kindPlain},
			"smallmoney":       {kind: kindPlain},
			"float":            {kind: kindFloat},
			"real":             {kind: kindPlain},
			"char":             {kind: kindLength, maxLen: 8000},
			"varchar":          {kind: kindLength, maxLen: 8000, allowMax: true},
			"nchar":            {kind: kindLength, maxLen: 4000},
			"nvarchar":         {kind: kindLength, maxLen: 4000, allowMax: true},
			"text":             {kind: kindPlain},
			"ntext":            {kind: kindPlain},
			"uniqueidentifier": {kind: kindPlain},
			"date":             {kind: kindPlain},
			"time":             {kind: kindFraction, maxPrec: 7},
			"datetime":         {kind: kindPlain},
			"datetime2":        {kind: kindFraction, maxPrec: 7},
			"smalldatetime":    {kind: kindPlain},
			"datetimeoffset":   {kind: kindFraction, maxPrec: 7},
			"binary":           {kind: kindLength, maxLen: 8000},
			"varbinary":        {kind: kindLength, maxLen: 8000, allowMax: true},
			"image":            {kind: kindPlain},
			"rowversion":       {kind: kindPlain},
			"xml":              {kind: kindPlain},
			"sql_variant":      {kind: kindPlain},
			"hierarchyid":      {kind: kindPlain},
			"geography":        {kind: kindPlain},
			"geometry":         {kind: kindPlain},
		},
		aliases: map[string]alias{
			// In SQL Server, timestamp is the deprecated synonym of
			// rowversion, not a date type.
			"timestamp":        {name: "rowversion"},
			"integer":          {name: "int"},
			"dec":              {name: "decimal"},
			"double precision": {name: "float", fixed: &Type{Name: "float", Precision: 53}},
			"sysname":          {name: "nvarchar", fixed: &Type{Name: "nvarchar", Length: 128}},
		},
	},
	Postgres: {
		specs: map[string]spec{
			"boolean":                     {kind: kindPlain},
			"smallint":                    {kind: kindPlain},
			"integer":                     {kind: kindPlain},
			"bigint":                      {kind: kindPlain},
			"numeric":                     {kind: kindDecimal, maxPrec: 1000},
			"real":                        {kind: kindPlain},
			"double precision":            {kind: kindPlain},
			"text":                        {kind: kindPlain},
			"character varying":           {kind: kindLength, maxLen: 10485760},
			"character":                   {kind: kindLength, maxLen: 10485760},
			"uuid":                        {kind: kindPlain},
			"date":                        {kind: kindPlain},
			"time without time zone":      {kind: kindFraction, maxPrec: 6},
			"time with time zone":         {kind: kindFraction, maxPrec: 6},
			"timestamp without time zone": {kind: kindFraction, maxPrec: 6},
			"timestamp with time zone":    {kind: kindFraction, maxPrec: 6},
			"interval":                    {kind: kindFraction, maxPrec: 6},
			"bytea":                       {kind: kindPlain},
			"json":                        {kind: kindPlain},
			"jsonb":                       {kind: kindPlain},
		},
		aliases: map[string]alias{
			"bool":        {name: "boolean"},
			"int2":        {name: "smallint"},
			"smallserial": {name: "smallint"},
			"serial2":     {name: "smallint"},
			"int":         {name: "integer"},
			"int4":        {name: "integer"},
			"serial":      {name: "integer"},
			"serial4":     {name: "integer"},
			"int8":        {name: "bigint"},
			"bigserial":   {name: "bigint"},
			"serial8":     {name: "bigint"},
			"decimal":     {name: "numeric"},
			"float4":      {name: "real"},
			"float8":      {name: "double precision"},
			// float and float(n) are resolved in parsePostgresFloat.
			"varchar":     {name: "character varying"},
			"char":        {name: "character"},
			"bpchar":      {name: "character"},
			"time":        {name: "time without time zone"},
			"timetz":      {name: "time with time zone"},
			"timestamp":   {name: "timestamp without time zone"},
			"timestamptz": {name: "timestamp with time zone"},
		},
	},
}

// kindOfName returns the argument kind of a canonical name in any dialect.
// Canonical names shared by the dialects have the same kind in both.
func kindOfName(name string) kind {
	for _, d := range []Dialect{SQLServer, Postgres} {
		if s, ok := dialects[d].specs[name]; ok {
			return s.kind
		}
	}
	return kindUnknown
}

// ParseType parses a column type as dialect d spells it: "numeric(19,2)",
// "varchar(8)", "nvarchar(max)", "datetime2(7)", "uniqueidentifier",
// "timestamp" (SQL Server's rowversion), "character varying(20)",
// "timestamptz(3)". Case and spacing do not matter. Aliases resolve to the
// canonical name (see Type.Name); arguments are checked against the
// dialect's limits.
func ParseType(d Dialect, s string) (Type, error) {
	t, err := parseType(d, s)
	if err != nil {
		return Type{}, fmt.Errorf("%s type %q: %w", d, s, err)
	}
	return t, nil
}

func parseType(d Dialect, s string) (Type, error) {
	dia, ok := dialects[d]
	if !ok {
		return Type{}, fmt.Errorf("unknown dialect %q", string(d))
	}
	text := strings.ToLower(strings.Join(strings.Fields(s), " "))
	if text == "" {
		return Type{}, fmt.Errorf("empty type")
	}
	base, args, hasArgs, err := splitType(d, text)
	if err != nil {
		return Type{}, err
	}
	if d == Postgres && base == "float" {
		return parsePostgresFloat(args, hasArgs)
	}
	name := base
	var fixed *Type
	if a, ok := dia.aliases[base]; ok {
		name, fixed = a.name, a.fixed
	}
	sp, ok := dia.specs[name]
	if !ok {
		return Type{}, ErrUnknownType
	}
	if fixed != nil {
		if hasArgs {
			return Type{}, fmt.Errorf("%s takes no arguments", base)
		}
		return *fixed, nil
	}
	t := Type{Name: name}
	switch sp.kind {
	case kindPlain:
		if hasArgs {
			return Type{}, fmt.Errorf("%s takes no arguments", base)
		}
	case kindDecimal:
		t.Precision = -1
		if hasArgs {
			nums, err := parseInts(args, 1, 2)
			if err != nil {
				return Type{}, err
			}
			if nums[0] < 1 {
				return Type{}, fmt.Errorf("precision %d out of range 1..%d", nums[0], sp.maxPrec)
			}
			t.Precision = nums[0]
			if len(nums) == 2 {
				t.Scale = nums[1]
			}
		}
	case kindFloat, kindFraction:
		t.Precision = -1
		if hasArgs {
			nums, err := parseInts(args, 1, 1)
			if err != nil {
				return Type{}, err
			}
			if nums[0] < 0 {
				return Type{}, fmt.Errorf("precision %d is negative", nums[0])
			}
			t.Precision = nums[0]
		}
	case kindLength:
		if hasArgs {
			if args == "max" {
				if !sp.allowMax {
					return Type{}, fmt.Errorf("%s does not take (max)", name)
				}
				t.Length = Max
				break
			}
			nums, err := parseInts(args, 1, 1)
			if err != nil {
				return Type{}, err
			}
			t.Length = nums[0]
			if t.Length < 1 {
				return Type{}, fmt.Errorf("length %d out of range 1..%d", t.Length, sp.maxLen)
			}
		}
	}
	if err := checkType(d, t); err != nil {
		return Type{}, err
	}
	return t, nil
}

// splitType splits "name(args) suffix" into the base name (with a
// PostgreSQL "with[out] time zone" suffix joined on) and the argument text.
func splitType(d Dialect, text string) (base, args string, hasArgs bool, err error) {
	open := strings.IndexByte(text, '(')
	if open < 0 {
		if strings.ContainsAny(text, ")[]") && d == Postgres {
			return "", "", false, ErrUnknownType
		}
		return trimBrackets(d, text), "", false, nil
	}
	end := strings.IndexByte(text, ')')
	if end < open {
		return "", "", false, fmt.Errorf("unbalanced parentheses")
	}
	base = trimBrackets(d, strings.TrimSpace(text[:open]))
	args = strings.ReplaceAll(text[open+1:end], " ", "")
	suffix := strings.TrimSpace(text[end+1:])
	switch {
	case suffix == "":
	case d == Postgres && (suffix == "with time zone" || suffix == "without time zone"):
		base += " " + suffix
	default:
		return "", "", false, fmt.Errorf("unexpected %q after the arguments", suffix)
	}
	if args == "" {
		return "", "", false, fmt.Errorf("empty arguments")
	}
	return base, args, true, nil
}

// trimBrackets removes SQL Server's [quoting] from a type name.
func trimBrackets(d Dialect, name string) string {
	if d == SQLServer && strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		return name[1 : len(name)-1]
	}
	return name
}

// parseInts parses between min and max comma-separated non-negative integers.
func parseInts(args string, min, max int) ([]int, error) {
	parts := strings.Split(args, ",")
	if len(parts) < min || len(parts) > max {
		if max == 1 {
			return nil, fmt.Errorf("want 1 argument, got %d", len(parts))
		}
		return nil, fmt.Errorf("want %d to %d arguments, got %d", min, max, len(parts))
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("argument %q is not an integer", p)
		}
		nums[i] = n
	}
	return nums, nil
}

// parsePostgresFloat resolves PostgreSQL float(n) the way PostgreSQL does:
// 1..24 is real, 25..53 (and bare float) is double precision.
func parsePostgresFloat(args string, hasArgs bool) (Type, error) {
	if !hasArgs {
		return Type{Name: "double precision"}, nil
	}
	nums, err := parseInts(args, 1, 1)
	if err != nil {
		return Type{}, err
	}
	switch n := nums[0]; {
	case n >= 1 && n <= 24:
		return Type{Name: "real"}, nil
	case n >= 25 && n <= 53:
		return Type{Name: "double precision"}, nil
	default:
		return Type{}, fmt.Errorf("float precision %d out of range 1..53", n)
	}
}

// checkType checks that t is a canonical type of dialect d with arguments
// inside the dialect's limits.
func checkType(d Dialect, t Type) error {
	dia, ok := dialects[d]
	if !ok {
		return fmt.Errorf("unknown dialect %q", string(d))
	}
	sp, ok := dia.specs[t.Name]
	if !ok {
		return ErrUnknownType
	}
	if sp.kind != kindLength && t.Length != 0 {
		return fmt.Errorf("%s takes no length", t.Name)
	}
	if sp.kind != kindDecimal && t.Scale != 0 {
		return fmt.Errorf("%s takes no scale", t.Name)
	}
	switch sp.kind {
	case kindPlain, kindLength:
		if t.Precision != 0 {
			return fmt.Errorf("%s takes no precision", t.Name)
		}
	}
	switch sp.kind {
	case kindDecimal:
		switch {
		case t.Precision == -1:
			if t.Scale != 0 {
				return fmt.Errorf("scale %d without a precision", t.Scale)
			}
		case t.Precision < 1 || t.Precision > sp.maxPrec:
			return fmt.Errorf("precision %d out of range 1..%d", t.Precision, sp.maxPrec)
		case d == SQLServer && (t.Scale < 0 || t.Scale > t.Precision):
			return fmt.Errorf("scale %d out of range 0..%d (the precision)", t.Scale, t.Precision)
		case d == Postgres && (t.Scale < -1000 || t.Scale > 1000):
			return fmt.Errorf("scale %d out of range -1000..1000", t.Scale)
		}
	case kindFloat:
		if t.Precision != -1 && (t.Precision < 1 || t.Precision > 53) {
			return fmt.Errorf("float precision %d out of range 1..53", t.Precision)
		}
	case kindFraction:
		if t.Precision != -1 && (t.Precision < 0 || t.Precision > sp.maxPrec) {
			return fmt.Errorf("fractional-second precision %d out of range 0..%d", t.Precision, sp.maxPrec)
		}
	case kindLength:
		switch {
		case t.Length == Max && !sp.allowMax:
			return fmt.Errorf("%s does not take (max)", t.Name)
		case t.Length == Max || t.Length == 0:
		case t.Length < 1 || t.Length > sp.maxLen:
			return fmt.Errorf("length %d out of range 1..%d", t.Length, sp.maxLen)
		}
	}
	return nil
}
