package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

// dashboardPath is where every peer serves its web dashboard.
const dashboardPath = "/dashboard/"

func newDashboardCmd(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Print the URL of the web dashboard of the peer chorus talks to",
		Long: "Print the URL of the read-only web dashboard that every peer serves (nodes, deployments,\n" +
			"daemon sets, pods, services and recent events, refreshed every 2 seconds), after checking\n" +
			"that the peer answers. Open it in a browser; any peer shows the whole cluster. With -n the\n" +
			"page starts on that namespace.\n" +
			"With a token (--token or CHORUS_TOKEN), the URL carries it in its fragment (#token=...),\n" +
			"which the browser never sends to a server: the page sends it with its requests.\n" +
			"Each peer also serves Prometheus metrics at /metrics.",
		Example: "  chorus dashboard\n  chorus -s 10.0.0.12:7070 dashboard -n dev",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			self, err := c.servingPeer(cmd.Context())
			if err != nil {
				return err
			}
			root.logger().Debug("dashboard", "node", self.Name, "version", self.Status.Version)
			u := c.base
			u.Path += dashboardPath
			// The fragment, which browsers never send, holds the page's
			// parameters, each as encodeURIComponent encodes it.
			var frag []string
			if root.namespaceExplicit(cmd) {
				frag = append(frag, "ns="+fragmentEscape(root.namespace())) // the page starts on this namespace
			}
			if c.token != "" {
				frag = append(frag, "token="+fragmentEscape(c.token)) // the page sends it with its requests
			}
			page := u.String()
			if len(frag) > 0 {
				page += "#" + strings.Join(frag, "&")
			}
			_, err = fmt.Fprintln(root.out, page)
			return err
		},
	}
	// minikube users type `minikube dashboard --url`; chorus opens no
	// browser, so the URL is all it prints either way.
	cmd.Flags().Bool("url", true, "print the URL only (always: chorus opens no browser)")
	return cmd
}

// fragmentEscape escapes s as JavaScript's encodeURIComponent does, for the
// dashboard page to decode with decodeURIComponent.
func fragmentEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}
