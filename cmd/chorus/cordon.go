package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
)

// cordon marks a peer unschedulable, as kubectl cordon does: a merge
// patch of the Node's spec.unschedulable.
func cordon(cmd *cobra.Command, c *client, node string) error {
	body := []byte(`{"spec":{"unschedulable":true}}`)
	return c.call(cmd.Context(), request{method: http.MethodPatch, path: "/api/v1/nodes/" + url.PathEscape(node),
		body: bytes.NewReader(body), contentType: "application/merge-patch+json", contentLength: int64(len(body))}, nil)
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
			c, err := root.client()
			if err != nil {
				return err
			}
			if err := cordon(cmd, c, node); err != nil {
				return err
			}
			fmt.Fprintf(root.out, "node/%s cordoned\n", node)
			deadline := time.Now().Add(timeout)
			reported, stays := map[string]bool{}, map[string]bool{}
			for {
				var pods corev1.PodList
				if err := c.getJSON(cmd.Context(), "/api/v1/pods", url.Values{"fieldSelector": {"spec.nodeName=" + node}}, &pods); err != nil {
					return err
				}
				var left []string
				for _, p := range pods.Items {
					if p.Spec.NodeName != node {
						continue
					}
					k := p.Namespace + "/" + p.Name
					if !movesOnDrain(&p) {
						if !stays[k] {
							stays[k] = true
							fmt.Fprintf(root.out, "pod/%s stays: a pod bound to its peer (a stateful set's, a job's or a bare pod) moves only when the peer leaves (chorus leave) or the pod is deleted\n", p.Name)
						}
						continue
					}
					left = append(left, k)
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

// movesOnDrain reports whether a pod leaves a cordoned peer: a deployment's
// (its ReplicaSet's) moves, a daemon set's stops; a stateful set's, a
// job's and a bare pod are bound to their peer.
func movesOnDrain(p *corev1.Pod) bool {
	for _, r := range p.OwnerReferences {
		if r.Kind == "ReplicaSet" || r.Kind == "DaemonSet" {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
