package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
)

// The agent answers paths under agentPrefix itself; they never reach the
// API server. The hub's proxy refuses them (see IsAgentPath): only the
// hub's page asks for them, after its own read check.
const agentPrefix = "/tether/"

// ObjectsPath is the tunnel path of a GitSync's live objects (GET).
func ObjectsPath(namespace, name string) string {
	return agentPrefix + "v1/gitsyncs/" + url.PathEscape(namespace) + "/" + url.PathEscape(name) + "/objects"
}

// IsAgentPath says whether path is one the agent answers itself rather
// than forwards to its API server.
func IsAgentPath(path string) bool {
	p := "/" + strings.TrimLeft(path, "/")
	return p == strings.TrimSuffix(agentPrefix, "/") || strings.HasPrefix(p, agentPrefix)
}

// Tracked is one object of a GitSync as the agent's drift watch cache has
// it (the agent's wiring converts drift.Tracked to it: the tunnel does not
// import drift).
type Tracked struct {
	Group, Version, Kind, Resource string
	Namespace, Name                string
	// Drift is the watch cache's state: InSync, Changed, Drifted, Missing.
	Drift string
	// Paths are the drifted fields (JSON pointers), never values.
	Paths []string
}

// ObjectsFunc returns a GitSync's tracked objects, or false when the agent
// has recorded no apply of it (since it started).
type ObjectsFunc func(namespace, name string) ([]Tracked, bool)

// LiveObject is one object of a GitSync as the page shows it.
type LiveObject struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Health is kstatus's status (Current, InProgress, Failed,
	// Terminating, NotFound, Unknown), computed from the live object.
	Health        string `json:"health"`
	HealthMessage string `json:"healthMessage,omitempty"`
	// Drift and DriftPaths are from the watch cache.
	Drift      string   `json:"drift"`
	DriftPaths []string `json:"driftPaths,omitempty"`
}

// Objects is the answer of ObjectsPath.
type Objects struct {
	// Tracked is false when the agent has recorded no apply of the
	// GitSync since it started: Items is then empty.
	Tracked bool         `json:"tracked"`
	Items   []LiveObject `json:"items"`
}

// statusless are kinds without a status: kstatus calls them Current
// always, so listing them would cost a request for nothing (and would
// read Secrets' data into the agent's memory).
var statusless = map[string]bool{
	"/ConfigMap": true, "/Secret": true, "/ServiceAccount": true,
	"rbac.authorization.k8s.io/Role": true, "rbac.authorization.k8s.io/RoleBinding": true,
	"rbac.authorization.k8s.io/ClusterRole": true, "rbac.authorization.k8s.io/ClusterRoleBinding": true,
}

// maxObjectsList caps one health LIST's answer.
const maxObjectsList = 64 << 20

// serveAgentPath answers a path under agentPrefix for caller's identity
// id. Only the objects of a GitSync are served, to a caller whose
// identity may get that GitSync in the cluster (the cluster owner's RBAC
// decides, as for kubectl get gitsync through the proxy).
func (a *Agent) serveAgentPath(st *Stream, req *channelpb.TunnelRequest, id Identity) {
	ns, name, ok := parseObjectsPath(req.GetPath())
	switch {
	case !ok:
		a.answer(st, http.StatusNotFound, fmt.Sprintf("path %.80q: the agent serves no such path", req.GetPath()))
		return
	case req.GetMethod() != http.MethodGet:
		a.answer(st, http.StatusMethodNotAllowed, "only GET is served on "+req.GetPath())
		return
	case a.opts.Objects == nil:
		a.answer(st, http.StatusNotImplemented, "this agent keeps no watch cache of GitSync objects")
		return
	}
	ctx := st.Context()
	gitsync := "gitsync " + ns + "/" + name
	code, err := a.mayGet(ctx, id, ns, name)
	if err != nil {
		a.log.Warn("tunnel objects: the API server did not answer", "gitsync", ns+"/"+name, "error", err)
		a.answer(st, http.StatusBadGateway, "the agent could not reach its API server")
		return
	}
	switch code {
	case http.StatusOK:
	case http.StatusNotFound:
		a.answer(st, http.StatusNotFound, gitsync+" not found")
		return
	case http.StatusForbidden, http.StatusUnauthorized:
		a.log.Info("tunnel objects refused", "caller", callerString(req.GetCaller()), "as", id.User, "gitsync", ns+"/"+name)
		a.answer(st, http.StatusForbidden, fmt.Sprintf("%s: refused: %s may not get %s", callerString(req.GetCaller()), id.User, gitsync))
		return
	default:
		a.answer(st, http.StatusBadGateway, fmt.Sprintf("%s: the API server answered %d", gitsync, code))
		return
	}
	tracked, known := a.opts.Objects(ns, name)
	out := Objects{Tracked: known, Items: a.health(ctx, ns, name, tracked)}
	body, err := json.Marshal(out)
	if err != nil {
		a.answer(st, http.StatusInternalServerError, gitsync+": "+err.Error())
		return
	}
	if err := st.Respond(ctx, &channelpb.TunnelResponse{Status: http.StatusOK, Headers: []*channelpb.Header{
		{Name: "Content-Type", Values: []string{"application/json"}},
	}}); err != nil {
		return
	}
	if _, err := st.Write(body); err != nil {
		return
	}
	_ = st.CloseWrite()
}

// parseObjectsPath reads namespace and name from ObjectsPath's form.
func parseObjectsPath(path string) (ns, name string, ok bool) {
	rest, found := strings.CutPrefix(path, agentPrefix+"v1/gitsyncs/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != "objects" {
		return "", "", false
	}
	if len(validation.IsDNS1123Label(parts[0])) > 0 || len(validation.IsDNS1123Subdomain(parts[1])) > 0 {
		return "", "", false
	}
	return parts[0], parts[1], true
}

// mayGet asks the API server, as id, for the GitSync: its status code says
// whether id may read it (and whether it exists).
func (a *Agent) mayGet(ctx context.Context, id Identity, ns, name string) (int, error) {
	gv := v1alpha1.GroupVersion
	resp, err := a.get(ctx, &id, "/apis/"+gv.Group+"/"+gv.Version+"/namespaces/"+ns+"/gitsyncs/"+name, "")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// get makes a GET to the API server, as id when not nil, else as the
// agent itself.
func (a *Agent) get(ctx context.Context, id *Identity, path, rawQuery string) (*http.Response, error) {
	u := *a.base
	u.Path = a.base.Path + path
	u.RawQuery = rawQuery
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Accept", "application/json")
	if id != nil {
		hr.Header.Set("Impersonate-User", id.User)
		for _, g := range id.Groups {
			hr.Header.Add("Impersonate-Group", g)
		}
	}
	return a.rt.RoundTrip(hr)
}

// health adds kstatus health to the tracked objects: one LIST per
// resource and namespace, by the GitSync's owner labels, as the agent
// itself (the watch cache holds metadata only, so health needs the live
// objects; reading the GitSync already shows its inventory).
func (a *Agent) health(ctx context.Context, ns, name string, tracked []Tracked) []LiveObject {
	type listKey struct{ group, version, resource, namespace string }
	lists := map[listKey]map[string]*unstructured.Unstructured{}
	listErr := map[listKey]error{}
	out := make([]LiveObject, 0, len(tracked))
	for _, t := range tracked {
		o := LiveObject{Group: t.Group, Version: t.Version, Kind: t.Kind, Namespace: t.Namespace, Name: t.Name,
			Drift: t.Drift, DriftPaths: t.Paths}
		switch {
		case t.Drift == "Missing":
			o.Health, o.HealthMessage = status.NotFoundStatus.String(), "not in the cluster"
		case statusless[t.Group+"/"+t.Kind]:
			o.Health, o.HealthMessage = status.CurrentStatus.String(), "no status to wait for"
		default:
			k := listKey{t.Group, t.Version, t.Resource, t.Namespace}
			if _, done := lists[k]; !done {
				lists[k], listErr[k] = a.listOwned(ctx, k.group, k.version, k.resource, k.namespace, ns, name)
			}
			o.Health, o.HealthMessage = healthOf(lists[k][t.Name], listErr[k])
		}
		out = append(out, o)
	}
	return out
}

// healthOf is kstatus's verdict on u, or Unknown with why.
func healthOf(u *unstructured.Unstructured, listErr error) (string, string) {
	switch {
	case listErr != nil:
		return status.UnknownStatus.String(), listErr.Error()
	case u == nil:
		return status.NotFoundStatus.String(), "not in the cluster"
	}
	res, err := status.Compute(u)
	if err != nil {
		return status.UnknownStatus.String(), err.Error()
	}
	return res.Status.String(), res.Message
}

// listOwned lists the objects of one resource in one namespace that the
// GitSync ns/name owns (its owner labels), by name.
func (a *Agent) listOwned(ctx context.Context, group, version, resource, namespace, ns, name string) (map[string]*unstructured.Unstructured, error) {
	path := "/apis/" + group + "/" + version
	if group == "" {
		path = "/api/" + version
	}
	if namespace != "" {
		path += "/namespaces/" + url.PathEscape(namespace)
	}
	path += "/" + url.PathEscape(resource)
	q := url.Values{"labelSelector": {v1alpha1.NameLabel + "=" + name + "," + v1alpha1.NamespaceLabel + "=" + ns}}
	resp, err := a.get(ctx, nil, path, q.Encode())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", resource, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list %s: the API server answered %d", resource, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxObjectsList+1))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", resource, err)
	}
	if len(data) > maxObjectsList {
		return nil, fmt.Errorf("list %s: over %d bytes", resource, maxObjectsList)
	}
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("list %s: %w", resource, err)
	}
	out := make(map[string]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].GetName()] = &list.Items[i]
	}
	return out, nil
}

// maxObjectsAnswer caps the hub's read of an objects answer.
const maxObjectsAnswer = 32 << 20

// ErrAgentAnswer is an objects request the agent answered with an error
// status; its message is the agent's.
type ErrAgentAnswer struct {
	Code    int
	Message string
}

func (e *ErrAgentAnswer) Error() string {
	return fmt.Sprintf("the agent answered %d: %s", e.Code, e.Message)
}

// GetObjects asks the agent behind m, as caller, for a GitSync's live
// objects (the hub's side of ObjectsPath).
func GetObjects(ctx context.Context, m *Mux, caller *channelpb.TunnelCaller, namespace, name string) (*Objects, error) {
	st, err := m.Open(ctx, &channelpb.TunnelRequest{Method: http.MethodGet, Path: ObjectsPath(namespace, name), Caller: caller}, true)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	resp, err := st.Response(ctx)
	if err != nil {
		return nil, err
	}
	data, err := readAll(ctx, st, maxObjectsAnswer)
	if err != nil {
		return nil, err
	}
	if resp.GetStatus() != http.StatusOK {
		var s struct{ Message string }
		_ = json.Unmarshal(data, &s)
		return nil, &ErrAgentAnswer{Code: int(resp.GetStatus()), Message: s.Message}
	}
	var out Objects
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("the agent's objects answer: %w", err)
	}
	return &out, nil
}

// readAll reads the stream's data to its end, at most max bytes.
func readAll(ctx context.Context, st *Stream, max int) ([]byte, error) {
	var data []byte
	for {
		chunk, _, err := st.Next(ctx)
		if errors.Is(err, io.EOF) {
			return data, nil
		}
		if err != nil {
			return nil, err
		}
		if len(data)+len(chunk) > max {
			return nil, fmt.Errorf("the agent's answer is over %d bytes", max)
		}
		data = append(data, chunk...)
	}
}
