package tdstest

import (
	"encoding/binary"
	"unicode/utf16"
	"unicode/utf8"
)

// Token types (MS-TDS 2.2.7).
const (
	tokReturnStatus = 0x79
	tokColMetadata  = 0x81
	tokError        = 0xAA
	tokInfo         = 0xAB
	tokLoginAck     = 0xAD
	tokRow          = 0xD1
	tokEnvChange    = 0xE3
	tokDone         = 0xFD
	tokDoneProc     = 0xFE
	tokDoneInProc   = 0xFF
)

// DONE status bits.
const (
	doneFinal = 0x00
	doneMore  = 0x01
	doneError = 0x02
	doneCount = 0x10
	doneAttn  = 0x20
)

// DONE CurCmd values SQL Server sends.
const (
	cmdNone    = 0x00
	cmdSelect  = 0xC1
	cmdInsert  = 0xC3
	cmdExecute = 0xE0
	cmdBegin   = 0xD4
	cmdEnd     = 0xD5
)

// ENVCHANGE types.
const (
	envDatabase   = 1
	envLanguage   = 2
	envPacketSize = 4
	envCollation  = 7
	envBeginTran  = 8
	envCommitTran = 9
	envRollback   = 10
	envResetAck   = 18
	envRouting    = 20
)

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

// appendUCS2 appends s in UTF-16LE (what TDS calls UCS-2; characters
// outside the BMP become surrogate pairs).
func appendUCS2(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			b = append(b, c, 0)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = append(b, byte(r1), byte(r1>>8), byte(r2), byte(r2>>8))
			continue
		}
		b = append(b, byte(r), byte(r>>8))
	}
	return b
}

// ucs2Len is the number of UTF-16 code units of s.
func ucs2Len(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// truncUnits cuts s to at most n UTF-16 code units.
func truncUnits(s string, n int) string {
	units := 0
	for i, r := range s {
		u := 1
		if r >= 0x10000 {
			u = 2
		}
		if units+u > n {
			return s[:i]
		}
		units += u
	}
	return s
}

func appendBVarChar(b []byte, s string) []byte {
	s = truncUnits(s, 255)
	b = append(b, byte(ucs2Len(s)))
	return appendUCS2(b, s)
}

func appendUSVarChar(b []byte, s string) []byte {
	s = truncUnits(s, 0xFFFF)
	b = appendU16(b, uint16(ucs2Len(s)))
	return appendUCS2(b, s)
}

func appendDone(b []byte, tok byte, status, cmd uint16, count uint64) []byte {
	b = append(b, tok)
	b = appendU16(b, status)
	b = appendU16(b, cmd)
	return appendU64(b, count)
}

// appendEnvString appends an ENVCHANGE whose values are B_VARCHARs.
func appendEnvString(b []byte, typ byte, newValue, oldValue string) []byte {
	b = append(b, tokEnvChange, 0, 0)
	start := len(b)
	b = append(b, typ)
	b = appendBVarChar(b, newValue)
	b = appendBVarChar(b, oldValue)
	binary.LittleEndian.PutUint16(b[start-2:], uint16(len(b)-start))
	return b
}

// appendEnvBytes appends an ENVCHANGE whose values are B_VARBYTEs.
func appendEnvBytes(b []byte, typ byte, newValue, oldValue []byte) []byte {
	b = append(b, tokEnvChange, 0, 0)
	start := len(b)
	b = append(b, typ, byte(len(newValue)))
	b = append(b, newValue...)
	b = append(b, byte(len(oldValue)))
	b = append(b, oldValue...)
	binary.LittleEndian.PutUint16(b[start-2:], uint16(len(b)-start))
	return b
}

// appendRouting appends the ENVCHANGE that routes the client elsewhere.
func appendRouting(b []byte, host string, port uint16) []byte {
	b = append(b, tokEnvChange, 0, 0)
	start := len(b)
	b = append(b, envRouting)
	b = appendU16(b, uint16(1+2+2+2*ucs2Len(host)))
	b = append(b, 0) // protocol: TCP
	b = appendU16(b, port)
	b = appendUSVarChar(b, host)
	b = appendU16(b, 0) // old value
	binary.LittleEndian.PutUint16(b[start-2:], uint16(len(b)-start))
	return b
}

// maxMessageUnits keeps an ERROR or INFO token within its USHORT length.
const maxMessageUnits = 16000

// appendMessage appends an ERROR or INFO token.
func appendMessage(b []byte, tok byte, e *Error, server string) []byte {
	b = append(b, tok, 0, 0)
	start := len(b)
	b = appendU32(b, uint32(e.Number))
	b = append(b, e.State, e.Class)
	b = appendUSVarChar(b, truncUnits(e.Message, maxMessageUnits))
	b = appendBVarChar(b, server)
	b = appendBVarChar(b, "") // procedure
	b = appendU32(b, 1)       // line number
	binary.LittleEndian.PutUint16(b[start-2:], uint16(len(b)-start))
	return b
}

func appendLoginAck(b []byte, v Version) []byte {
	const prog = "Microsoft SQL Server"
	b = append(b, tokLoginAck, 0, 0)
	start := len(b)
	b = append(b, 1)                      // interface: SQL
	b = append(b, 0x74, 0x00, 0x00, 0x04) // TDS 7.4
	b = append(b, byte(len(prog)+2))
	b = appendUCS2(b, prog)
	b = append(b, 0, 0, 0, 0) // SQL Server pads the name with two NULs
	b = append(b, v.Major, v.Minor, byte(v.Build>>8), byte(v.Build))
	binary.LittleEndian.PutUint16(b[start-2:], uint16(len(b)-start))
	return b
}
