package hub

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether.dev/tether/channel/server"
)

// TestSlowWebhookFlood: 200 webhooks that send half a megabyte of body
// and then nothing more, without a secret or with a forged signature,
// against the hub's real HTTP server. The hub answers each (401 unread,
// or 408 once the request deadline passes) and closes it, and its heap
// stays flat: no request can make it hold its body for long, or many
// bodies at once.
func TestSlowWebhookFlood(t *testing.T) {
	s, _, _ := newHub(t, Options{WebhookSecret: []byte("hook-secret")})
	addr := serveLikeTetherHub(t, s, server.ServerOptions{RequestTimeout: time.Second, MaxConcurrentRequests: 1000})

	const conns = 200
	const declared, sent = 1000 << 10, 512 << 10 // under the 1 MiB limit: the body is worth reading
	chunk := bytes.Repeat([]byte("x"), sent)
	forged := strings.Repeat("ab", 32)
	kinds := []struct{ path, header string }{
		{"/hooks/gitlab", ""},
		{"/hooks/github", "X-GitHub-Event: push\r\n"},
		{"/hooks/github", "X-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=" + forged + "\r\n"},
	}

	runtime.GC()
	base := heapInUse()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h := heapInUse(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[int]int{}
	var hung []string
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := kinds[i%len(kinds)]
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n", k.path, k.header, declared)
			c.Write(chunk) // fails once the hub has answered and closed: fine
			// Then silence. Only a hub that never cuts the request would
			// reach this deadline: it fails the test, it does not hang it.
			c.SetReadDeadline(time.Now().Add(time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					hung = append(hung, k.path+" "+k.header)
				}
				answers[0]++ // reset before the answer was read
				return
			}
			answers[resp.StatusCode]++
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	if len(hung) > 0 {
		t.Errorf("%d slow requests were never cut, e.g. %q", len(hung), hung[0])
	}
	for code, n := range answers {
		switch code {
		case 0, http.StatusUnauthorized, http.StatusRequestTimeout, http.StatusServiceUnavailable:
		default:
			t.Errorf("%d answers %d", n, code)
		}
	}
	t.Logf("answers %v; heap in use %d MiB at start, %d MiB at its peak", answers, base>>20, peak.Load()>>20)
	// 200 bodies of 512 KiB held at once would be 100 MiB and more.
	if grew := int64(peak.Load()) - int64(base); grew > 48<<20 {
		t.Errorf("the heap grew by %d MiB under the flood", grew>>20)
	}
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
