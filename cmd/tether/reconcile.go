package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func newReconcileCmd() *cobra.Command {
	var (
		kube       kubeFlags
		withSource bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "reconcile NAME",
		Short: "Sync a GitSync now and wait for the result",
		Long: `reconcile asks the agent for one full sync of a GitSync (fetch, render,
apply) by setting the tether.dev/resync-at annotation, waits until the agent
echoes it in status.lastHandledResyncAt, and prints the applied revision. It
exits non-zero, with the Ready condition's message, when the sync fails or
the agent does not answer within --timeout.

Every reconcile lists the Git ref again before it syncs, so a commit pushed a
moment ago is applied: --with-source is accepted, as flux accepts it, and
changes nothing.`,
		Example: `  tether reconcile app -n team-a
  tether reconcile platform --with-source --timeout 2m`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: kube.completeGitSyncs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, out, log := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			c, gs, err := kube.gitSync(ctx, args[0])
			if err != nil {
				return err
			}
			key := client.ObjectKeyFromObject(gs)
			if gs.Spec.Suspend {
				return fmt.Errorf("GitSync %s is suspended: `tether resume %s -n %s` syncs it", key, key.Name, key.Namespace)
			}
			value, err := requestSync(ctx, c, gs, nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(log, "► asked the agent to sync GitSync %s\n", key)
			return waitAndPrint(ctx, c, key, value, timeout, out, log)
		},
	}
	kube.bind(cmd, false)
	f := cmd.Flags()
	f.BoolVar(&withSource, "with-source", false, "accepted for flux compatibility: every reconcile lists the Git ref again anyway")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the agent to finish the sync")
	return cmd
}
