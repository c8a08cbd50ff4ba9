package terminaltest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScreen(t *testing.T) {
	var s Screen
	for _, w := range []string{"status line", "\r\x1b", "[Klog 1\n", "status\rST", "\n", "x\xc3", "\xa9"} {
		_, err := s.Write([]byte(w))
		require.NoError(t, err)
	}
	require.Equal(t, []string{"log 1", "STatus", "xé"}, s.Lines())
	row, col := s.Cursor()
	require.Equal(t, [2]int{2, 2}, [2]int{row, col})

	_, err := s.Write([]byte("\x1b[2J"))
	require.ErrorContains(t, err, "not modelled")
	_, err = s.Write([]byte("\t"))
	require.ErrorContains(t, err, "not modelled")
}
