package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/deploy"
	"tether.dev/tether/render"
)

type installOptions struct {
	kube      kubeFlags
	hubURL    string
	agentName string
	tokenFile string
	image     string
	dryRun    bool
}

func newInstallCmd() *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the agent, connected to a hub, without kustomize",
		Long: `install applies what ` + "`kubectl apply -k deploy/`" + ` applies with the hub-connection
component (the CRD, the agent's namespace, RBAC, Deployment and metrics
Service) plus the Secret tether-hub-connection holding the
hub's URL, the agent's name and the token from --token-file. It applies them
by server-side apply (field manager "tether"), so running it again updates
the installation. --dry-run prints the manifests instead; the token appears
in them only inside the Secret.`,
		Example: `  tether hub token create --db /data/hub.db --agent prod-eu > prod-eu.token
  tether install --hub-url https://hub.example.com --agent prod-eu --token-file prod-eu.token
  tether install --hub-url https://hub.example.com --agent prod-eu --token-file prod-eu.token --dry-run > tether.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := o.manifests(cmd.Context())
			if err != nil {
				return err
			}
			if o.dryRun {
				return printManifests(cmd.OutOrStdout(), objs)
			}
			cfg, _, err := o.kube.config()
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.Options{Scheme: newScheme()})
			if err != nil {
				return err
			}
			return applyManifests(cmd.Context(), c, objs, cmd.OutOrStdout())
		},
	}
	o.kube.bind(cmd, false)
	// The manifests name their namespace; -n would mislead.
	_ = cmd.Flags().MarkHidden("namespace")
	f := cmd.Flags()
	f.StringVar(&o.hubURL, "hub-url", "", "the hub the agent reports to (https://, wss://; http:// and ws:// without TLS)")
	f.StringVar(&o.agentName, "agent", "", "this cluster's agent name at the hub (the --agent of `tether hub token create`)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the agent's token from `tether hub token create`")
	f.StringVar(&o.image, "image", "", "the agent's image (default: the one deploy/kustomization.yaml names)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the manifests as YAML instead of applying them")
	return cmd
}

// validate checks the flags; its errors never quote the token.
func (o *installOptions) validate() (string, error) {
	if o.hubURL == "" || o.agentName == "" || o.tokenFile == "" {
		return "", errors.New("--hub-url, --agent and --token-file are required")
	}
	u, err := url.Parse(o.hubURL)
	if err != nil {
		return "", fmt.Errorf("--hub-url: %w", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "wss" && u.Scheme != "http" && u.Scheme != "ws":
		return "", fmt.Errorf("--hub-url %q: want https://, wss://, http:// or ws://", o.hubURL)
	case u.Host == "":
		return "", fmt.Errorf("--hub-url %q: no host", o.hubURL)
	case u.User != nil:
		// It would end up in the Deployment's arguments for anyone to read.
		return "", errors.New("--hub-url: must not carry credentials; the token goes in --token-file")
	}
	if !subjectName.MatchString(o.agentName) {
		return "", fmt.Errorf("--agent %q: letters, digits, '.', '_' and '-', at most 63", o.agentName)
	}
	token, err := readSecret(o.tokenFile)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	return token, nil
}

// manifests renders deploy/ with the hub-connection component from the
// binary and adds the Secret.
func (o *installOptions) manifests(ctx context.Context) ([]*unstructured.Unstructured, error) {
	token, err := o.validate()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tether-install-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	overlay, err := deploy.UnpackConnected(dir)
	if err != nil {
		return nil, err
	}
	res, err := render.Render(ctx, render.Options{Root: dir, Path: overlay})
	if err != nil {
		return nil, fmt.Errorf("render the manifests: %w", err)
	}
	objs := res.Objects
	if o.image != "" {
		for _, obj := range objs {
			if obj.GetKind() == "Deployment" && obj.GetName() == "tether-agent" {
				if err := setImage(obj, o.image); err != nil {
					return nil, err
				}
			}
		}
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: deploy.ConnectionSecret, Namespace: deploy.Namespace},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			"hub-url":    []byte(o.hubURL),
			"agent-name": []byte(o.agentName),
			"token":      []byte(token),
		},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(secret)
	if err != nil {
		return nil, err
	}
	delete(u["metadata"].(map[string]any), "creationTimestamp")
	objs = append(objs, &unstructured.Unstructured{Object: u})
	sortForInstall(objs)
	return objs, nil
}

func setImage(obj *unstructured.Unstructured, image string) error {
	containers, _, err := unstructured.NestedSlice(obj.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		return fmt.Errorf("Deployment %s: no containers to set the image of", obj.GetName())
	}
	for _, c := range containers {
		c.(map[string]any)["image"] = image
	}
	return unstructured.SetNestedSlice(obj.Object, containers, "spec", "template", "spec", "containers")
}

// installOrder puts what others depend on first: the CRD and the namespace,
// then the Secret and RBAC the Deployment needs.
var installOrder = map[string]int{
	"CustomResourceDefinition": 0, "Namespace": 0,
	"Secret": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 2,
}

func sortForInstall(objs []*unstructured.Unstructured) {
	rank := func(o *unstructured.Unstructured) int {
		if r, ok := installOrder[o.GetKind()]; ok {
			return r
		}
		return 3
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
}

func printManifests(w io.Writer, objs []*unstructured.Unstructured) error {
	for _, obj := range objs {
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			return fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}

// applyManifests applies each object by server-side apply and names it;
// errors name the object, never its content.
func applyManifests(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, out io.Writer) error {
	for _, obj := range objs {
		id := obj.GetKind() + "/" + obj.GetName()
		if ns := obj.GetNamespace(); ns != "" {
			id = obj.GetKind() + "/" + ns + "/" + obj.GetName()
		}
		err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(v1alpha1.FieldManager), client.ForceOwnership)
		if err != nil {
			return fmt.Errorf("%s: apply: %w", id, err)
		}
		fmt.Fprintf(out, "✔ applied %s\n", id)
	}
	return nil
}
