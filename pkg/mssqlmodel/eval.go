package mssqlmodel

import (
	"context"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// unsupported is a construct the model parses but does not evaluate: the
// handler reports it as a Go error (a loud test failure), never as a SQL
// Server error.
type unsupported struct{ what string }

func (e *unsupported) Error() string { return "not modelled: " + e.what }

func notModelled(format string, args ...any) error {
	return &unsupported{fmt.Sprintf(format, args...)}
}

// exec evaluates one batch against one state of the database.
type exec struct {
	ctx   context.Context
	m     *Model
	db    *dbState
	login string
	sess  *tdstest.Session
	vars  map[string]*variable
	types map[Expr]schemas.Type
	binds map[*ColumnRef]binding
	prep  map[*Select]*prepared
	cache map[Source][][]any
}

type variable struct {
	typ schemas.Type
	val any
}

type binding struct {
	up, idx int
}

type colMeta struct {
	qual     string // alias, or the table's name
	schema   string
	name     string
	typ      schemas.Type
	nullable bool
}

type scope struct {
	cols   []colMeta
	parent *scope
}

type env struct {
	row    []any
	parent *env
	group  [][]any // the rows of an aggregate query
	agg    bool
}

// relation is a FROM item: its columns and how to read its rows.
type relation struct {
	cols []colMeta
	rows func(outer *env) ([][]any, error)
}

type prepared struct {
	sel   *Select
	rel   *relation
	sc    *scope
	items []outItem
	agg   bool
	order []orderKey
}

type outItem struct {
	expr Expr
	name string
	typ  schemas.Type
	null bool
}

type orderKey struct {
	expr Expr
	item int // the select item it names, or -1
	desc bool
}

func newExec(ctx context.Context, m *Model, db *dbState, sess *tdstest.Session) *exec {
	login := ""
	if sess != nil {
		login = sess.User
	}
	return &exec{ctx: ctx, m: m, db: db, login: login, sess: sess, vars: map[string]*variable{},
		types: map[Expr]schemas.Type{}, binds: map[*ColumnRef]binding{}, prep: map[*Select]*prepared{},
		cache: map[Source][][]any{}}
}

// runBatch runs a parsed batch: DECLAREs assign, SELECTs return a result
// set each.
func (x *exec) runBatch(b *Batch) ([]tdstest.Result, error) {
	var out []tdstest.Result
	for _, st := range b.Stmts {
		switch s := st.(type) {
		case *Declare:
			for _, v := range s.Vars {
				name := strings.ToLower(v.Name)
				if _, ok := x.vars[name]; ok {
					return nil, sqlError(134, 15, "The variable name '%s' has already been declared. Variable names must be unique within a query batch or stored procedure.", v.Name)
				}
				nv := &variable{typ: v.Type}
				if v.Init != nil {
					if err := x.bindExpr(v.Init, nil, false); err != nil {
						return nil, err
					}
					val, err := x.eval(v.Init, nil)
					if err != nil {
						return nil, err
					}
					if nv.val, err = convert(val, x.types[v.Init], v.Type, false); err != nil {
						return nil, err
					}
				}
				x.vars[name] = nv
			}
		case *Select:
			p, err := x.prepareSelect(s, nil)
			if err != nil {
				return nil, err
			}
			rows, err := x.run(p, nil)
			if err != nil {
				return nil, err
			}
			res := tdstest.Result{Rows: rows}
			for _, it := range p.items {
				res.Columns = append(res.Columns, tdstest.Column{Name: it.name, Type: it.typ, Nullable: it.null})
			}
			if res.Rows == nil {
				res.Rows = [][]any{}
			}
			res.RowsAffected = int64(len(rows))
			out = append(out, res)
		}
	}
	return out, nil
}

// prepareSelect binds a SELECT: its sources, columns, types and aggregates.
func (x *exec) prepareSelect(s *Select, outer *scope) (*prepared, error) {
	if p, ok := x.prep[s]; ok {
		return p, nil
	}
	if len(s.GroupBy) > 0 {
		return nil, notModelled("GROUP BY")
	}
	rel := &relation{rows: func(*env) ([][]any, error) { return [][]any{{}}, nil }}
	for i, src := range s.From {
		r, err := x.source(src, outer)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			rel = r
		} else {
			rel = crossJoin(rel, r)
		}
	}
	sc := &scope{cols: rel.cols, parent: outer}
	p := &prepared{sel: s, rel: rel, sc: sc}
	stars := map[Expr]bool{}
	for _, it := range s.Items {
		if it.Star {
			found := false
			for i, c := range rel.cols {
				if it.Qualifier != "" && !strings.EqualFold(c.qual, it.Qualifier) {
					continue
				}
				found = true
				ref := &ColumnRef{Parts: []string{c.qual, c.name}}
				x.binds[ref] = binding{0, i}
				x.types[ref] = c.typ
				stars[ref] = true
				p.items = append(p.items, outItem{expr: ref, name: c.name, typ: c.typ, null: c.nullable})
			}
			if !found && it.Qualifier != "" {
				return nil, sqlError(107, 15, "The column prefix '%s' does not match with a table name or alias name used in the query.", it.Qualifier)
			}
			if len(s.From) == 0 {
				return nil, sqlError(263, 16, "Must specify table to select from.")
			}
			continue
		}
		p.agg = p.agg || hasAggregate(it.Expr)
		p.items = append(p.items, outItem{expr: it.Expr, name: it.Alias})
	}
	x.prep[s] = p // before binding: a subquery may name itself only through its own select
	for i := range p.items {
		it := &p.items[i]
		if stars[it.expr] {
			continue
		}
		if err := x.bindExpr(it.expr, sc, p.agg); err != nil {
			delete(x.prep, s)
			return nil, err
		}
		if p.agg {
			if err := x.checkGrouped(it.expr, false); err != nil {
				delete(x.prep, s)
				return nil, err
			}
		}
		it.typ = x.types[it.expr]
		it.null = true
		if ref, ok := it.expr.(*ColumnRef); ok {
			if it.name == "" {
				it.name = ref.Parts[len(ref.Parts)-1]
			}
			if b := x.binds[ref]; b.up == 0 && b.idx < len(rel.cols) {
				it.null = rel.cols[b.idx].nullable
			}
		}
	}
	if s.Where != nil {
		if hasAggregate(s.Where) {
			return nil, sqlError(147, 15, "An aggregate may not appear in the WHERE clause unless it is in a subquery contained in a HAVING clause or a select list, and the column being aggregated is an outer reference.")
		}
		if err := x.bindExpr(s.Where, sc, false); err != nil {
			delete(x.prep, s)
			return nil, err
		}
	}
	if s.Top != nil {
		if err := x.bindExpr(s.Top, outer, false); err != nil {
			delete(x.prep, s)
			return nil, err
		}
	}
	for _, o := range s.OrderBy {
		k := orderKey{expr: o.Expr, item: -1, desc: o.Desc}
		if ref, ok := o.Expr.(*ColumnRef); ok && len(ref.Parts) == 1 {
			for i, it := range s.Items {
				if !it.Star && it.Alias != "" && strings.EqualFold(it.Alias, ref.Parts[0]) {
					k.item = itemIndex(p, s, i)
				}
			}
		}
		if lit, ok := o.Expr.(*Literal); ok {
			n, isInt := lit.Value.(int64)
			if !isInt || n < 1 || int(n) > len(p.items) {
				return nil, sqlError(108, 15, "The ORDER BY position number %v is out of range of the number of items in the select list.", lit.Value)
			}
			k.item = int(n) - 1
		}
		if k.item < 0 {
			if err := x.bindExpr(o.Expr, sc, p.agg); err != nil {
				delete(x.prep, s)
				return nil, err
			}
		}
		p.order = append(p.order, k)
	}
	return p, nil
}

// itemIndex maps a select-list position (before star expansion) to the
// expanded item index.
func itemIndex(p *prepared, s *Select, pos int) int {
	n := 0
	for i, it := range s.Items {
		if i == pos {
			return n
		}
		if it.Star {
			for _, c := range p.rel.cols {
				if it.Qualifier == "" || strings.EqualFold(c.qual, it.Qualifier) {
					n++
				}
			}
		} else {
			n++
		}
	}
	return n
}

func crossJoin(l, r *relation) *relation {
	return &relation{cols: append(slices.Clone(l.cols), r.cols...), rows: func(outer *env) ([][]any, error) {
		lr, err := l.rows(outer)
		if err != nil {
			return nil, err
		}
		rr, err := r.rows(outer)
		if err != nil {
			return nil, err
		}
		var out [][]any
		for _, a := range lr {
			for _, b := range rr {
				out = append(out, append(slices.Clone(a), b...))
			}
		}
		return out, nil
	}}
}

// run evaluates a prepared SELECT: WHERE, the select list (aggregated when
// it has aggregates), DISTINCT, ORDER BY, TOP.
func (x *exec) run(p *prepared, outer *env) ([][]any, error) {
	if err := x.ctx.Err(); err != nil {
		return nil, err
	}
	top := int64(-1)
	if p.sel.Top != nil {
		v, err := x.eval(p.sel.Top, outer)
		if err != nil {
			return nil, err
		}
		n, err := convert(v, x.types[p.sel.Top], tBigint, false)
		if err != nil {
			return nil, err
		}
		if n == nil || n.(int64) < 0 {
			return nil, sqlError(1060, 16, "The number of rows provided for a TOP or FETCH clauses row count parameter must be an integer.")
		}
		top = n.(int64)
	}
	base, err := p.rel.rows(outer)
	if err != nil {
		return nil, err
	}
	var kept [][]any
	for _, r := range base {
		if p.sel.Where != nil {
			ok, err := x.truth(p.sel.Where, &env{row: r, parent: outer})
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
		}
		kept = append(kept, r)
	}
	type rec struct {
		out  []any
		keys []any
	}
	var recs []rec
	if p.agg {
		en := &env{parent: outer, group: kept, agg: true}
		out := make([]any, len(p.items))
		for i, it := range p.items {
			v, err := x.evalItem(it, en)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		recs = append(recs, rec{out: out})
	} else {
		for _, r := range kept {
			en := &env{row: r, parent: outer}
			out := make([]any, len(p.items))
			for i, it := range p.items {
				v, err := x.evalItem(it, en)
				if err != nil {
					return nil, err
				}
				out[i] = v
			}
			keys := make([]any, len(p.order))
			for i, k := range p.order {
				if k.item >= 0 {
					keys[i] = out[k.item]
					continue
				}
				v, err := x.eval(k.expr, en)
				if err != nil {
					return nil, err
				}
				keys[i] = v
			}
			recs = append(recs, rec{out: out, keys: keys})
		}
	}
	if p.sel.Distinct {
		seen := map[string]bool{}
		var uniq []rec
		for _, r := range recs {
			parts := make([]string, len(r.out))
			for i, v := range r.out {
				parts[i] = identity(v, p.items[i].typ)
			}
			k := strings.Join(parts, "\x00")
			if !seen[k] {
				seen[k] = true
				uniq = append(uniq, r)
			}
		}
		recs = uniq
	}
	if len(p.order) > 0 && !p.agg {
		var sortErr error
		slices.SortStableFunc(recs, func(a, b rec) int {
			for i, k := range p.order {
				t := x.orderType(p, k)
				c := 0
				switch av, bv := a.keys[i], b.keys[i]; {
				case av == nil && bv == nil:
				case av == nil:
					c = -1
				case bv == nil:
					c = 1
				default:
					var err error
					if c, err = compareValues(av, t, bv, t); err != nil && sortErr == nil {
						sortErr = err
					}
				}
				if k.desc {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return 0
		})
		if sortErr != nil {
			return nil, sortErr
		}
	}
	if top >= 0 && int64(len(recs)) > top {
		recs = recs[:top]
	}
	out := make([][]any, len(recs))
	for i, r := range recs {
		out[i] = r.out
	}
	return out, nil
}

func (x *exec) orderType(p *prepared, k orderKey) schemas.Type {
	if k.item >= 0 {
		return p.items[k.item].typ
	}
	return x.types[k.expr]
}

// evalItem evaluates a select item and converts it to the item's type.
func (x *exec) evalItem(it outItem, en *env) (any, error) {
	v, err := x.eval(it.expr, en)
	if err != nil {
		return nil, err
	}
	if b, ok := v.(bool); ok && familyOf(it.typ) != famBit {
		return nil, notModelled("a predicate (%v) in a select list", b)
	}
	return v, nil
}

// truth evaluates a predicate: true only for TRUE (NULL is unknown).
func (x *exec) truth(e Expr, en *env) (bool, error) {
	v, err := x.eval(e, en)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	return ok && b, nil
}

// bindExpr resolves column references, prepares subqueries and types every
// node of e. aggOK allows aggregates (a select list of an aggregate query).
func (x *exec) bindExpr(e Expr, sc *scope, aggOK bool) error {
	var t schemas.Type
	switch n := e.(type) {
	case *Literal:
		t = n.Type
	case *VarRef:
		vt, err := x.varType(n.Name)
		if err != nil {
			return err
		}
		t = vt
	case *ColumnRef:
		b, c, err := resolve(n, sc)
		if err != nil {
			return err
		}
		x.binds[n] = b
		t = c.typ
	case *Unary:
		if err := x.bindExpr(n.X, sc, aggOK); err != nil {
			return err
		}
		t = x.types[n.X]
		if n.Op == "NOT" {
			t = tBit
		}
	case *Binary:
		if err := x.bindExpr(n.L, sc, aggOK); err != nil {
			return err
		}
		if err := x.bindExpr(n.R, sc, aggOK); err != nil {
			return err
		}
		t = binaryType(n.Op, x.types[n.L], x.types[n.R])
	case *IsNull:
		if err := x.bindExpr(n.X, sc, aggOK); err != nil {
			return err
		}
		t = tBit
	case *In:
		if err := x.bindExpr(n.X, sc, aggOK); err != nil {
			return err
		}
		for _, it := range n.List {
			if err := x.bindExpr(it, sc, aggOK); err != nil {
				return err
			}
		}
		if n.Sub != nil {
			p, err := x.prepareSelect(n.Sub, sc)
			if err != nil {
				return err
			}
			if len(p.items) != 1 {
				return sqlError(116, 16, "Only one expression can be specified in the select list when the subquery is not introduced with EXISTS.")
			}
		}
		t = tBit
	case *Between:
		for _, y := range []Expr{n.X, n.Lo, n.Hi} {
			if err := x.bindExpr(y, sc, aggOK); err != nil {
				return err
			}
		}
		t = tBit
	case *Cast:
		if err := x.bindExpr(n.X, sc, aggOK); err != nil {
			return err
		}
		t = n.Type
	case *Case:
		if n.Operand != nil {
			if err := x.bindExpr(n.Operand, sc, aggOK); err != nil {
				return err
			}
		}
		var results []Expr
		for _, w := range n.Whens {
			if err := x.bindExpr(w.Cond, sc, aggOK); err != nil {
				return err
			}
			if err := x.bindExpr(w.Result, sc, aggOK); err != nil {
				return err
			}
			results = append(results, w.Result)
		}
		if n.Else != nil {
			if err := x.bindExpr(n.Else, sc, aggOK); err != nil {
				return err
			}
			results = append(results, n.Else)
		}
		t = x.resultType(results)
	case *Exists:
		if _, err := x.prepareSelect(n.Sub, sc); err != nil {
			return err
		}
		t = tBit
	case *Subquery:
		p, err := x.prepareSelect(n.Sub, sc)
		if err != nil {
			return err
		}
		if len(p.items) != 1 {
			return sqlError(116, 16, "Only one expression can be specified in the select list when the subquery is not introduced with EXISTS.")
		}
		t = p.items[0].typ
	case *Func:
		if isAggregate(n.Name) && !aggOK {
			return sqlError(147, 15, "An aggregate may not appear in the WHERE clause unless it is in a subquery contained in a HAVING clause or a select list, and the column being aggregated is an outer reference.")
		}
		for _, a := range n.Args {
			if isDatepartFunc(n.Name) && a == n.Args[0] {
				continue // a datepart keyword, not a column
			}
			if err := x.bindExpr(a, sc, aggOK && !isAggregate(n.Name)); err != nil {
				return err
			}
		}
		ft, err := x.funcType(n)
		if err != nil {
			return err
		}
		t = ft
	default:
		return notModelled("expression %T", e)
	}
	x.types[e] = t
	return nil
}

// checkGrouped refuses a column of an aggregate query outside an aggregate.
func (x *exec) checkGrouped(e Expr, inAgg bool) error {
	var err error
	walkExpr(e, func(y Expr, agg bool) {
		if ref, ok := y.(*ColumnRef); ok && !agg && err == nil {
			if b := x.binds[ref]; b.up == 0 {
				err = sqlError(8120, 16, "Column '%s' is invalid in the select list because it is not contained in either an aggregate function or the GROUP BY clause.",
					strings.Join(ref.Parts, "."))
			}
		}
	}, inAgg)
	return err
}

// walkExpr calls f on e and its sub-expressions (not into subqueries),
// telling whether each is inside an aggregate.
func walkExpr(e Expr, f func(Expr, bool), inAgg bool) {
	if e == nil {
		return
	}
	f(e, inAgg)
	switch n := e.(type) {
	case *Unary:
		walkExpr(n.X, f, inAgg)
	case *Binary:
		walkExpr(n.L, f, inAgg)
		walkExpr(n.R, f, inAgg)
	case *IsNull:
		walkExpr(n.X, f, inAgg)
	case *In:
		walkExpr(n.X, f, inAgg)
		for _, y := range n.List {
			walkExpr(y, f, inAgg)
		}
	case *Between:
		walkExpr(n.X, f, inAgg)
		walkExpr(n.Lo, f, inAgg)
		walkExpr(n.Hi, f, inAgg)
	case *Cast:
		walkExpr(n.X, f, inAgg)
	case *Case:
		walkExpr(n.Operand, f, inAgg)
		for _, w := range n.Whens {
			walkExpr(w.Cond, f, inAgg)
			walkExpr(w.Result, f, inAgg)
		}
		walkExpr(n.Else, f, inAgg)
	case *Func:
		for i, a := range n.Args {
			if isDatepartFunc(n.Name) && i == 0 {
				continue
			}
			walkExpr(a, f, inAgg || isAggregate(n.Name))
		}
	}
}

func hasAggregate(e Expr) bool {
	found := false
	walkExpr(e, func(y Expr, _ bool) {
		if f, ok := y.(*Func); ok && isAggregate(f.Name) {
			found = true
		}
	}, false)
	return found
}

func isAggregate(name string) bool {
	switch name {
	case "max", "min", "count", "count_big", "sum", "avg":
		return true
	}
	return false
}

// resultType is the type of CASE, COALESCE: the highest precedence of the
// results' types (NULL literals have none).
func (x *exec) resultType(results []Expr) schemas.Type {
	var t schemas.Type
	first := true
	for _, r := range results {
		if l, ok := r.(*Literal); ok && l.Value == nil {
			continue
		}
		rt := x.types[r]
		if first {
			t, first = rt, false
			continue
		}
		h := higher(t, rt)
		if familyOf(t) == famString && familyOf(rt) == famString {
			n := max(t.Length, rt.Length)
			if t.Length == schemas.Max || rt.Length == schemas.Max {
				n = schemas.Max
			}
			h.Length = n
		}
		t = h
	}
	if first {
		return tInt
	}
	return t
}

func binaryType(op string, l, r schemas.Type) schemas.Type {
	switch op {
	case "AND", "OR", "=", "<>", "<", ">", "<=", ">=":
		return tBit
	}
	if op == "+" && familyOf(l) == famString && familyOf(r) == famString {
		t := varchar(8000)
		if isUnicode(l) || isUnicode(r) {
			t = nvarchar(4000)
		}
		return t
	}
	h := higher(l, r)
	if familyOf(h) == famDecimal {
		return schemas.Type{Name: "numeric", Precision: 38, Scale: max(decimalScale(l), decimalScale(r))}
	}
	return h
}

// resolve finds a column reference in the scope chain.
func resolve(ref *ColumnRef, sc *scope) (binding, colMeta, error) {
	name := ref.Parts[len(ref.Parts)-1]
	qual := ""
	schema := ""
	if len(ref.Parts) >= 2 {
		qual = ref.Parts[len(ref.Parts)-2]
	}
	if len(ref.Parts) >= 3 {
		schema = ref.Parts[len(ref.Parts)-3]
	}
	qualSeen := false
	for up, s := 0, sc; s != nil; up, s = up+1, s.parent {
		found := -1
		for i, c := range s.cols {
			if qual != "" && !strings.EqualFold(c.qual, qual) {
				continue
			}
			if schema != "" && !strings.EqualFold(c.schema, schema) {
				continue
			}
			qualSeen = true
			if !strings.EqualFold(c.name, name) {
				continue
			}
			if found >= 0 {
				return binding{}, colMeta{}, sqlError(209, 16, "Ambiguous column name '%s'.", name)
			}
			found = i
		}
		if found >= 0 {
			return binding{up, found}, s.cols[found], nil
		}
	}
	if qual != "" && !qualSeen {
		return binding{}, colMeta{}, sqlError(4104, 16, "The multi-part identifier \"%s\" could not be bound.", strings.Join(ref.Parts, "."))
	}
	return binding{}, colMeta{}, sqlError(207, 16, "Invalid column name '%s'.", name)
}

func (x *exec) varType(name string) (schemas.Type, error) {
	if strings.HasPrefix(name, "@@") {
		return sysVarType(name)
	}
	v, ok := x.vars[strings.ToLower(name)]
	if !ok {
		return schemas.Type{}, sqlError(137, 15, "Must declare the scalar variable \"%s\".", name)
	}
	return v.typ, nil
}

// eval evaluates an expression in a row environment. Predicates return
// true, false or nil (unknown).
func (x *exec) eval(e Expr, en *env) (any, error) {
	switch n := e.(type) {
	case *Literal:
		return n.Value, nil
	case *VarRef:
		if strings.HasPrefix(n.Name, "@@") {
			return x.sysVar(n.Name)
		}
		return x.vars[strings.ToLower(n.Name)].val, nil
	case *ColumnRef:
		b := x.binds[n]
		for range b.up {
			en = en.parent
		}
		if en == nil || en.agg {
			return nil, notModelled("column %s outside its row", strings.Join(n.Parts, "."))
		}
		return en.row[b.idx], nil
	case *Unary:
		v, err := x.eval(n.X, en)
		if err != nil || v == nil {
			return nil, err
		}
		switch n.Op {
		case "NOT":
			return !v.(bool), nil
		case "+":
			return v, nil
		case "-":
			return negate(v, x.types[n.X])
		case "~":
			i, ok := v.(int64)
			if !ok {
				return nil, clash(x.types[n.X], tInt, false)
			}
			return ^i, nil
		}
	case *Binary:
		return x.evalBinary(n, en)
	case *IsNull:
		v, err := x.eval(n.X, en)
		if err != nil {
			return nil, err
		}
		return (v == nil) != n.Not, nil
	case *In:
		return x.evalIn(n, en)
	case *Between:
		v, err := x.eval(n.X, en)
		if err != nil {
			return nil, err
		}
		lo, err := x.eval(n.Lo, en)
		if err != nil {
			return nil, err
		}
		hi, err := x.eval(n.Hi, en)
		if err != nil {
			return nil, err
		}
		a, err := cmp3(v, x.types[n.X], lo, x.types[n.Lo], func(c int) bool { return c >= 0 })
		if err != nil {
			return nil, err
		}
		b, err := cmp3(v, x.types[n.X], hi, x.types[n.Hi], func(c int) bool { return c <= 0 })
		if err != nil {
			return nil, err
		}
		r := and3(a, b)
		if n.Not && r != nil {
			return !r.(bool), nil
		}
		return r, nil
	case *Cast:
		v, err := x.eval(n.X, en)
		if err != nil {
			return nil, err
		}
		if b, ok := v.(bool); ok && familyOf(x.types[n.X]) == famBit {
			return convert(b, tBit, n.Type, true)
		}
		return convert(v, x.types[n.X], n.Type, true)
	case *Case:
		return x.evalCase(n, en)
	case *Exists:
		p := x.prep[n.Sub]
		rows, err := x.run(p, en)
		if err != nil {
			return nil, err
		}
		return len(rows) > 0, nil
	case *Subquery:
		p := x.prep[n.Sub]
		rows, err := x.run(p, en)
		if err != nil {
			return nil, err
		}
		switch len(rows) {
		case 0:
			return nil, nil
		case 1:
			return rows[0][0], nil
		}
		return nil, sqlError(512, 16, "Subquery returned more than 1 value. This is not permitted when the subquery follows =, !=, <, <= , >, >= or when the subquery is used as an expression.")
	case *Func:
		if isAggregate(n.Name) {
			return x.evalAggregate(n, en)
		}
		return x.evalFunc(n, en)
	}
	return nil, notModelled("expression %T", e)
}

func cmp3(a any, ta schemas.Type, b any, tb schemas.Type, ok func(int) bool) (any, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	c, err := compareValues(a, ta, b, tb)
	if err != nil {
		return nil, err
	}
	return ok(c), nil
}

func and3(a, b any) any {
	if a == false || b == false {
		return false
	}
	if a == nil || b == nil {
		return nil
	}
	return true
}

func or3(a, b any) any {
	if a == true || b == true {
		return true
	}
	if a == nil || b == nil {
		return nil
	}
	return false
}

func (x *exec) evalBinary(n *Binary, en *env) (any, error) {
	switch n.Op {
	case "AND", "OR":
		l, err := x.eval(n.L, en)
		if err != nil {
			return nil, err
		}
		if n.Op == "AND" && l == false {
			return false, nil
		}
		if n.Op == "OR" && l == true {
			return true, nil
		}
		r, err := x.eval(n.R, en)
		if err != nil {
			return nil, err
		}
		if n.Op == "AND" {
			return and3(l, r), nil
		}
		return or3(l, r), nil
	}
	l, err := x.eval(n.L, en)
	if err != nil {
		return nil, err
	}
	r, err := x.eval(n.R, en)
	if err != nil {
		return nil, err
	}
	tl, tr := x.types[n.L], x.types[n.R]
	switch n.Op {
	case "=":
		return cmp3(l, tl, r, tr, func(c int) bool { return c == 0 })
	case "<>":
		return cmp3(l, tl, r, tr, func(c int) bool { return c != 0 })
	case "<":
		return cmp3(l, tl, r, tr, func(c int) bool { return c < 0 })
	case ">":
		return cmp3(l, tl, r, tr, func(c int) bool { return c > 0 })
	case "<=":
		return cmp3(l, tl, r, tr, func(c int) bool { return c <= 0 })
	case ">=":
		return cmp3(l, tl, r, tr, func(c int) bool { return c >= 0 })
	}
	if l == nil || r == nil {
		return nil, nil
	}
	return arith(n.Op, l, tl, r, tr, x.types[n])
}

// arith computes + - * / % & | ^ in the result type t.
func arith(op string, l any, tl schemas.Type, r any, tr schemas.Type, t schemas.Type) (any, error) {
	if familyOf(t) == famString {
		ls, err := convert(l, tl, t, false)
		if err != nil {
			return nil, err
		}
		rs, err := convert(r, tr, t, false)
		if err != nil {
			return nil, err
		}
		if op != "+" {
			return nil, sqlError(402, 16, "The data types %s and %s are incompatible in the %s operator.", typeText(tl), typeText(tr), op)
		}
		return ls.(string) + rs.(string), nil
	}
	switch familyOf(t) {
	case famInt, famBit:
		a, err := convert(l, tl, tBigint, false)
		if err != nil {
			return nil, err
		}
		b, err := convert(r, tr, tBigint, false)
		if err != nil {
			return nil, err
		}
		x, y := big.NewInt(a.(int64)), big.NewInt(b.(int64))
		var z *big.Int
		switch op {
		case "+":
			z = new(big.Int).Add(x, y)
		case "-":
			z = new(big.Int).Sub(x, y)
		case "*":
			z = new(big.Int).Mul(x, y)
		case "/", "%":
			if y.Sign() == 0 {
				return nil, sqlError(8134, 16, "Divide by zero error encountered.")
			}
			if op == "/" {
				z = new(big.Int).Quo(x, y)
			} else {
				z = new(big.Int).Rem(x, y)
			}
		case "&":
			z = new(big.Int).And(x, y)
		case "|":
			z = new(big.Int).Or(x, y)
		case "^":
			z = new(big.Int).Xor(x, y)
		}
		if familyOf(t) == famBit {
			t = tInt
		}
		lo, hi := intRange(t)
		if !z.IsInt64() || z.Int64() < lo || z.Int64() > hi {
			return nil, overflow(t)
		}
		return z.Int64(), nil
	case famDecimal:
		a, err := ratOf(l, tl)
		if err != nil {
			return nil, err
		}
		b, err := ratOf(r, tr)
		if err != nil {
			return nil, err
		}
		var z *big.Rat
		switch op {
		case "+":
			z = new(big.Rat).Add(a, b)
		case "-":
			z = new(big.Rat).Sub(a, b)
		case "*":
			z = new(big.Rat).Mul(a, b)
			t.Scale = min(38, decimalScale(tl)+decimalScale(tr))
		case "/":
			if b.Sign() == 0 {
				return nil, sqlError(8134, 16, "Divide by zero error encountered.")
			}
			z = new(big.Rat).Quo(a, b)
			t.Scale = max(6, t.Scale)
		default:
			return nil, sqlError(402, 16, "The data types %s and %s are incompatible in the %s operator.", typeText(tl), typeText(tr), op)
		}
		return toDecimal(z, t)
	case famFloat:
		a, err := convert(l, tl, tFloat, false)
		if err != nil {
			return nil, err
		}
		b, err := convert(r, tr, tFloat, false)
		if err != nil {
			return nil, err
		}
		x, y := a.(float64), b.(float64)
		switch op {
		case "+":
			return x + y, nil
		case "-":
			return x - y, nil
		case "*":
			return x * y, nil
		case "/":
			if y == 0 {
				return nil, sqlError(8134, 16, "Divide by zero error encountered.")
			}
			return x / y, nil
		case "%":
			return math.Mod(x, y), nil
		}
	}
	return nil, sqlError(402, 16, "The data types %s and %s are incompatible in the %s operator.", typeText(tl), typeText(tr), op)
}

func negate(v any, t schemas.Type) (any, error) {
	switch x := v.(type) {
	case int64:
		lo, _ := intRange(t)
		if x == lo {
			return nil, overflow(t)
		}
		return -x, nil
	case float64:
		return -x, nil
	case string:
		if familyOf(t) == famDecimal {
			r, ok := parseDecimal(x)
			if !ok {
				return nil, conversionFailed(varchar(0), t)
			}
			return formatRat(new(big.Rat).Neg(r), decimalScale(t)), nil
		}
	}
	return nil, clash(t, tInt, false)
}

func (x *exec) evalIn(n *In, en *env) (any, error) {
	v, err := x.eval(n.X, en)
	if err != nil {
		return nil, err
	}
	type cand struct {
		v any
		t schemas.Type
	}
	var cands []cand
	if n.Sub != nil {
		p := x.prep[n.Sub]
		rows, err := x.run(p, en)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			cands = append(cands, cand{r[0], p.items[0].typ})
		}
	} else {
		for _, it := range n.List {
			w, err := x.eval(it, en)
			if err != nil {
				return nil, err
			}
			cands = append(cands, cand{w, x.types[it]})
		}
	}
	var r any = false
	for _, c := range cands {
		eq, err := cmp3(v, x.types[n.X], c.v, c.t, func(c int) bool { return c == 0 })
		if err != nil {
			return nil, err
		}
		r = or3(r, eq)
		if r == true {
			break
		}
	}
	if n.Not && r != nil {
		return !r.(bool), nil
	}
	return r, nil
}

func (x *exec) evalCase(n *Case, en *env) (any, error) {
	t := x.types[n]
	var op any
	if n.Operand != nil {
		var err error
		if op, err = x.eval(n.Operand, en); err != nil {
			return nil, err
		}
	}
	for _, w := range n.Whens {
		var hit bool
		if n.Operand != nil {
			c, err := x.eval(w.Cond, en)
			if err != nil {
				return nil, err
			}
			eq, err := cmp3(op, x.types[n.Operand], c, x.types[w.Cond], func(c int) bool { return c == 0 })
			if err != nil {
				return nil, err
			}
			hit = eq == true
		} else {
			var err error
			if hit, err = x.truth(w.Cond, en); err != nil {
				return nil, err
			}
		}
		if hit {
			v, err := x.eval(w.Result, en)
			if err != nil {
				return nil, err
			}
			return convert(v, x.types[w.Result], t, false)
		}
	}
	if n.Else == nil {
		return nil, nil
	}
	v, err := x.eval(n.Else, en)
	if err != nil {
		return nil, err
	}
	return convert(v, x.types[n.Else], t, false)
}

func (x *exec) evalAggregate(n *Func, en *env) (any, error) {
	if en == nil || !en.agg {
		return nil, notModelled("aggregate %s outside an aggregate query", n.Name)
	}
	if n.Distinct {
		return nil, notModelled("%s(DISTINCT ...)", n.Name)
	}
	rowEnv := func(r []any) *env { return &env{row: r, parent: en.parent} }
	switch n.Name {
	case "count", "count_big":
		c := int64(0)
		for _, r := range en.group {
			if n.Star {
				c++
				continue
			}
			v, err := x.eval(n.Args[0], rowEnv(r))
			if err != nil {
				return nil, err
			}
			if v != nil {
				c++
			}
		}
		if n.Name == "count" && c > math.MaxInt32 {
			return nil, overflow(tInt)
		}
		return c, nil
	case "max", "min":
		var best any
		t := x.types[n.Args[0]]
		for _, r := range en.group {
			v, err := x.eval(n.Args[0], rowEnv(r))
			if err != nil {
				return nil, err
			}
			if v == nil {
				continue
			}
			if best == nil {
				best = v
				continue
			}
			c, err := compareValues(v, t, best, t)
			if err != nil {
				return nil, err
			}
			if (n.Name == "max" && c > 0) || (n.Name == "min" && c < 0) {
				best = v
			}
		}
		return best, nil
	case "sum", "avg":
		t := x.types[n]
		sum := new(big.Rat)
		cnt := 0
		for _, r := range en.group {
			v, err := x.eval(n.Args[0], rowEnv(r))
			if err != nil {
				return nil, err
			}
			if v == nil {
				continue
			}
			q, err := ratOf(v, x.types[n.Args[0]])
			if err != nil {
				return nil, err
			}
			sum.Add(sum, q)
			cnt++
		}
		if cnt == 0 {
			return nil, nil
		}
		if n.Name == "avg" {
			sum.Quo(sum, new(big.Rat).SetInt64(int64(cnt)))
		}
		if familyOf(t) == famInt {
			// An integer SUM or AVG is an integer (AVG truncates toward zero).
			q := new(big.Int).Quo(sum.Num(), sum.Denom())
			if !q.IsInt64() {
				return nil, overflow(t)
			}
			return convert(q.Int64(), tBigint, t, false)
		}
		return convert(sum.FloatString(10), varchar(0), t, false)
	}
	return nil, notModelled("aggregate %s", n.Name)
}
