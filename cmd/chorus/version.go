package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// serverVersion is the agent's answer to GET /chorus/v1/version.
type serverVersion struct {
	Version string `json:"version"`
	Node    string `json:"node,omitempty"`
}

func newVersionCmd(root *rootOptions) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client and server version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(root.out, "Client Version: %s\n", version)
			if clientOnly {
				return nil
			}
			c, err := root.client()
			if err != nil {
				return err
			}
			var sv serverVersion
			if err := c.getJSON(cmd.Context(), apiPath("version"), nil, &sv); err != nil {
				return err
			}
			if sv.Node != "" {
				fmt.Fprintf(root.out, "Server Version: %s (node %s)\n", sv.Version, sv.Node)
			} else {
				fmt.Fprintf(root.out, "Server Version: %s\n", sv.Version)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print the client version only")
	return cmd
}
