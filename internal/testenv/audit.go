package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// auditPolicy records every request that changes something, at Metadata
// level, except leases and events: leader election renews a lease every
// few seconds and would drown what a test looks for.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: [leases]
  - group: ""
    resources: [events]
  - group: events.k8s.io
    resources: [events]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// configureAudit writes the policy into dir and points the API server's
// audit log at dir; it returns the log's path.
func configureAudit(apiServer *envtest.APIServer, dir string) (string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return "", err
	}
	log := filepath.Join(dir, "audit.log")
	args := apiServer.Configure()
	args.Set("audit-policy-file", policy)
	args.Set("audit-log-path", log)
	// blocking: a request is answered only once its event is written, so
	// the log never lags behind what a test already saw in the cluster.
	args.Set("audit-log-mode", "blocking")
	return log, nil
}

// AuditEvent is one request in the API server's audit log, reduced to
// what tests ask: who did what to which object, and how it ended.
type AuditEvent struct {
	Verb             string       `json:"verb"`
	RequestURI       string       `json:"requestURI"`
	User             AuditUser    `json:"user"`
	ImpersonatedUser *AuditUser   `json:"impersonatedUser,omitempty"`
	UserAgent        string       `json:"userAgent"`
	ObjectRef        *AuditObject `json:"objectRef,omitempty"`
	ResponseStatus   *struct {
		Code int `json:"code"`
	} `json:"responseStatus,omitempty"`
	StageTimestamp metav1.MicroTime `json:"stageTimestamp"`
}

// AuditUser is the user who made a request (or was impersonated).
type AuditUser struct {
	Username string `json:"username"`
}

// AuditObject is the object a request was about.
type AuditObject struct {
	Resource    string `json:"resource"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	APIGroup    string `json:"apiGroup"`
	Subresource string `json:"subresource"`
}

// DryRun reports whether the request was a server-side dry run, which
// changes nothing.
func (e AuditEvent) DryRun() bool { return strings.Contains(e.RequestURI, "dryRun=") }

// Changed reports whether the request changed the cluster: not a dry run,
// and answered with success.
func (e AuditEvent) Changed() bool {
	return !e.DryRun() && e.ResponseStatus != nil && e.ResponseStatus.Code >= 200 && e.ResponseStatus.Code < 300
}

// String is one line for a test's failure message.
func (e AuditEvent) String() string {
	obj := "?"
	if o := e.ObjectRef; o != nil {
		obj = o.Resource
		if o.Subresource != "" {
			obj += "/" + o.Subresource
		}
		obj += " " + o.Namespace + "/" + o.Name
	}
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	return fmt.Sprintf("%s %s %s by %s (%d)", e.StageTimestamp.Format("15:04:05.000"), e.Verb, obj, e.User.Username, code)
}

// Audit reads the audit log of a control plane started with
// ControlPlaneOptions.Audit: every request so far that changed or tried to
// change something, in order.
func (c *ControlPlane) Audit() ([]AuditEvent, error) {
	if c.auditLog == "" {
		return nil, errors.New("the control plane was started without ControlPlaneOptions.Audit")
	}
	f, err := os.Open(c.auditLog)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var e AuditEvent
		// A line being written as we read is incomplete; the next read
		// has it.
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}
