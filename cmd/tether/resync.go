package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	tsync "tether.dev/tether/sync"
)

func newResyncCmd() *cobra.Command {
	var (
		kubeconfig, hubURL, agentName, tokenFile string
		wait                                     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "resync NAMESPACE/NAME",
		Short: "Force one full sync (fetch, render, apply) of a GitSync",
		Long: `resync forces one full sync of a GitSync. With a kubeconfig it sets the
tether.dev/resync-at annotation (and with --wait, waits until the agent
echoes it in status.lastHandledResyncAt); with --hub-url it asks the hub,
which relays "sync now" to the agent (an API token from
` + "`tether hub token create --api`" + ` in --token-file).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, name, ok := strings.Cut(args[0], "/")
			if !ok || ns == "" || name == "" {
				return fmt.Errorf("%q: want NAMESPACE/NAME", args[0])
			}
			if hubURL != "" {
				return resyncViaHub(cmd.Context(), hubURL, agentName, tokenFile, ns, name, cmd.OutOrStdout())
			}
			return resyncViaAnnotation(cmd.Context(), kubeconfig, types.NamespacedName{Namespace: ns, Name: name}, wait, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG)")
	f.DurationVar(&wait, "wait", 0, "with a kubeconfig: wait this long for the agent to handle it")
	f.StringVar(&hubURL, "hub-url", "", "ask this hub instead of writing the annotation")
	f.StringVar(&agentName, "agent", "", "with --hub-url: the agent that runs the GitSync")
	f.StringVar(&tokenFile, "token-file", "", "with --hub-url: file with an API token")
	return cmd
}

func resyncViaAnnotation(ctx context.Context, kubeconfig string, key types.NamespacedName, wait time.Duration, out io.Writer) error {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: newScheme()})
	if err != nil {
		return err
	}
	value, err := tsync.RequestResync(ctx, c, key, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "asked for a resync of %s (%s=%s)\n", key, v1alpha1.ResyncAnnotation, value)
	if wait <= 0 {
		return nil
	}
	gs := &v1alpha1.GitSync{}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if err := c.Get(ctx, key, gs); err != nil {
			return err
		}
		if gs.Status.LastHandledResyncAt == value {
			ready := "unknown"
			for _, cond := range gs.Status.Conditions {
				if cond.Type == v1alpha1.ReadyCondition {
					ready = fmt.Sprintf("Ready=%s: %s", cond.Status, cond.Message)
				}
			}
			fmt.Fprintf(out, "handled: %s\n", ready)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("the agent did not handle the resync within %s", wait)
}

func resyncViaHub(ctx context.Context, hubURL, agentName, tokenFile, ns, name string, out io.Writer) error {
	if agentName == "" || tokenFile == "" {
		return errors.New("--hub-url needs --agent and --token-file")
	}
	token, err := readSecret(tokenFile)
	if err != nil {
		return fmt.Errorf("--token-file: %w", err)
	}
	u := strings.TrimSuffix(hubURL, "/") + "/api/v1/agents/" + url.PathEscape(agentName) +
		"/gitsyncs/" + url.PathEscape(ns) + "/" + url.PathEscape(name) + "/resync"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("hub answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(out, "the hub asked agent %s to resync %s/%s\n", agentName, ns, name)
	return nil
}
