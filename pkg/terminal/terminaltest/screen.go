// Package terminaltest is a fake terminal for tests of what a command
// shows on one (package terminal's status lines among log lines).
package terminaltest

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// Screen keeps what a terminal shows for the bytes written to it: printable
// text at the cursor (overwriting what is there), carriage return (column
// 0), newline (the next line, column 0, as a terminal behind a tty with
// onlcr shows it) and ESC [ K (erase to the end of the line). Any other
// control character or escape sequence is an error of the Write that
// holds it, so that a test sees output it does not model. Writes may split
// sequences and characters anywhere. It is safe for concurrent use.
type Screen struct {
	mu       sync.Mutex
	lines    [][]rune
	row, col int
	pending  []byte // an escape sequence or a character not yet complete
	raw      strings.Builder
}

// Write interprets p.
func (s *Screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw.Write(p)
	buf := append(s.pending, p...)
	s.pending = nil
	for len(buf) > 0 {
		n, err := s.step(buf)
		if err != nil {
			return len(p), err
		}
		if n == 0 { // incomplete: wait for the rest
			s.pending = append([]byte(nil), buf...)
			break
		}
		buf = buf[n:]
	}
	return len(p), nil
}

// step interprets the start of b and returns the bytes it used; 0 when b
// starts with an incomplete sequence.
func (s *Screen) step(b []byte) (int, error) {
	switch c := b[0]; {
	case c == '\r':
		s.col = 0
		return 1, nil
	case c == '\n':
		s.row, s.col = s.row+1, 0
		return 1, nil
	case c == 0x1b:
		if len(b) < 3 {
			return 0, nil
		}
		if b[1] == '[' && b[2] == 'K' {
			s.line()
			if s.col < len(s.lines[s.row]) {
				s.lines[s.row] = s.lines[s.row][:s.col]
			}
			return 3, nil
		}
		return 0, fmt.Errorf("terminaltest: escape sequence %q not modelled", b[:3])
	case c < 0x20 || c == 0x7f:
		return 0, fmt.Errorf("terminaltest: control character %#x not modelled", c)
	}
	if !utf8.FullRune(b) {
		return 0, nil
	}
	r, n := utf8.DecodeRune(b)
	s.line()
	l := s.lines[s.row]
	for len(l) < s.col {
		l = append(l, ' ')
	}
	if s.col < len(l) {
		l[s.col] = r
	} else {
		l = append(l, r)
	}
	s.lines[s.row] = l
	s.col++
	return n, nil
}

// line makes sure the cursor's line exists.
func (s *Screen) line() {
	for len(s.lines) <= s.row {
		s.lines = append(s.lines, nil)
	}
}

// Lines are the lines shown, less empty ones at the end.
func (s *Screen) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.lines))
	for _, l := range s.lines {
		out = append(out, string(l))
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// Cursor is the cursor's line and column.
func (s *Screen) Cursor() (row, col int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.row, s.col
}

// Raw is every byte written.
func (s *Screen) Raw() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.String()
}
