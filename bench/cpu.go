package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// usage is what a scenario used: wall time, this process's CPU and the
// PostgreSQL server's (-1 when it could not be read).
type usage struct {
	elapsed, self, server time.Duration
}

// meter measures a scenario from its creation to stop.
type meter struct {
	r             *runner
	t0            time.Time
	self0, server time.Duration
}

// meter starts measuring. The server's CPU is read first, so that reading
// it (a walk of /proc) is not counted in this process's.
func (r *runner) meter() *meter {
	m := &meter{r: r, server: r.serverCPU()}
	m.self0, m.t0 = selfCPU(), time.Now()
	return m
}

func (m *meter) stop() usage {
	u := usage{elapsed: time.Since(m.t0), self: selfCPU() - m.self0, server: -1}
	if after := m.r.serverCPU(); m.server >= 0 && after >= 0 {
		u.server = after - m.server
	}
	return u
}

// serverCPU is the bench's PostgreSQL server's CPU so far (-1 when /proc
// does not tell: not Linux).
func (r *runner) serverCPU() time.Duration {
	d, err := treeCPU(r.srv.Pid())
	if err != nil {
		r.logf("PostgreSQL's CPU not measured: %v", err)
		return -1
	}
	return d
}

// clockTick is Linux's USER_HZ, the unit of /proc/<pid>/stat's times.
const clockTick = 10 * time.Millisecond

// treeCPU is the user+system CPU of process pid, of its live children
// (PostgreSQL's backends and its own processes are the postmaster's), and
// of its children that ended and were waited for. A child reaped while the
// children are read would count twice or not at all: the read is repeated
// until pid's waited-for children's time is the same before and after it.
func treeCPU(pid int) (time.Duration, error) {
	for range 10 {
		own, reaped, _, err := procCPU(pid)
		if err != nil {
			return 0, err
		}
		kids, err := childrenCPU(pid)
		if err != nil {
			return 0, err
		}
		_, again, _, err := procCPU(pid)
		if err != nil {
			return 0, err
		}
		if again == reaped {
			return own + reaped + kids, nil
		}
	}
	return 0, errors.New("the server's processes kept ending while they were read")
}

// childrenCPU is the user+system CPU of pid's live children (zombies
// included: their time is not yet in pid's).
func childrenCPU(pid int) (time.Duration, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		own, _, ppid, err := procCPU(child)
		if err != nil || ppid != pid {
			continue // gone, or not the server's
		}
		sum += own
	}
	return sum, nil
}

// procCPU reads /proc/<pid>/stat: the process's user+system CPU, that of
// its children it waited for, and its parent.
func procCPU(pid int) (own, reaped time.Duration, ppid int, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is in parentheses and may hold spaces: the fields
	// after it start with the state (field 3 of proc(5)).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	var n [5]int64 // ppid (field 4), utime, stime, cutime, cstime (14-17)
	for k, j := range []int{1, 11, 12, 13, 14} {
		if n[k], err = strconv.ParseInt(string(f[j]), 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return time.Duration(n[1]+n[2]) * clockTick, time.Duration(n[3]+n[4]) * clockTick, int(n[0]), nil
}
