// Command kubectl is the upstream kubectl at the control plane's version,
// built from the module proxy so that benchmarks compare against a pinned
// peer, never whatever kubectl is on PATH.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
