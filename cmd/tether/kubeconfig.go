package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/channel/channelpb"
)

type kubeconfigOptions struct {
	hubURL    string
	agent     string
	tokenFile string
	caFile    string
}

// agentName is what an agent may be called on the hub.
var agentName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func newHubKubeconfigCmd() *cobra.Command {
	o := &kubeconfigOptions{}
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print a kubeconfig that reaches an agent's cluster through the hub",
		Long: `Prints a kubeconfig whose server is the hub's /k8s-proxy/AGENT: kubectl's
requests travel over the agent's own channel, so the cluster needs no inbound
port. The token needs the proxy action; what it may do in the cluster is
decided by the agent's ConfigMap tether-access and the cluster's RBAC.`,
		Example: `  tether hub kubeconfig --hub-url https://hub.example.com --agent prod-eu --token-file ci.token > prod-eu.kubeconfig
  KUBECONFIG=prod-eu.kubeconfig kubectl get pods -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := kubeconfig(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.hubURL, "hub-url", "", "the hub's address as clients reach it (https://hub.example.com)")
	f.StringVar(&o.agent, "agent", "", "the agent whose cluster to reach")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding a hub token with the proxy action")
	f.StringVar(&o.caFile, "ca-file", "", "PEM CA that signed the hub's certificate (a private CA)")
	return cmd
}

// kubeconfig builds the kubeconfig for o.
func kubeconfig(o *kubeconfigOptions) ([]byte, error) {
	if o.hubURL == "" || o.agent == "" || o.tokenFile == "" {
		return nil, errors.New("--hub-url, --agent and --token-file are required")
	}
	if !agentName.MatchString(o.agent) {
		return nil, fmt.Errorf("--agent %q: letters, digits, '.', '_' and '-', at most 63", o.agent)
	}
	u, err := url.Parse(o.hubURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--hub-url %q: want https://host[:port][/prefix]", o.hubURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--hub-url %q: no user, query or fragment", u.Redacted())
	}
	token, err := readSecret(o.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	cluster := map[string]any{"server": strings.TrimSuffix(u.String(), "/") + channelpb.ProxyPrefix + o.agent}
	if o.caFile != "" {
		if u.Scheme != "https" {
			return nil, errors.New("--ca-file needs an https:// --hub-url")
		}
		ca, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		if !strings.Contains(string(ca), "-----BEGIN CERTIFICATE-----") {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate", o.caFile)
		}
		cluster["certificate-authority-data"] = base64.StdEncoding.EncodeToString(ca)
	}
	name := "tether-" + o.agent
	return yaml.Marshal(map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": name, "cluster": cluster}},
		"users":           []any{map[string]any{"name": name, "user": map[string]any{"token": token}}},
		"contexts":        []any{map[string]any{"name": name, "context": map[string]any{"cluster": name, "user": name}}},
		"current-context": name,
	})
}
