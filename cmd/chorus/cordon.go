package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

// newCordonCmd is `chorus cordon NODE` and, with unschedulable false,
// `chorus uncordon NODE`.
func newCordonCmd(root *rootOptions, use string, unschedulable bool) *cobra.Command {
	short := "Mark a peer unschedulable: its replicas move to other peers, each replacement Ready before the old copy stops"
	if !unschedulable {
		short = "Mark a peer schedulable again"
	}
	return &cobra.Command{
		Use:   use + " NODE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := setCordon(cmd, root, args[0], unschedulable); err != nil {
				return err
			}
			fmt.Fprintf(root.out, "node/%s %sed\n", args[0], use)
			return nil
		},
	}
}

func setCordon(cmd *cobra.Command, root *rootOptions, node string, unschedulable bool) error {
	c, err := root.client()
	if err != nil {
		return err
	}
	body := map[string]bool{"unschedulable": unschedulable}
	return c.sendJSON(cmd.Context(), http.MethodPut, apiPath("nodes", node, "cordon"), body, nil)
}

// newDrainCmd is `chorus drain NODE`: cordon it and wait until no pod runs
// there, printing each pod as it moves.
func newDrainCmd(root *rootOptions) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain NODE",
		Short: "Cordon a peer and wait until its pods have moved to other peers",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			node := args[0]
			if err := setCordon(cmd, root, node, true); err != nil {
				return err
			}
			fmt.Fprintf(root.out, "node/%s cordoned\n", node)
			c, err := root.client()
			if err != nil {
				return err
			}
			deadline := time.Now().Add(timeout)
			reported := map[string]bool{}
			for {
				raw, err := c.list(cmd.Context(), apiPath("pods"), url.Values{})
				if err != nil {
					return err
				}
				var left []string
				for _, r := range raw {
					var p api.Pod
					if json.Unmarshal(r, &p) == nil && p.Spec.NodeName == node {
						left = append(left, p.Metadata.Namespace+"/"+p.Metadata.Name)
					}
				}
				sort.Strings(left)
				for _, k := range left {
					if !reported[k] {
						fmt.Fprintf(root.out, "evicting pod %s\n", k)
						reported[k] = true
					}
				}
				for k := range reported {
					if !contains(left, k) && reported[k] {
						fmt.Fprintf(root.out, "pod/%s moved\n", strings.SplitN(k, "/", 2)[1])
						reported[k] = false
					}
				}
				if len(left) == 0 {
					fmt.Fprintf(root.out, "node/%s drained\n", node)
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("drain %s: %d pods still there after %s: %s", node, len(left), timeout, strings.Join(left, ", "))
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(500 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the pods to move")
	return cmd
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
