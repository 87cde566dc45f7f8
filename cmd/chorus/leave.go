package main

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/chorus-sh/chorus/api"
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
			self, err := c.servingPeer(cmd.Context())
			if err != nil {
				return err
			}
			var out api.Peer
			if err := c.sendJSON(cmd.Context(), http.MethodPost, api.PathChorusV1+"/peers/"+url.PathEscape(self.Name)+"/leave", struct{}{}, &out); err != nil {
				return err
			}
			fmt.Fprintf(root.out, "node %s left the cluster\n", out.Name)
			return nil
		},
	}
}
