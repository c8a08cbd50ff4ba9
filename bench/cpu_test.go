package bench

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// burn is a shell loop that spends CPU until killed, or n iterations.
func burn(n string) *exec.Cmd {
	return exec.Command("sh", "-c", `i=0; while [ "$i" -lt `+n+` ]; do i=$((i+1)); done`)
}

// A process tree's CPU takes in its live children and those that ended.
func TestTreeCPUCountsLiveAndEndedChildren(t *testing.T) {
	pid := os.Getpid()
	before, err := treeCPU(pid)
	require.NoError(t, err)
	own0, _, _, err := procCPU(pid)
	require.NoError(t, err)

	ended := burn("300000")
	require.NoError(t, ended.Run())
	endedCPU := ended.ProcessState.UserTime() + ended.ProcessState.SystemTime()
	require.Positive(t, endedCPU)

	live := burn("1000000000")
	require.NoError(t, live.Start())
	t.Cleanup(func() { _ = live.Process.Kill(); _ = live.Wait() })
	var liveCPU time.Duration
	for liveCPU < 5*clockTick {
		time.Sleep(clockTick)
		liveCPU, _, _, err = procCPU(live.Process.Pid)
		require.NoError(t, err)
	}
	after, err := treeCPU(pid)
	require.NoError(t, err)
	own1, _, _, err := procCPU(pid)
	require.NoError(t, err)
	// Times in /proc are whole ticks; the tree's own share is this process's.
	require.GreaterOrEqual(t, after-before-(own1-own0), endedCPU+liveCPU-2*clockTick)
}
