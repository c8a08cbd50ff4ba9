package source

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNotTDS(t *testing.T) {
	tests := []struct {
		name  string
		first firstBytes
		head  []byte
		want  string // "" = what SQL Server sends
	}{
		{"prelogin response", firstTDS, []byte{0x04, 0x01, 0x00, 0x25}, ""},
		{"http", firstTDS, []byte("HTTP"), "an HTTP response"},
		{"tls alert where tds", firstTDS, []byte{0x15, 0x03, 0x03, 0x00}, "TLS where SQL Server answers in TDS (a TLS-only service, or SQL Server 2022 forcing strict encryption: then set tls.mode: strict)"},
		{"ssh banner", firstTDS, []byte("SSH-"), "bytes 53 53 48 2d"},
		{"reply shorter than its header", firstTDS, []byte{0x04, 0x01, 0x00, 0x07}, "bytes 04 01 00 07"},
		{"two bytes then close", firstTDS, []byte{0x04, 0x01}, "bytes 04 01"},
		{"tls handshake in strict", firstTLS, []byte{0x16, 0x03, 0x03, 0x00}, ""},
		{"tls alert in strict", firstTLS, []byte{0x15, 0x03, 0x01, 0x00}, ""},
		{"http in strict", firstTLS, []byte("HTTP"), "an HTTP response"},
		{"postgres not judged", firstAny, []byte("HTTP"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, notTDS(tt.first, tt.head))
		})
	}
}

func TestPrelogin(t *testing.T) {
	p := preloginPacket()
	require.Equal(t, byte(0x12), p[0], "PRELOGIN")
	require.Equal(t, byte(0x01), p[1], "end of message")
	require.Equal(t, len(p), int(p[2])<<8|int(p[3]))
	// The options as SQL Server reads them: VERSION at 11 (6 bytes),
	// ENCRYPTION at 17 (1 byte, off), terminator.
	require.Equal(t, []byte{0, 0, 11, 0, 6, 1, 0, 17, 0, 1, 0xFF}, p[8:19])
	require.Equal(t, byte(0), p[len(p)-1])

	// A SQL Server 2019 answer: VERSION 15.0.4153.
	resp := []byte{0, 0, 11, 0, 6, 1, 0, 17, 0, 1, 0xFF, 15, 0, 0x10, 0x39, 0, 0, 0}
	require.Equal(t, "15.0.4153", preloginVersion(resp))
	require.Equal(t, "", preloginVersion([]byte{1, 0, 6, 0, 1, 0xFF, 0}), "no VERSION option")
	require.Equal(t, "", preloginVersion([]byte{0, 0, 40, 0, 6, 0xFF}), "VERSION outside the body")
	require.Equal(t, "", preloginVersion(nil))
}
