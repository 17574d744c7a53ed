package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// front is "one address" for several hub replicas, as an Ingress or a
// load balancer is: it terminates TLS (agents and kubectl send tokens
// only over TLS) and spreads connections round robin over the replicas'
// plain ports, skipping one it cannot dial (a dead one).
type front struct {
	l    net.Listener
	addr string

	mu       sync.Mutex
	backends []string
	next     int
	pinned   int // -1: round robin
}

// newFront listens on 127.0.0.1 with cert and key and spreads connections
// over backends (host:port), starting with backends[first].
func newFront(t *testing.T, certFile, keyFile string, first int, backends ...string) *front {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// http/1.1 first: the replicas take cleartext HTTP/2 for gRPC only, so
	// kubectl, which offers both, speaks HTTP/1.1; the agent offers h2
	// alone.
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1", "h2"}}
	l, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	f := &front{l: l, addr: l.Addr().String(), backends: backends, next: first, pinned: -1}
	t.Cleanup(func() { l.Close() })
	go f.serve()
	return f
}

// pin sends every new connection to backends[i]; -1 goes back to round
// robin.
func (f *front) pin(i int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pinned = i
}

func (f *front) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		go f.relay(c)
	}
}

// relay pipes c to the next backend that answers a dial.
func (f *front) relay(c net.Conn) {
	defer c.Close()
	f.mu.Lock()
	start := f.next
	f.next = (f.next + 1) % len(f.backends)
	if f.pinned >= 0 {
		start = f.pinned
	}
	f.mu.Unlock()
	for i := range f.backends {
		b, err := net.DialTimeout("tcp", f.backends[(start+i)%len(f.backends)], 2*time.Second)
		if err != nil {
			continue
		}
		defer b.Close()
		done := make(chan struct{}, 2)
		go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
		go func() { io.Copy(c, b); c.(*tls.Conn).CloseWrite(); done <- struct{}{} }()
		<-done
		<-done
		return
	}
}
