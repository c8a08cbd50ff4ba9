package sink

import (
	"regexp"
	"strconv"
)

// holds reports whether a store column of type store (PostgreSQL's
// format_type spelling) can hold every value of type source without loss.
// Equal types hold; so do wider integers, numerics with at least as many
// integer and fraction digits, finer time precisions, text for any string,
// and double precision for real. Everything else is refused: a silent cast
// is how data is lost (PITFALLS P7).
func holds(store, source string) bool {
	if store == source {
		return true
	}
	if ws, ok := intWidth[store]; ok {
		ws2, ok2 := intWidth[source]
		return ok2 && ws >= ws2
	}
	if sp, ss, ok := numericParams(store); ok {
		if store == "numeric" {
			_, isInt := intWidth[source]
			_, _, isNum := numericParams(source)
			return isInt || isNum
		}
		if digits, isInt := intDigits[source]; isInt {
			return sp-ss >= digits
		}
		if p, s, isNum := numericParams(source); isNum && source != "numeric" {
			return ss >= s && sp-ss >= p-s
		}
		return false
	}
	if kind, prec, ok := timeParams(store); ok {
		kind2, prec2, ok2 := timeParams(source)
		return ok2 && kind == kind2 && prec >= prec2
	}
	switch store {
	case "text":
		return stringType.MatchString(source)
	case "double precision":
		return source == "real"
	case "character varying":
		return stringType.MatchString(source) && source != "text"
	}
	if m := varcharN.FindStringSubmatch(store); m != nil {
		if n := varcharN.FindStringSubmatch(source); n != nil {
			return atoi(m[1]) >= atoi(n[1])
		}
	}
	return false
}

var (
	intWidth   = map[string]int{"smallint": 2, "integer": 4, "bigint": 8}
	intDigits  = map[string]int{"smallint": 5, "integer": 10, "bigint": 19}
	numericRe  = regexp.MustCompile(`^numeric(?:\((\d+),(\d+)\))?$`)
	timeRe     = regexp.MustCompile(`^(timestamp|time)(?:\((\d)\))? (with|without) time zone$`)
	stringType = regexp.MustCompile(`^(text|character varying(\(\d+\))?|character\(\d+\))$`)
	varcharN   = regexp.MustCompile(`^character varying\((\d+)\)$`)
)

// numericParams parses numeric(p,s); a bare numeric reports ok with zeros.
func numericParams(t string) (precision, scale int, ok bool) {
	m := numericRe.FindStringSubmatch(t)
	if m == nil {
		return 0, 0, false
	}
	if m[1] == "" {
		return 0, 0, true
	}
	return atoi(m[1]), atoi(m[2]), true
}

// timeParams parses time/timestamp with or without time zone and its
// fractional precision (6 when not given).
func timeParams(t string) (kind string, precision int, ok bool) {
	m := timeRe.FindStringSubmatch(t)
	if m == nil {
		return "", 0, false
	}
	precision = 6
	if m[2] != "" {
		precision = atoi(m[2])
	}
	return m[1] + " " + m[3], precision, true
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
