// Command kube-controller-manager is the upstream controller manager, built
// from the module proxy so health tests get real Deployment and Job status.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
