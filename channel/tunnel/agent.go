package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"k8s.io/client-go/rest"

	"tether.dev/tether/channel/channelpb"
)

// AgentOptions configure the agent's half of the tunnel.
type AgentOptions struct {
	// Config reaches the cluster's API server. Its credentials are only
	// used to impersonate: every request carries Impersonate-User, so
	// the agent needs RBAC verb "impersonate" on users, groups and
	// serviceaccounts, and never lends its own rights.
	Config *rest.Config
	// Namespace holds the ConfigMap tether-access.
	Namespace string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxConcurrent caps the requests served at once (default 256); more
	// get 429.
	MaxConcurrent int
	// MaxResponseBytes caps one answer that is not a watch or a log
	// follow (default 1 GiB); a larger one is aborted.
	MaxResponseBytes int64
	// Objects reads a GitSync's objects from the drift watch cache, for
	// the hub's GitSync page (ObjectsPath); nil: that path answers 501.
	Objects ObjectsFunc
}

// Agent serves tunnelled requests against its cluster's API server, as
// the identity the access configuration grants the caller.
type Agent struct {
	opts   AgentOptions
	log    *slog.Logger
	rt     http.RoundTripper
	base   *url.URL
	access atomic.Pointer[accessState]
}

// accessState is the access configuration as last read: a parsed file,
// or why there is none (no ConfigMap, or a bad one).
type accessState struct {
	access *Access
	err    error
	absent bool
}

// Defaults of AgentOptions.
const (
	defaultConcurrent    = 256
	defaultMaxResponse   = 1 << 30
	responseCopyBuffer   = MaxChunk
	watchCopyBuffer      = 4 << 10
	maxMethodLength      = 32
	maxRequestPathLength = 8 << 10
)

// NewAgent prepares the agent's half; nothing is granted until Run has
// read the access ConfigMap.
func NewAgent(o AgentOptions) (*Agent, error) {
	if o.Config == nil || o.Namespace == "" {
		return nil, errors.New("tunnel: a cluster config and the agent's namespace are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = defaultConcurrent
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = defaultMaxResponse
	}
	cfg := rest.CopyConfig(o.Config)
	if cfg.Impersonate.UserName != "" || len(cfg.Impersonate.Groups) > 0 {
		// client-go would overwrite our impersonation headers with its own.
		return nil, errors.New("tunnel: the agent's cluster config impersonates already; the tunnel needs a config that does not")
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("tunnel: transport to the API server: %w", err)
	}
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	base, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("tunnel: API server URL %q: %w", cfg.Host, err)
	}
	// A host with a path (an API server behind a path prefix) keeps it.
	base.Path = strings.TrimSuffix(base.Path, "/")
	base.RawQuery, base.Fragment = "", ""
	return &Agent{opts: o, log: o.Logger.With("component", "tunnel"), rt: rt, base: base}, nil
}

// NewMux returns the Mux for one channel stream, serving every request
// that arrives on it.
func (a *Agent) NewMux(send SendFunc) *Mux {
	return NewMux(send, a.serve, a.opts.MaxConcurrent)
}

// SetAccess installs an access configuration: the parsed file, or the
// error that refuses everything. Run calls it on every change of the
// ConfigMap; tests may call it directly.
func (a *Agent) SetAccess(acc *Access, err error) {
	a.access.Store(&accessState{access: acc, err: err})
}

// setAbsent records that there is no ConfigMap: everything is refused.
func (a *Agent) setAbsent() { a.access.Store(&accessState{absent: true}) }

// decide returns the identity for caller, or the refusal's status code
// and message.
func (a *Agent) decide(caller *channelpb.TunnelCaller) (Identity, int, string) {
	st := a.access.Load()
	who := callerString(caller)
	switch {
	case st == nil:
		return Identity{}, http.StatusServiceUnavailable, "the agent has not read its access configuration yet; retry"
	case st.err != nil:
		return Identity{}, http.StatusForbidden, fmt.Sprintf("%s: refused: the agent's access configuration (ConfigMap %s/%s) is invalid; its log says why", who, a.opts.Namespace, AccessConfigMap)
	case st.absent:
		return Identity{}, http.StatusForbidden, fmt.Sprintf("%s: refused: this cluster grants no tunnel access (no ConfigMap %s/%s)", who, a.opts.Namespace, AccessConfigMap)
	}
	id, ok := st.access.IdentityFor(caller)
	if !ok {
		return Identity{}, http.StatusForbidden, fmt.Sprintf("%s: refused: not granted in ConfigMap %s/%s", who, a.opts.Namespace, AccessConfigMap)
	}
	return id, 0, ""
}

func callerString(c *channelpb.TunnelCaller) string {
	switch c.GetKind() {
	case channelpb.CallerKind_CALLER_KIND_PROJECT:
		return fmt.Sprintf("project %q", c.GetName())
	case channelpb.CallerKind_CALLER_KIND_USER:
		return fmt.Sprintf("user %q", c.GetName())
	}
	return "an unnamed caller"
}

// serve runs one tunnelled request to its end.
func (a *Agent) serve(st *Stream, req *channelpb.TunnelRequest) {
	defer st.Close()
	ctx := st.Context()
	id, code, msg := a.decide(req.GetCaller())
	if code != 0 {
		a.log.Info("tunnel request refused", "caller", callerString(req.GetCaller()), "method", req.GetMethod(), "path", req.GetPath(), "code", code)
		a.answer(st, code, msg)
		return
	}
	if IsAgentPath(req.GetPath()) {
		a.serveAgentPath(st, req, id)
		return
	}
	hr, err := a.apiRequest(ctx, st, req, id)
	if err != nil {
		a.answer(st, http.StatusBadRequest, err.Error())
		return
	}
	resp, err := a.rt.RoundTrip(hr)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("tunnel request: the API server did not answer", "method", req.GetMethod(), "path", req.GetPath(), "error", err)
		a.answer(st, http.StatusBadGateway, "the agent could not reach its API server")
		return
	}
	defer resp.Body.Close()
	a.log.Debug("tunnel request", "caller", callerString(req.GetCaller()), "as", id.User, "method", req.GetMethod(), "path", req.GetPath(), "code", resp.StatusCode)
	out := &channelpb.TunnelResponse{Status: int32(resp.StatusCode)}
	for name, values := range resp.Header {
		if !hopByHop[name] {
			out.Headers = append(out.Headers, &channelpb.Header{Name: name, Values: values})
		}
	}
	if err := st.Respond(ctx, out); err != nil {
		return
	}
	var body io.Reader = resp.Body
	limited := !streaming(req)
	// A watch spends its life waiting with its buffer: a small one keeps
	// many open watches cheap; a list wants full frames.
	buf := make([]byte, watchCopyBuffer)
	if limited {
		body = io.LimitReader(resp.Body, a.opts.MaxResponseBytes+1)
		buf = make([]byte, responseCopyBuffer)
	}
	n, err := io.CopyBuffer(st, body, buf)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			st.Reset("reading the API server's answer failed")
		}
	case limited && n > a.opts.MaxResponseBytes:
		st.Reset(fmt.Sprintf("answer larger than %d bytes; use a smaller list (limit/continue)", a.opts.MaxResponseBytes))
	default:
		_ = st.CloseWrite()
	}
}

// apiRequest builds the request to the API server: the caller's path,
// query and harmless headers, and the granted identity; never the
// caller's credentials or impersonation headers.
func (a *Agent) apiRequest(ctx context.Context, st *Stream, req *channelpb.TunnelRequest, id Identity) (*http.Request, error) {
	method, path := req.GetMethod(), req.GetPath()
	if method == "" || len(method) > maxMethodLength || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return nil, fmt.Errorf("method %.32q is not an HTTP method", method)
	}
	if !strings.HasPrefix(path, "/") || len(path) > maxRequestPathLength || strings.ContainsAny(path, "?#\x00") || hasDotSegment(path) {
		return nil, fmt.Errorf("path %.80q is not an API path", path)
	}
	u := *a.base
	u.Path = a.base.Path + path
	u.RawPath = ""
	u.RawQuery = req.GetRawQuery()
	var body io.Reader = http.NoBody
	if st.hasBody() {
		body = st
	}
	hr, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	for _, h := range req.GetHeaders() {
		name := http.CanonicalHeaderKey(h.GetName())
		if hopByHop[name] || identityHeader(name) {
			continue
		}
		hr.Header[name] = h.GetValues()
	}
	if body != http.NoBody {
		hr.ContentLength = -1
		for _, h := range req.GetHeaders() {
			if http.CanonicalHeaderKey(h.GetName()) == "Content-Length" && len(h.GetValues()) == 1 {
				if n, err := strconv.ParseInt(h.GetValues()[0], 10, 64); err == nil && n >= 0 {
					hr.ContentLength = n
				}
			}
		}
	}
	hr.Header.Set("Impersonate-User", id.User)
	for _, g := range id.Groups {
		hr.Header.Add("Impersonate-Group", g)
	}
	return hr, nil
}

// hasDotSegment says whether path has a "." or ".." segment, which a
// client may use to reach another path than the one it names.
func hasDotSegment(path string) bool {
	for seg := range strings.SplitSeq(path, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// streaming says whether the answer is open-ended (a watch, a log follow),
// so no size cap applies.
func streaming(req *channelpb.TunnelRequest) bool {
	q, _ := url.ParseQuery(req.GetRawQuery())
	if b, _ := strconv.ParseBool(q.Get("watch")); b {
		return true
	}
	if b, _ := strconv.ParseBool(q.Get("follow")); b {
		return true
	}
	return strings.Contains(req.GetPath(), "/watch/")
}

// answer sends the agent's own Status response and ends the stream.
func (a *Agent) answer(st *Stream, code int, message string) {
	reason := http.StatusText(code)
	switch code {
	case http.StatusForbidden:
		reason = "Forbidden"
	case http.StatusBadRequest:
		reason = "BadRequest"
	case http.StatusServiceUnavailable:
		reason = "ServiceUnavailable"
	case http.StatusBadGateway:
		reason = "InternalError"
	}
	ctx := st.Context()
	if err := st.Respond(ctx, &channelpb.TunnelResponse{Status: int32(code), Headers: []*channelpb.Header{
		{Name: "Content-Type", Values: []string{"application/json"}},
	}}); err != nil {
		return
	}
	if _, err := st.Write(statusBody(code, reason, message)); err != nil {
		return
	}
	_ = st.CloseWrite()
}
