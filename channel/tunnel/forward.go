package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"tether.dev/tether/channel/channelpb"
)

// Limits of one tunnelled request at the hub.
const (
	// MaxRequestBody caps a request's body (the API server's own limit
	// for one object is 3 MiB; a patch or a bulk create stays under this).
	MaxRequestBody = 16 << 20
	// maxHeaders caps the headers forwarded, and their total size.
	maxHeaders     = 64
	maxHeaderBytes = 64 << 10
)

// Forward carries one HTTP request through m to the agent and streams the
// answer back: path is the API server path ("/api/v1/pods"), caller who
// the hub says is calling. It returns when the answer is complete, the
// client goes away (the agent's request is cancelled), or the stream
// fails; a failure after the answer began aborts the HTTP response, so
// the client sees an error and never a silently truncated body.
func Forward(w http.ResponseWriter, r *http.Request, m *Mux, path string, caller *channelpb.TunnelCaller) {
	if strings.EqualFold(r.Header.Get("Connection"), "upgrade") || r.Header.Get("Upgrade") != "" {
		// exec, attach and port-forward upgrade the connection; the tunnel
		// carries plain requests only.
		WriteStatus(w, http.StatusNotImplemented, "NotImplemented", "the hub's tunnel does not carry upgraded connections (exec, attach, port-forward)")
		return
	}
	if r.ContentLength > MaxRequestBody {
		WriteStatus(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", fmt.Sprintf("request body over %d bytes", MaxRequestBody))
		return
	}
	headers, err := forwardHeaders(r.Header)
	if err != nil {
		WriteStatus(w, http.StatusRequestHeaderFieldsTooLarge, "BadRequest", err.Error())
		return
	}
	req := &channelpb.TunnelRequest{Method: r.Method, Path: path, RawQuery: r.URL.RawQuery, Headers: headers, Caller: caller}
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	ctx := r.Context()
	st, err := m.Open(ctx, req, noBody)
	if err != nil {
		writeOpenError(w, err)
		return
	}
	defer st.Close()
	if !noBody {
		go sendBody(st, http.MaxBytesReader(w, r.Body, MaxRequestBody))
	}
	resp, err := st.Response(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		writeStreamError(w, err)
		return
	}
	for _, h := range resp.GetHeaders() {
		name := http.CanonicalHeaderKey(h.GetName())
		if hopByHop[name] || name == "Set-Cookie" {
			// The answer is served from the hub's origin: a cookie from
			// the cluster side would land on the hub's page.
			continue
		}
		for _, v := range h.GetValues() {
			w.Header().Add(h.GetName(), v)
		}
	}
	code := int(resp.GetStatus())
	if code < 100 || code > 999 {
		code = http.StatusBadGateway
	}
	w.WriteHeader(code)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		// A watch's headers reach kubectl before its first event.
		flusher.Flush()
	}
	for {
		chunk, buffered, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			// The client is gone, the agent aborted, or the channel
			// closed: break the connection rather than end the body.
			panic(http.ErrAbortHandler)
		}
		if _, err := w.Write(chunk); err != nil {
			return
		}
		if !buffered && flusher != nil {
			flusher.Flush()
		}
	}
}

// sendBody streams the request body to the agent, then ends it. A body
// over the limit or a failed read aborts the stream.
func sendBody(st *Stream, body io.Reader) {
	buf := make([]byte, MaxChunk)
	if _, err := io.CopyBuffer(st, body, buf); err != nil {
		st.Reset("request body: " + err.Error())
		return
	}
	_ = st.CloseWrite()
}

// forwardHeaders keeps the request's end-to-end headers, minus anything
// that names an identity (the agent strips those again: it trusts nothing
// the hub sends about identity but the caller's name).
func forwardHeaders(h http.Header) ([]*channelpb.Header, error) {
	var out []*channelpb.Header
	size := 0
	for name, values := range h {
		if hopByHop[name] || identityHeader(name) {
			continue
		}
		for _, v := range values {
			size += len(name) + len(v)
		}
		out = append(out, &channelpb.Header{Name: name, Values: values})
	}
	if len(out) > maxHeaders || size > maxHeaderBytes {
		return nil, fmt.Errorf("request headers: over %d headers or %d bytes", maxHeaders, maxHeaderBytes)
	}
	return out, nil
}

// writeOpenError answers a stream that could not open.
func writeOpenError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrBusy) {
		w.Header().Set("Retry-After", "1")
		WriteStatus(w, http.StatusTooManyRequests, "TooManyRequests", err.Error()+"; retry later")
		return
	}
	writeStreamError(w, err)
}

// writeStreamError answers a request whose stream failed before the
// response: the agent went away (a reconnect is a retry away) or aborted.
func writeStreamError(w http.ResponseWriter, err error) {
	var reset *ResetError
	switch {
	case errors.As(err, &reset):
		WriteStatus(w, http.StatusBadGateway, "InternalError", "the agent aborted the request: "+reset.Reason)
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		// No Retry-After: client-go would retry for up to ten of them
		// before the user sees why.
		WriteStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the agent's channel closed during the request (agent restarting or reconnecting); retry")
	default:
		WriteStatus(w, http.StatusServiceUnavailable, "ServiceUnavailable", "the agent's channel failed during the request; retry")
	}
}
