package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script (GitSync names complete from the cluster)",
		Long: `completion prints a script that completes tether's verbs, flags and, for
reconcile, suspend, resume, events and get, the names of the GitSyncs in the
namespace -n selects (read from the cluster as you type).

  bash:  source <(tether completion bash)
  zsh:   tether completion zsh > "${fpath[1]}/_tether"
  fish:  tether completion fish > ~/.config/fish/completions/tether.fish`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return fmt.Errorf("shell %q: want bash, zsh, fish or powershell", args[0])
		},
	}
}
