package terminal

import (
	"io"
	"os"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/term"
)

// Console is where a command's log lines go (stderr) and, on a terminal,
// one status line below them, redrawn in place: a progress line (Meter).
// A write clears the status line first, so that what is written starts at
// column 0 on a line of its own, and draws it again after, once the
// written text has ended its line. Writers that write whole lines in one
// Write (slog's handlers do) are never cut by it. On anything but a
// terminal (a file, a pipe: cron) a Console only passes writes through and
// draws nothing. It is safe for concurrent use.
type Console struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	width   func() int // the terminal's columns; 0 unknown
	status  string     // the status line to show; "" none
	shown   bool       // the status line is on screen, the cursor at its end
	midLine bool       // the last write left text on the cursor's line
}

// NewConsole returns the console writing to w: a terminal when w is an
// *os.File on one, whose width it reads at each draw.
func NewConsole(w io.Writer) *Console {
	c := &Console{w: w, width: func() int { return 0 }}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		c.tty = true
		c.width = func() int {
			cols, _, err := term.GetSize(fd)
			if err != nil {
				return 0
			}
			return cols
		}
	}
	return c
}

// NewTerminal returns a console that takes w for a terminal width columns
// wide (a fake terminal in tests, terminaltest.Screen).
func NewTerminal(w io.Writer, width int) *Console {
	return &Console{w: w, tty: true, width: func() int { return width }}
}

// TTY reports whether the console is a terminal (status lines are drawn).
func (c *Console) TTY() bool { return c.tty }

// Write writes p below the status line: the status line is cleared first
// and drawn again after p when p ends its line. Drawing the status line is
// best effort: its failure is not the write's.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	c.clear()
	n, err := c.w.Write(p)
	if n > 0 {
		c.midLine = p[n-1] != '\n'
	}
	if err == nil {
		c.draw()
	}
	return n, err
}

// SetStatus shows s as the status line (cut to the terminal's width), in
// place of the one shown; "" removes it. It draws nothing on a console that
// is not a terminal, and waits for the end of a line written in part.
func (c *Console) SetStatus(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty {
		return
	}
	s = fit(s, c.width())
	if s == c.status && (c.shown || s == "") {
		return
	}
	c.status = s
	c.draw()
}

// clear removes the status line from the screen, leaving the cursor at
// column 0 of its line.
func (c *Console) clear() {
	if c.shown {
		c.shown = false
		_, _ = io.WriteString(c.w, "\r\x1b[K")
	}
}

// draw shows the status line in place of the one on screen, unless the
// cursor is after text of a line not yet ended.
func (c *Console) draw() {
	if !c.tty || c.midLine || (!c.shown && c.status == "") {
		return
	}
	out := c.status
	if c.shown {
		out = "\r\x1b[K" + out
	}
	c.shown = c.status != ""
	_, _ = io.WriteString(c.w, out)
}

// fit cuts s to fewer runes than width (a line as wide as the terminal
// would wrap on some), ending it with an ellipsis when cut; width 0 is 80.
func fit(s string, width int) string {
	if width <= 0 {
		width = 80
	}
	if utf8.RuneCountInString(s) < width {
		return s
	}
	var b strings.Builder
	for i, r := range []rune(s) {
		if i == width-2 {
			break
		}
		b.WriteRune(r)
	}
	b.WriteString("…")
	return b.String()
}
