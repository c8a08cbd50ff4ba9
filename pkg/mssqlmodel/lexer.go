package mssqlmodel

import (
	"fmt"
	"strings"
)

type tokKind int

const (
	tokEOF     tokKind = iota
	tokIdent           // a bare identifier or keyword
	tokQuoted          // [bracketed] or "quoted" identifier
	tokString          // 'text'
	tokNString         // N'text'
	tokNumber          // 12, 1.5, 1e3
	tokBinary          // 0x0A0B
	tokVar             // @name, @@name
	tokSym             // operators and punctuation
)

type token struct {
	kind tokKind
	text string // identifier, string contents, number text, variable name, symbol
	pos  int
}

func (t token) String() string {
	switch t.kind {
	case tokEOF:
		return "end of statement"
	case tokString:
		return "'" + t.text + "'"
	case tokNString:
		return "N'" + t.text + "'"
	case tokQuoted:
		return "[" + t.text + "]"
	}
	return t.text
}

// lex splits T-SQL text into tokens. Comments (-- and /* */) are skipped.
func lex(src string) ([]token, error) {
	var out []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at offset %d", i)
			}
			i += end + 4
		case c == '[':
			var sb strings.Builder
			j := i + 1
			for {
				if j >= len(src) {
					return nil, fmt.Errorf("unterminated [identifier at offset %d", i)
				}
				if src[j] == ']' {
					if j+1 < len(src) && src[j+1] == ']' {
						sb.WriteByte(']')
						j += 2
						continue
					}
					break
				}
				sb.WriteByte(src[j])
				j++
			}
			out = append(out, token{tokQuoted, sb.String(), i})
			i = j + 1
		case c == '"':
			j := strings.IndexByte(src[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated \"identifier at offset %d", i)
			}
			out = append(out, token{tokQuoted, src[i+1 : i+1+j], i})
			i += j + 2
		case c == '\'' || ((c == 'N' || c == 'n') && i+1 < len(src) && src[i+1] == '\''):
			kind := tokString
			start := i
			if c != '\'' {
				kind = tokNString
				i++
			}
			var sb strings.Builder
			j := i + 1
			for {
				if j >= len(src) {
					return nil, fmt.Errorf("unterminated string at offset %d", start)
				}
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						sb.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				sb.WriteByte(src[j])
				j++
			}
			out = append(out, token{kind, sb.String(), start})
			i = j + 1
		case c == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X'):
			j := i + 2
			for j < len(src) && isHex(src[j]) {
				j++
			}
			out = append(out, token{tokBinary, src[i+2 : j], i})
			i = j
		case c >= '0' && c <= '9' || (c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9'):
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					j = k
					for j < len(src) && src[j] >= '0' && src[j] <= '9' {
						j++
					}
				}
			}
			out = append(out, token{tokNumber, src[i:j], i})
			i = j
		case c == '@':
			j := i + 1
			if j < len(src) && src[j] == '@' {
				j++
			}
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			out = append(out, token{tokVar, src[i:j], i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			out = append(out, token{tokIdent, src[i:j], i})
			i = j
		default:
			for _, op := range []string{"<>", "!=", "<=", ">=", "!<", "!>"} {
				if strings.HasPrefix(src[i:], op) {
					out = append(out, token{tokSym, op, i})
					i += 2
					goto next
				}
			}
			if strings.ContainsRune("=<>+-*/%(),.;&|^~", rune(c)) {
				out = append(out, token{tokSym, string(c), i})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		next:
		}
	}
	out = append(out, token{tokEOF, "", len(src)})
	return out, nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '#' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func isIdentChar(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' || c == '@'
}
