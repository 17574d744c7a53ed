package replica

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"tether.dev/tether/channel/tunnel"
)

// HopHeader marks a request one replica passed to another; its value
// names the replica that passed it. A replica serves such a request
// itself or fails it, never passes it on, so no request loops. It grants
// nothing: the request is checked like any other.
const HopHeader = "Tether-Forwarded-By"

// Forwarder passes requests on to peer replicas as they came: method,
// path, query, headers (the caller's Authorization included: the peer
// checks it against the shared database) and body, streamed both ways
// with every write flushed at once, so a watch stays open and an
// upgraded connection (exec, port-forward) works.
type Forwarder struct {
	// Self names this replica in HopHeader.
	Self string
	// Transport reaches the peers; nil is a transport of its own.
	Transport http.RoundTripper
}

// transport is the default: peers are close, a dial that hangs is a dead
// peer.
var transport = PeerTransport(nil)

// PeerTransport is a transport to peer replicas whose https:// peer URLs
// are served with certificates signed by roots (nil: the system's roots).
// It never goes through a proxy: peers are reached directly.
func PeerTransport(roots *x509.CertPool) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&netDialer).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 0, // a watch's headers may take a while
		ForceAttemptHTTP2:     false,
	}
}

// Forward serves r by passing it to the replica at peerURL.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, peerURL string) {
	target, err := url.Parse(peerURL)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		tunnel.WriteStatus(w, http.StatusBadGateway, "InternalError", "the hub replica that holds the agent has no usable peer URL")
		return
	}
	rt := f.Transport
	if rt == nil {
		rt = transport
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// SetURL joins the target's path; keep the caller's as is.
			pr.Out.URL.Path, pr.Out.URL.RawPath = r.URL.Path, r.URL.RawPath
			pr.Out.Host = r.Host
			pr.Out.Header.Set(HopHeader, f.Self)
		},
		Transport:     rt,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			tunnel.WriteStatus(w, http.StatusBadGateway, "InternalError", "the hub replica that holds the agent did not answer")
		},
	}
	p.ServeHTTP(w, r)
}

var netDialer = net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
