package replica

import (
	"bufio"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
)

// Forward passes the request on as it came (path, query, the caller's
// Authorization) with the hop header, and streams the answer: the first
// line of a watch reaches the caller while the peer still holds the
// response open.
func TestForwardStreams(t *testing.T) {
	release := make(chan struct{})
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HopHeader) != "hub-b" || r.Header.Get("Authorization") != "Bearer tok" ||
			r.URL.Path != "/k8s-proxy/prod/api/v1/configmaps" || r.URL.RawQuery != "watch=1" {
			http.Error(w, "unexpected request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("event one\n"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("event two\n"))
	}))
	defer peer.Close()
	fwd := &Forwarder{Self: "hub-b"}
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fwd.Forward(w, r, peer.URL)
	}))
	defer hub.Close()

	req, _ := http.NewRequest(http.MethodGet, hub.URL+"/k8s-proxy/prod/api/v1/configmaps?watch=1", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "event one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release) // only now does the peer write the second line
	if line, err = rd.ReadString('\n'); err != nil || line != "event two\n" {
		t.Fatalf("second line %q, %v", line, err)
	}
}

// A peer that does not answer is a 502 with a Kubernetes Status, not a
// hang or an empty reply.
func TestForwardDeadPeer(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	url := dead.URL
	dead.Close()
	rec := httptest.NewRecorder()
	(&Forwarder{Self: "hub-b"}).Forward(rec, httptest.NewRequest(http.MethodGet, "/k8s-proxy/prod/api", nil), url)
	if rec.Code != http.StatusBadGateway || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("dead peer: %d %q %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
}

// A peer served over HTTPS under a private CA is reached with that CA,
// and refused (502) by a forwarder that trusts only the system's roots.
func TestForwardPeerCA(t *testing.T) {
	peer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("from the peer"))
	}))
	defer peer.Close()
	roots := x509.NewCertPool()
	roots.AddCert(peer.Certificate())
	for _, tc := range []struct {
		name string
		fwd  *Forwarder
		want int
	}{
		{"the peer's CA", &Forwarder{Self: "hub-a", Transport: PeerTransport(roots)}, http.StatusOK},
		{"system roots only", &Forwarder{Self: "hub-a"}, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tc.fwd.Forward(rec, httptest.NewRequest(http.MethodGet, "/k8s-proxy/prod/api", nil), peer.URL)
			if rec.Code != tc.want {
				t.Errorf("status %d (%s), want %d", rec.Code, rec.Body, tc.want)
			}
		})
	}
}
