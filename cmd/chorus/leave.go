package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// newLeaveCmd is `chorus leave`: the peer the CLI talks to stops its pods,
// leaves the cluster gracefully (status Left on the other peers, not Dead)
// and exits.
func newLeaveCmd(root *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "leave",
		Short: "Make the peer (-s) leave the cluster gracefully and stop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			var out struct {
				Node string `json:"node"`
			}
			if err := c.sendJSON(cmd.Context(), http.MethodPost, apiPath("leave"), struct{}{}, &out); err != nil {
				return err
			}
			fmt.Fprintf(root.out, "node %s left the cluster\n", out.Node)
			return nil
		},
	}
}
