package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"tether.dev/tether/hub/store"
)

func newHubProjectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "project",
		Short: "Create and list hub projects (a name and the repositories it owns)",
		Long: `A project is a name and the Git repositories it owns. A project token
(tether hub token create --project NAME --actions ...) sees only the GitSyncs
whose source is one of them, spelled any way (https, ssh, scp-like; case and
.git do not matter). Badges stay public.`,
	}
	var db, name string
	var repos []string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a project, or add repositories to it (running it twice changes nothing)",
		Example: `  tether hub project create --db ./hub.db --name shop \
    --repo https://git.example.com/shop/web.git --repo git@git.example.com:shop/api.git`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !subjectName.MatchString(name) {
				return fmt.Errorf("--name %q: letters, digits, '.', '_' and '-', at most 63", name)
			}
			st, err := store.Open(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer st.Close()
			return st.CreateProject(cmd.Context(), name, repos)
		},
	}
	dbFlag(create.Flags(), &db)
	create.Flags().StringVar(&name, "name", "", "the project's name")
	create.Flags().StringArrayVar(&repos, "repo", nil, "a repository URL the project owns (repeatable)")
	var listDB string
	list := &cobra.Command{
		Use:   "list",
		Short: "List projects and their repositories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := store.Open(cmd.Context(), listDB)
			if err != nil {
				return err
			}
			defer st.Close()
			ps, err := st.Projects(cmd.Context())
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no projects yet: tether hub project create --name NAME --repo URL")
				return nil
			}
			for _, p := range ps {
				if _, err := fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", p.Name, strings.Join(p.Repos, " ")); err != nil {
					return err
				}
			}
			return nil
		},
	}
	dbFlag(list.Flags(), &listDB)
	cmd.AddCommand(create, list)
	return cmd
}
