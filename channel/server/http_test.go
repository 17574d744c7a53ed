package server

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
)

// A taken-over h2c connection hands gRPC the bytes net/http read already,
// then the socket's, through ReadOnReady (the read that holds no buffer
// while the agent is silent), then io.EOF.
func TestPrefixedConnReadOnReady(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// A broken read fails instead of waiting for ever.
	if err := conn.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := &prefixedConn{Conn: conn, pending: []byte("preface"), raw: rawConnOf(conn)}
	defer c.Close()
	if c.raw == nil {
		t.Fatal("no raw connection for a TCP connection")
	}
	pool := mem.DefaultBufferPool()
	read := func() (string, error) {
		buf, n, err := c.ReadOnReady(4, pool)
		if err != nil {
			return "", err
		}
		defer pool.Put(buf)
		return string((*buf)[:n]), nil
	}
	if _, err := peer.Write([]byte("frames")); err != nil {
		t.Fatal(err)
	}
	var got string
	for len(got) < len("prefaceframes") {
		s, err := read()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got += s
	}
	if got != "prefaceframes" {
		t.Errorf("read %q, want the pending bytes, then the socket's", got)
	}
	peer.Close()
	if s, err := read(); !errors.Is(err, io.EOF) {
		t.Errorf("after the peer closed: %q, %v; want io.EOF", s, err)
	}
}
