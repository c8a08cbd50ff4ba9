package mssqlmodel

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/ehrsync/ehrsync/schemas"
)

// The T-SQL subset the model parses: a batch of DECLARE @x type = expr, ...
// and SELECT statements:
//
//	SELECT [DISTINCT] [TOP (expr) | TOP n] item, ...
//	[FROM source [[INNER | LEFT [OUTER] | CROSS] JOIN source [ON expr]] ...]
//	[WHERE expr] [ORDER BY expr [ASC | DESC], ...]
//
// where a source is a table name of up to three parts with an optional
// alias and WITH (hints), a derived table (SELECT ...) AS alias, or
// CHANGETABLE(CHANGES table, expr) AS alias; expressions have AND, OR,
// NOT, comparisons, [NOT] IN (list), [NOT] BETWEEN, IS [NOT] NULL,
// EXISTS (subquery), scalar subqueries, CAST, CONVERT, CASE, function
// calls, arithmetic, literals, @variables and [bracketed] identifiers.

// Batch is a parsed batch.
type Batch struct {
	Stmts []Stmt
}

// Stmt is a DECLARE or a SELECT.
type Stmt interface{ stmt() }

// Declare is DECLARE @a type [= expr], ...
type Declare struct {
	Vars []DeclaredVar
}

// DeclaredVar is one variable of a DECLARE.
type DeclaredVar struct {
	Name string
	Type schemas.Type
	Init Expr // nil for none
}

// Select is one SELECT statement or subquery.
type Select struct {
	Distinct bool
	Top      Expr
	Items    []SelectItem
	From     []Source // comma-separated sources, each possibly a join tree
	Where    Expr
	GroupBy  []Expr
	OrderBy  []OrderItem
}

func (*Declare) stmt() {}
func (*Select) stmt()  {}

// SelectItem is an expression with its alias, or * (Star) with an optional
// qualifier.
type SelectItem struct {
	Expr      Expr
	Alias     string
	Star      bool
	Qualifier string
}

// OrderItem is one ORDER BY key.
type OrderItem struct {
	Expr Expr
	Desc bool
}

// Source is a FROM item.
type Source interface{ source() }

// TableSource names a table or view.
type TableSource struct {
	Parts []string // [db.]schema.name or name
	Alias string
	Hints []string
}

// ChangeTableSource is CHANGETABLE(CHANGES table, version) AS alias.
type ChangeTableSource struct {
	Table   []string
	Version Expr
	Alias   string
}

// DerivedSource is (SELECT ...) AS alias.
type DerivedSource struct {
	Select *Select
	Alias  string
}

// JoinSource joins two sources.
type JoinSource struct {
	Left, Right Source
	Kind        string // "INNER", "LEFT", "CROSS"
	On          Expr
}

func (*TableSource) source()       {}
func (*ChangeTableSource) source() {}
func (*DerivedSource) source()     {}
func (*JoinSource) source()        {}

// Expr is an expression node.
type Expr interface{ expr() }

type (
	// Literal is a constant with its type.
	Literal struct {
		Value any
		Type  schemas.Type
	}
	// VarRef is @name or @@name.
	VarRef struct{ Name string }
	// ColumnRef is [qualifier.]column.
	ColumnRef struct{ Parts []string }
	// Unary is NOT x, -x, +x, ~x.
	Unary struct {
		Op string
		X  Expr
	}
	// Binary is x op y: AND, OR, comparisons, arithmetic.
	Binary struct {
		Op   string
		L, R Expr
	}
	// IsNull is x IS [NOT] NULL.
	IsNull struct {
		X   Expr
		Not bool
	}
	// In is x [NOT] IN (list) or x [NOT] IN (subquery).
	In struct {
		X    Expr
		List []Expr
		Sub  *Select
		Not  bool
	}
	// Between is x [NOT] BETWEEN lo AND hi.
	Between struct {
		X, Lo, Hi Expr
		Not       bool
	}
	// Cast is CAST(x AS type) or CONVERT(type, x [, style]).
	Cast struct {
		X    Expr
		Type schemas.Type
	}
	// Case is CASE [operand] WHEN ... THEN ... [ELSE ...] END.
	Case struct {
		Operand Expr
		Whens   []When
		Else    Expr
	}
	// Exists is EXISTS (subquery).
	Exists struct{ Sub *Select }
	// Subquery is a scalar subquery.
	Subquery struct{ Sub *Select }
	// Func is a function call; Name is lower case, dotted for schema
	// functions ("sys.fn_cdc_get_min_lsn").
	Func struct {
		Name     string
		Args     []Expr
		Star     bool // COUNT(*)
		Distinct bool
	}
)

// When is one WHEN branch.
type When struct {
	Cond, Result Expr
}

func (*Literal) expr()   {}
func (*VarRef) expr()    {}
func (*ColumnRef) expr() {}
func (*Unary) expr()     {}
func (*Binary) expr()    {}
func (*IsNull) expr()    {}
func (*In) expr()        {}
func (*Between) expr()   {}
func (*Cast) expr()      {}
func (*Case) expr()      {}
func (*Exists) expr()    {}
func (*Subquery) expr()  {}
func (*Func) expr()      {}

// syntaxError is a statement outside the parsed subset: the handler
// reports it as a Go error naming the statement.
type syntaxError struct {
	pos int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("at offset %d: %s", e.pos, e.msg) }

type parser struct {
	toks []token
	i    int
}

// Parse parses a batch.
func Parse(src string) (*Batch, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, &syntaxError{0, err.Error()}
	}
	p := &parser{toks: toks}
	b := &Batch{}
	for {
		for p.sym(";") {
		}
		if p.peek().kind == tokEOF {
			break
		}
		switch {
		case p.isKw("DECLARE"):
			d, err := p.declare()
			if err != nil {
				return nil, err
			}
			b.Stmts = append(b.Stmts, d)
		case p.isKw("SELECT"):
			s, err := p.selectStmt()
			if err != nil {
				return nil, err
			}
			b.Stmts = append(b.Stmts, s)
		default:
			return nil, p.errf("expected SELECT or DECLARE, found %s", p.peek())
		}
	}
	if len(b.Stmts) == 0 {
		return nil, &syntaxError{0, "empty batch"}
	}
	return b, nil
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) peekAt(n int) token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errf(format string, args ...any) error {
	return &syntaxError{p.peek().pos, fmt.Sprintf(format, args...)}
}

func (p *parser) isKw(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && strings.EqualFold(t.text, kw)
}

func (p *parser) kw(kw string) bool {
	if p.isKw(kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectKw(kw string) error {
	if !p.kw(kw) {
		return p.errf("expected %s, found %s", kw, p.peek())
	}
	return nil
}

func (p *parser) sym(s string) bool {
	t := p.peek()
	if t.kind == tokSym && t.text == s {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectSym(s string) error {
	if !p.sym(s) {
		return p.errf("expected %q, found %s", s, p.peek())
	}
	return nil
}

// reserved words that end an implicit alias or an expression.
var reserved = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "ORDER": true, "GROUP": true, "HAVING": true,
	"JOIN": true, "INNER": true, "LEFT": true, "RIGHT": true, "FULL": true, "OUTER": true,
	"CROSS": true, "ON": true, "WITH": true, "UNION": true, "AND": true, "OR": true, "NOT": true,
	"AS": true, "DECLARE": true, "SET": true, "BY": true, "ASC": true, "DESC": true, "IS": true,
	"IN": true, "BETWEEN": true, "LIKE": true, "CASE": true, "WHEN": true, "THEN": true,
	"ELSE": true, "END": true, "NULL": true, "TOP": true, "DISTINCT": true, "EXISTS": true,
	"OPTION": true, "FOR": true, "EXCEPT": true, "INTERSECT": true, "APPLY": true,
}

// ident reads an identifier (bare or quoted).
func (p *parser) ident() (string, bool) {
	t := p.peek()
	switch {
	case t.kind == tokQuoted:
		p.i++
		return t.text, true
	case t.kind == tokIdent && !reserved[strings.ToUpper(t.text)]:
		p.i++
		return t.text, true
	}
	return "", false
}

// name reads a dotted multi-part name.
func (p *parser) name() ([]string, error) {
	first, ok := p.ident()
	if !ok {
		return nil, p.errf("expected a name, found %s", p.peek())
	}
	parts := []string{first}
	for p.peek().kind == tokSym && p.peek().text == "." {
		p.i++
		part, ok := p.ident()
		if !ok {
			return nil, p.errf("expected a name after '.', found %s", p.peek())
		}
		parts = append(parts, part)
	}
	return parts, nil
}

// alias reads [AS] alias.
func (p *parser) alias() (string, error) {
	if p.kw("AS") {
		a, ok := p.ident()
		if !ok {
			if t := p.peek(); t.kind == tokString {
				p.i++
				return t.text, nil
			}
			return "", p.errf("expected an alias, found %s", p.peek())
		}
		return a, nil
	}
	if a, ok := p.ident(); ok {
		return a, nil
	}
	return "", nil
}

func (p *parser) declare() (*Declare, error) {
	if err := p.expectKw("DECLARE"); err != nil {
		return nil, err
	}
	d := &Declare{}
	for {
		t := p.next()
		if t.kind != tokVar {
			return nil, p.errf("expected a @variable, found %s", t)
		}
		p.kw("AS")
		typ, err := p.typeName()
		if err != nil {
			return nil, err
		}
		v := DeclaredVar{Name: t.text, Type: typ}
		if p.sym("=") {
			if v.Init, err = p.expr(); err != nil {
				return nil, err
			}
		}
		d.Vars = append(d.Vars, v)
		if !p.sym(",") {
			return d, nil
		}
	}
}

// typeName reads a type: name [(n | max | p, s)].
func (p *parser) typeName() (schemas.Type, error) {
	parts, err := p.name()
	if err != nil {
		return schemas.Type{}, err
	}
	text := parts[len(parts)-1]
	if p.sym("(") {
		var args []string
		for {
			t := p.next()
			if t.kind != tokNumber && !(t.kind == tokIdent && strings.EqualFold(t.text, "max")) {
				return schemas.Type{}, p.errf("expected a type length, found %s", t)
			}
			args = append(args, t.text)
			if p.sym(")") {
				break
			}
			if err := p.expectSym(","); err != nil {
				return schemas.Type{}, err
			}
		}
		text += "(" + strings.Join(args, ",") + ")"
	}
	typ, err := schemas.ParseType(schemas.SQLServer, text)
	if err != nil {
		return schemas.Type{}, p.errf("%v", err)
	}
	return typ, nil
}

func (p *parser) selectStmt() (*Select, error) {
	if err := p.expectKw("SELECT"); err != nil {
		return nil, err
	}
	s := &Select{}
	if p.kw("DISTINCT") {
		s.Distinct = true
	} else {
		p.kw("ALL")
	}
	if p.kw("TOP") {
		if p.sym("(") {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
			s.Top = e
		} else {
			t := p.next()
			if t.kind != tokNumber && t.kind != tokVar {
				return nil, p.errf("expected TOP's row count, found %s", t)
			}
			if t.kind == tokVar {
				s.Top = &VarRef{Name: t.text}
			} else {
				lit, err := numberLiteral(t.text)
				if err != nil {
					return nil, p.errf("%v", err)
				}
				s.Top = lit
			}
		}
		if p.isKw("PERCENT") || p.isKw("WITH") {
			return nil, p.errf("TOP %s is not supported", p.peek())
		}
	}
	for {
		item, err := p.selectItem()
		if err != nil {
			return nil, err
		}
		s.Items = append(s.Items, item)
		if !p.sym(",") {
			break
		}
	}
	if p.kw("INTO") {
		return nil, p.errf("SELECT INTO is not supported")
	}
	if p.kw("FROM") {
		for {
			src, err := p.joinedSource()
			if err != nil {
				return nil, err
			}
			s.From = append(s.From, src)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.kw("WHERE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		s.Where = e
	}
	if p.kw("GROUP") {
		if err := p.expectKw("BY"); err != nil {
			return nil, err
		}
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			s.GroupBy = append(s.GroupBy, e)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.isKw("HAVING") || p.isKw("UNION") || p.isKw("EXCEPT") || p.isKw("INTERSECT") {
		return nil, p.errf("%s is not supported", strings.ToUpper(p.peek().text))
	}
	if p.kw("ORDER") {
		if err := p.expectKw("BY"); err != nil {
			return nil, err
		}
		for {
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			item := OrderItem{Expr: e}
			if p.kw("DESC") {
				item.Desc = true
			} else {
				p.kw("ASC")
			}
			s.OrderBy = append(s.OrderBy, item)
			if !p.sym(",") {
				break
			}
		}
	}
	if p.isKw("OPTION") || p.isKw("FOR") || p.isKw("OFFSET") {
		return nil, p.errf("%s is not supported", strings.ToUpper(p.peek().text))
	}
	return s, nil
}

func (p *parser) selectItem() (SelectItem, error) {
	if p.sym("*") {
		return SelectItem{Star: true}, nil
	}
	// qualifier.*
	if t := p.peek(); (t.kind == tokIdent || t.kind == tokQuoted) && p.peekAt(1).kind == tokSym && p.peekAt(1).text == "." &&
		p.peekAt(2).kind == tokSym && p.peekAt(2).text == "*" {
		p.i += 3
		return SelectItem{Star: true, Qualifier: t.text}, nil
	}
	// alias = expr
	if t := p.peek(); (t.kind == tokIdent && !reserved[strings.ToUpper(t.text)] || t.kind == tokQuoted) &&
		p.peekAt(1).kind == tokSym && p.peekAt(1).text == "=" {
		p.i += 2
		e, err := p.expr()
		if err != nil {
			return SelectItem{}, err
		}
		return SelectItem{Expr: e, Alias: t.text}, nil
	}
	e, err := p.expr()
	if err != nil {
		return SelectItem{}, err
	}
	a, err := p.alias()
	if err != nil {
		return SelectItem{}, err
	}
	return SelectItem{Expr: e, Alias: a}, nil
}

func (p *parser) joinedSource() (Source, error) {
	left, err := p.primarySource()
	if err != nil {
		return nil, err
	}
	for {
		kind := ""
		switch {
		case p.isKw("JOIN"):
			kind = "INNER"
		case p.isKw("INNER"):
			p.i++
			kind = "INNER"
		case p.isKw("LEFT"):
			p.i++
			p.kw("OUTER")
			kind = "LEFT"
		case p.isKw("CROSS"):
			p.i++
			if p.isKw("APPLY") {
				return nil, p.errf("CROSS APPLY is not supported")
			}
			kind = "CROSS"
		case p.isKw("RIGHT") || p.isKw("FULL") || p.isKw("OUTER"):
			return nil, p.errf("%s JOIN is not supported", strings.ToUpper(p.peek().text))
		default:
			return left, nil
		}
		if err := p.expectKw("JOIN"); err != nil {
			return nil, err
		}
		right, err := p.primarySource()
		if err != nil {
			return nil, err
		}
		j := &JoinSource{Left: left, Right: right, Kind: kind}
		if kind != "CROSS" {
			if err := p.expectKw("ON"); err != nil {
				return nil, err
			}
			if j.On, err = p.expr(); err != nil {
				return nil, err
			}
		}
		left = j
	}
}

func (p *parser) primarySource() (Source, error) {
	if p.isKw("CHANGETABLE") {
		p.i++
		if err := p.expectSym("("); err != nil {
			return nil, err
		}
		if !p.kw("CHANGES") {
			return nil, p.errf("only CHANGETABLE(CHANGES ...) is supported")
		}
		table, err := p.name()
		if err != nil {
			return nil, err
		}
		if err := p.expectSym(","); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		a, err := p.alias()
		if err != nil {
			return nil, err
		}
		return &ChangeTableSource{Table: table, Version: v, Alias: a}, nil
	}
	if p.sym("(") {
		if !p.isKw("SELECT") {
			return nil, p.errf("expected a derived table's SELECT, found %s", p.peek())
		}
		sub, err := p.selectStmt()
		if err != nil {
			return nil, err
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		a, err := p.alias()
		if err != nil {
			return nil, err
		}
		return &DerivedSource{Select: sub, Alias: a}, nil
	}
	parts, err := p.name()
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tokSym && p.peek().text == "(" {
		return nil, p.errf("table-valued function %s is not supported", strings.Join(parts, "."))
	}
	t := &TableSource{Parts: parts}
	if t.Alias, err = p.alias(); err != nil {
		return nil, err
	}
	if p.isKw("WITH") && p.peekAt(1).kind == tokSym && p.peekAt(1).text == "(" {
		p.i += 2
		for {
			h, ok := p.ident()
			if !ok {
				return nil, p.errf("expected a table hint, found %s", p.peek())
			}
			t.Hints = append(t.Hints, strings.ToUpper(h))
			if !p.sym(",") {
				break
			}
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Expressions, lowest precedence first.

func (p *parser) expr() (Expr, error) { return p.or() }

func (p *parser) or() (Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.kw("OR") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: "OR", L: l, R: r}
	}
	return l, nil
}

func (p *parser) and() (Expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.kw("AND") {
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: "AND", L: l, R: r}
	}
	return l, nil
}

func (p *parser) not() (Expr, error) {
	if p.kw("NOT") {
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		return &Unary{Op: "NOT", X: x}, nil
	}
	return p.predicate()
}

func (p *parser) predicate() (Expr, error) {
	if p.kw("EXISTS") {
		if err := p.expectSym("("); err != nil {
			return nil, err
		}
		sub, err := p.selectStmt()
		if err != nil {
			return nil, err
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		return &Exists{Sub: sub}, nil
	}
	l, err := p.additive()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.kind == tokSym {
		op := t.text
		switch op {
		case "=", "<>", "!=", "<", ">", "<=", ">=", "!<", "!>":
			p.i++
			r, err := p.additive()
			if err != nil {
				return nil, err
			}
			switch op {
			case "!=":
				op = "<>"
			case "!<":
				op = ">="
			case "!>":
				op = "<="
			}
			return &Binary{Op: op, L: l, R: r}, nil
		}
	}
	if p.kw("IS") {
		not := p.kw("NOT")
		if err := p.expectKw("NULL"); err != nil {
			return nil, err
		}
		return &IsNull{X: l, Not: not}, nil
	}
	not := false
	if p.isKw("NOT") && (strings.EqualFold(p.peekAt(1).text, "IN") || strings.EqualFold(p.peekAt(1).text, "BETWEEN") ||
		strings.EqualFold(p.peekAt(1).text, "LIKE")) && p.peekAt(1).kind == tokIdent {
		p.i++
		not = true
	}
	switch {
	case p.kw("IN"):
		if err := p.expectSym("("); err != nil {
			return nil, err
		}
		in := &In{X: l, Not: not}
		if p.isKw("SELECT") {
			if in.Sub, err = p.selectStmt(); err != nil {
				return nil, err
			}
		} else {
			for {
				e, err := p.expr()
				if err != nil {
					return nil, err
				}
				in.List = append(in.List, e)
				if !p.sym(",") {
					break
				}
			}
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		return in, nil
	case p.kw("BETWEEN"):
		lo, err := p.additive()
		if err != nil {
			return nil, err
		}
		if err := p.expectKw("AND"); err != nil {
			return nil, err
		}
		hi, err := p.additive()
		if err != nil {
			return nil, err
		}
		return &Between{X: l, Lo: lo, Hi: hi, Not: not}, nil
	case p.isKw("LIKE"):
		return nil, p.errf("LIKE is not supported")
	}
	if not {
		return nil, p.errf("unexpected NOT")
	}
	return l, nil
}

func (p *parser) additive() (Expr, error) {
	l, err := p.multiplicative()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tokSym || (t.text != "+" && t.text != "-" && t.text != "&" && t.text != "|" && t.text != "^") {
			return l, nil
		}
		p.i++
		r, err := p.multiplicative()
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: t.text, L: l, R: r}
	}
}

func (p *parser) multiplicative() (Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tokSym || (t.text != "*" && t.text != "/" && t.text != "%") {
			return l, nil
		}
		p.i++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &Binary{Op: t.text, L: l, R: r}
	}
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	if t.kind == tokSym && (t.text == "-" || t.text == "+" || t.text == "~") {
		p.i++
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		if lit, ok := x.(*Literal); ok && t.text == "-" {
			if neg, ok := negateLiteral(lit); ok {
				return neg, nil
			}
		}
		return &Unary{Op: t.text, X: x}, nil
	}
	return p.primary()
}

func negateLiteral(l *Literal) (*Literal, bool) {
	switch v := l.Value.(type) {
	case int64:
		return &Literal{Value: -v, Type: l.Type}, true
	case string:
		if familyOf(l.Type) == famDecimal {
			return &Literal{Value: "-" + v, Type: l.Type}, true
		}
	case float64:
		return &Literal{Value: -v, Type: l.Type}, true
	}
	return nil, false
}

// numberLiteral types a number as SQL Server does: an integer is int (or
// bigint, or numeric when larger), a decimal point makes it numeric(p,s),
// an exponent float.
func numberLiteral(text string) (*Literal, error) {
	if strings.ContainsAny(text, "eE") {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %s", text)
		}
		return &Literal{Value: f, Type: tFloat}, nil
	}
	if !strings.Contains(text, ".") {
		n, err := strconv.ParseInt(text, 10, 64)
		if err == nil {
			if n <= 2147483647 {
				return &Literal{Value: n, Type: tInt}, nil
			}
			return &Literal{Value: n, Type: tBigint}, nil
		}
	}
	intPart, frac, _ := strings.Cut(text, ".")
	intPart = strings.TrimLeft(intPart, "0")
	p := len(intPart) + len(frac)
	if p == 0 {
		p = 1
	}
	if p > 38 {
		return nil, fmt.Errorf("number %s is too long", text)
	}
	v := text
	if strings.HasPrefix(v, ".") {
		v = "0" + v
	}
	return &Literal{Value: v, Type: schemas.Type{Name: "numeric", Precision: max(p, len(frac)), Scale: len(frac)}}, nil
}

func (p *parser) primary() (Expr, error) {
	t := p.peek()
	switch t.kind {
	case tokNumber:
		p.i++
		lit, err := numberLiteral(t.text)
		if err != nil {
			return nil, p.errf("%v", err)
		}
		return lit, nil
	case tokString:
		p.i++
		return &Literal{Value: t.text, Type: varchar(max(1, len([]rune(t.text))))}, nil
	case tokNString:
		p.i++
		return &Literal{Value: t.text, Type: nvarchar(max(1, len([]rune(t.text))))}, nil
	case tokBinary:
		p.i++
		h := t.text
		if len(h)%2 == 1 {
			h = "0" + h
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, p.errf("bad binary literal 0x%s", t.text)
		}
		return &Literal{Value: b, Type: varbinaryT(max(1, len(b)))}, nil
	case tokVar:
		p.i++
		return &VarRef{Name: t.text}, nil
	case tokSym:
		if t.text == "(" {
			p.i++
			if p.isKw("SELECT") {
				sub, err := p.selectStmt()
				if err != nil {
					return nil, err
				}
				if err := p.expectSym(")"); err != nil {
					return nil, err
				}
				return &Subquery{Sub: sub}, nil
			}
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
			return e, nil
		}
		return nil, p.errf("unexpected %s", t)
	case tokIdent:
		switch strings.ToUpper(t.text) {
		case "NULL":
			p.i++
			return &Literal{Value: nil, Type: tInt}, nil
		case "CAST", "TRY_CAST":
			if strings.EqualFold(t.text, "TRY_CAST") {
				return nil, p.errf("TRY_CAST is not supported")
			}
			p.i++
			if err := p.expectSym("("); err != nil {
				return nil, err
			}
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if err := p.expectKw("AS"); err != nil {
				return nil, err
			}
			typ, err := p.typeName()
			if err != nil {
				return nil, err
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
			return &Cast{X: x, Type: typ}, nil
		case "CONVERT":
			p.i++
			if err := p.expectSym("("); err != nil {
				return nil, err
			}
			typ, err := p.typeName()
			if err != nil {
				return nil, err
			}
			if err := p.expectSym(","); err != nil {
				return nil, err
			}
			x, err := p.expr()
			if err != nil {
				return nil, err
			}
			if p.sym(",") {
				style, err := p.expr()
				if err != nil {
					return nil, err
				}
				if l, ok := style.(*Literal); !ok || (l.Value != int64(0) && l.Value != int64(121) && l.Value != int64(126)) {
					return nil, p.errf("CONVERT styles other than 0, 121 and 126 are not supported")
				}
			}
			if err := p.expectSym(")"); err != nil {
				return nil, err
			}
			return &Cast{X: x, Type: typ}, nil
		case "CASE":
			p.i++
			return p.caseExpr()
		}
	}
	if t.kind != tokIdent && t.kind != tokQuoted {
		return nil, p.errf("unexpected %s", t)
	}
	if t.kind == tokIdent && reserved[strings.ToUpper(t.text)] {
		return nil, p.errf("unexpected %s", strings.ToUpper(t.text))
	}
	parts, err := p.name()
	if err != nil {
		return nil, err
	}
	if p.peek().kind == tokSym && p.peek().text == "(" {
		p.i++
		f := &Func{Name: strings.ToLower(strings.Join(parts, "."))}
		if p.sym("*") {
			f.Star = true
		} else if !(p.peek().kind == tokSym && p.peek().text == ")") {
			if p.kw("DISTINCT") {
				f.Distinct = true
			}
			for {
				e, err := p.expr()
				if err != nil {
					return nil, err
				}
				f.Args = append(f.Args, e)
				if !p.sym(",") {
					break
				}
			}
		}
		if err := p.expectSym(")"); err != nil {
			return nil, err
		}
		if p.isKw("OVER") {
			return nil, p.errf("window functions are not supported")
		}
		return f, nil
	}
	return &ColumnRef{Parts: parts}, nil
}

func (p *parser) caseExpr() (Expr, error) {
	c := &Case{}
	if !p.isKw("WHEN") {
		op, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Operand = op
	}
	for p.kw("WHEN") {
		cond, err := p.expr()
		if err != nil {
			return nil, err
		}
		if err := p.expectKw("THEN"); err != nil {
			return nil, err
		}
		res, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Whens = append(c.Whens, When{Cond: cond, Result: res})
	}
	if len(c.Whens) == 0 {
		return nil, p.errf("CASE without WHEN")
	}
	if p.kw("ELSE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Else = e
	}
	if err := p.expectKw("END"); err != nil {
		return nil, err
	}
	return c, nil
}
