package integration

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// proxyMode is what the fault proxy does to the bytes it carries.
type proxyMode int32

const (
	pass      proxyMode = iota // forward
	cut                        // close every connection, new ones after a few KB of results
	delay                      // hold every read 50 ms before forwarding it
	blackhole                  // accept and read, forward nothing: the peer hears silence
)

// faultProxy is a TCP proxy on loopback between the engine and its source
// that cuts, delays or black-holes the traffic on command, and counts the
// faults it injected.
type faultProxy struct {
	ln     net.Listener
	target string
	mode   atomic.Int32
	rng    *rand.Rand
	mu     sync.Mutex
	conns  map[net.Conn]bool
	// Counts of faults injected.
	cuts, delayed, dropped atomic.Int64
}

func newFaultProxy(t *testing.T, target string, seed uint64) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &faultProxy{ln: ln, target: target, rng: rand.New(rand.NewPCG(seed, 2)), conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.closeAll()
	})
	go p.accept()
	return p
}

func (p *faultProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// set switches the mode; cut also cuts every open connection now.
func (p *faultProxy) set(m proxyMode) {
	p.mode.Store(int32(m))
	if m == cut {
		p.cuts.Add(int64(p.closeAll()))
	}
}

func (p *faultProxy) closeAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
		n++
	}
	return n
}

func (p *faultProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[c] = true
}

func (p *faultProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.track(client)
		p.track(server)
		p.mu.Lock()
		budget := int64(2000 + p.rng.IntN(40000)) // results a new connection gets in cut mode
		p.mu.Unlock()
		go p.pipe(client, server, -1)
		go p.pipe(server, client, budget)
	}
}

// pipe copies src to dst by the current mode; budget bounds the bytes a
// connection carries in cut mode (-1: the client's side, never cut by size).
func (p *faultProxy) pipe(src, dst net.Conn, budget int64) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 16<<10)
	var carried int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			switch proxyMode(p.mode.Load()) {
			case cut:
				if budget >= 0 && carried+int64(n) > budget {
					p.cuts.Add(1)
					return
				}
			case delay:
				p.delayed.Add(1)
				time.Sleep(50 * time.Millisecond)
			case blackhole:
				p.dropped.Add(1)
				continue
			}
			carried += int64(n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // EOF or a cut: either way this direction is done
			return
		}
	}
}
