// Command tether is Tether's one binary: the in-cluster agent, the hub, the
// local demo and the tools people run by hand. It holds flags and wiring
// only; the behaviour lives in the packages it calls.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"
)

func main() {
	if err := newRootCmd().ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "tether:", err)
		os.Exit(exitCode(err))
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tether",
		Short:         "Tether keeps Kubernetes clusters in sync with Git",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newAgentCmd(), newRenderCmd(), newDiffCmd(), newResyncCmd(), newDevCmd(), newHubCmd(), newVersionCmd())
	root.AddCommand(newGetCmd(), newReconcileCmd(), newSuspendCmd(), newResumeCmd(), newEventsCmd(), newInstallCmd(), newCompletionCmd())
	return root
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	return 1
}
