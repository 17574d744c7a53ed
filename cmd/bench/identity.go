package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// The agent runs as a service account of its own, not as the admin user the
// benchmark itself uses, so that the API server can tell its requests
// apart. apiserver_request_total has no user or user-agent label, but API
// Priority and Fairness classifies every request by who makes it (after
// impersonation) into a FlowSchema, and counts each dispatched request per
// FlowSchema in apiserver_flowcontrol_dispatched_requests_total. The
// FlowSchema below takes every request of a service account: the agent's
// own, and those it makes impersonating a GitSync's deployer account. The
// benchmark's client is in system:masters, which the built-in "exempt"
// FlowSchema (precedence 1) takes first, and nothing else in this control
// plane runs as a service account (there is no controller manager). The
// schema uses the exempt priority level, so the agent is never queued by
// APF, exactly like kubectl and the Flux path, which run as the admin.
const (
	agentNamespace  = "tether-system"
	agentAccount    = "tether-agent"
	agentFlowSchema = "tether-bench-agent"
)

// agentIdentity creates the agent's service account, gives it
// cluster-admin, writes a kubeconfig with a token for it, and installs the
// FlowSchema that counts its requests. It returns the kubeconfig's path.
func (k *kube) agentIdentity(ctx context.Context, cfg *rest.Config, dir string) (string, error) {
	if err := k.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}}); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: agentAccount}}
	if err := k.c.Create(ctx, sa); err != nil {
		return "", err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: agentAccount},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: agentNamespace, Name: agentAccount}},
	}
	if err := k.c.Create(ctx, crb); err != nil {
		return "", err
	}
	fs := &flowcontrolv1.FlowSchema{
		ObjectMeta: metav1.ObjectMeta{Name: agentFlowSchema},
		Spec: flowcontrolv1.FlowSchemaSpec{
			PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: "exempt"},
			MatchingPrecedence:         50,
			DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
			Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
				Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup, Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
				ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
					Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"},
					ClusterScope: true, Namespaces: []string{"*"},
				}},
				NonResourceRules: []flowcontrolv1.NonResourcePolicyRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
			}},
		},
	}
	if err := k.c.Create(ctx, fs); err != nil {
		return "", fmt.Errorf("FlowSchema %s: %w", agentFlowSchema, err)
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](24 * 3600)}}
	if err := k.c.SubResource("token").Create(ctx, sa, tr); err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", agentNamespace, agentAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["agent"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["agent"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "agent"}
	kc.CurrentContext = "agent"
	path := filepath.Join(dir, "agent.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	// The API server's FlowSchema informer picks the new schema up within a
	// moment; wait until a request made as the agent is counted under it,
	// or every later count could be short.
	agentCfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", err
	}
	agentHTTP, err := rest.HTTPClientFor(agentCfg)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		before, err := k.agentRequests(ctx)
		if err != nil {
			return "", err
		}
		resp, err := agentHTTP.Get(strings.TrimSuffix(agentCfg.Host, "/") + "/api/v1/namespaces/" + agentNamespace)
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("GET namespace %s as the agent: %s", agentNamespace, resp.Status)
		}
		after, err := k.agentRequests(ctx)
		if err != nil {
			return "", err
		}
		if after > before {
			return path, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("FlowSchema %s counts no request of the agent's account after a minute", agentFlowSchema)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agentRequests reads from the API server's /metrics how many requests the
// agent's identity has made so far (see agentFlowSchema).
func (k *kube) agentRequests(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.host+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := k.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return sumMetric(resp.Body, "apiserver_flowcontrol_dispatched_requests_total", `flow_schema="`+agentFlowSchema+`"`)
}

// sumMetric adds up the samples of a counter in Prometheus' text format
// whose labels contain match.
func sumMetric(r io.Reader, name, match string) (int64, error) {
	var sum int64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += int64(v)
	}
	return sum, sc.Err()
}

// countAgent returns how many requests the agent made while fn ran.
func (k *kube) countAgent(ctx context.Context, fn func() error) (int64, error) {
	before, err := k.agentRequests(ctx)
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	after, err := k.agentRequests(ctx)
	return after - before, err
}
