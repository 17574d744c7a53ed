package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func newSuspendCmd() *cobra.Command {
	var kube kubeFlags
	cmd := &cobra.Command{
		Use:   "suspend NAME",
		Short: "Stop syncing a GitSync until it is resumed",
		Long: `suspend sets spec.suspend on a GitSync: the agent stops syncing it (new
commits, drift correction and resync requests wait) and leaves what it
applied in place. ` + "`tether resume`" + ` undoes it.`,
		Example:           `  tether suspend app -n team-a`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: kube.completeGitSyncs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, gs, err := kube.gitSync(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			key := client.ObjectKeyFromObject(gs)
			if gs.Spec.Suspend {
				fmt.Fprintf(cmd.OutOrStdout(), "✔ GitSync %s was already suspended\n", key)
				return nil
			}
			patch := client.MergeFrom(gs.DeepCopy())
			gs.Spec.Suspend = true
			if err := c.Patch(cmd.Context(), gs, patch); err != nil {
				return fmt.Errorf("GitSync %s: suspend: %w", key, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "✔ GitSync %s suspended\n", key)
			return nil
		},
	}
	kube.bind(cmd, false)
	return cmd
}

func newResumeCmd() *cobra.Command {
	var (
		kube    kubeFlags
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "resume NAME",
		Short: "Resume a suspended GitSync and wait for its next sync",
		Long: `resume clears spec.suspend and asks for a sync at once (as reconcile does),
then, like flux resume, waits for that sync and prints the applied revision;
it exits non-zero when the sync fails. --wait=false returns at once.`,
		Example:           `  tether resume app -n team-a`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: kube.completeGitSyncs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, log := cmd.Context(), cmd.ErrOrStderr()
			c, gs, err := kube.gitSync(ctx, args[0])
			if err != nil {
				return err
			}
			key := client.ObjectKeyFromObject(gs)
			resume := false
			value, err := requestSync(ctx, c, gs, &resume)
			if err != nil {
				return err
			}
			fmt.Fprintf(log, "► GitSync %s resumed\n", key)
			if !wait {
				return nil
			}
			return waitAndPrint(ctx, c, key, value, timeout, cmd.OutOrStdout(), log)
		},
	}
	kube.bind(cmd, false)
	f := cmd.Flags()
	f.BoolVar(&wait, "wait", true, "wait for the sync that resuming starts")
	f.DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for it")
	return cmd
}
