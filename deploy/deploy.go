// Package deploy holds Tether's installation manifests (kustomize) and
// embeds them, so that `tether install` applies exactly what kubectl
// apply -k applies to deploy/ with components/hub-connection, without
// kustomize.
package deploy

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

// Manifests is this folder's kustomize tree: the agent (the root), the hub
// (hub/) and the hub-connection component.
//
//go:embed kustomization.yaml namespace.yaml rbac.yaml agent.yaml agent-service.yaml crd hub components
var Manifests embed.FS

// ConnectionSecret is the Secret the hub-connection component reads the
// hub's URL (key hub-url), the agent's name (agent-name) and its token
// (token) from.
const ConnectionSecret = "tether-hub-connection"

// Namespace is the namespace the manifests install into.
const Namespace = "tether-system"

// connectedOverlay is deploy/ with the hub-connection component, as a user's
// own overlay would list them. It lives beside deploy/, not in it:
// kustomize refuses a base that contains its overlay.
const connectedOverlay = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../deploy
components:
  - ../deploy/components/hub-connection
`

// UnpackConnected writes the manifests to dir/deploy and an overlay that
// connects the agent to a hub to dir/connected, and returns the overlay's
// path relative to dir, ready for kustomize with dir as its root.
func UnpackConnected(dir string) (string, error) {
	if err := os.CopyFS(filepath.Join(dir, "deploy"), Manifests); err != nil {
		return "", fmt.Errorf("unpack the manifests into %s: %w", dir, err)
	}
	if err := os.Mkdir(filepath.Join(dir, "connected"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "connected", "kustomization.yaml"), []byte(connectedOverlay), 0o644); err != nil {
		return "", err
	}
	return "connected", nil
}
