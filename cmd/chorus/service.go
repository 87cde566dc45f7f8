package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
)

// newServiceCmd is minikube's `service NAME --url`: where a NodePort
// service answers.
func newServiceCmd(root *rootOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "service NAME",
		Short: "Print the URLs where a NodePort service answers",
		Long: "Print the URL of each port of a NodePort service on the peer chorus talks to (every peer\n" +
			"answers on a service's NodePort, balancing over its Ready pods cluster-wide); with --all, on\n" +
			"every alive peer. Like `minikube service NAME --url`; chorus opens no browser.",
		Example: "  chorus service web\n  curl $(chorus service web)\n  chorus service web --all",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := root.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var svc corev1.Service
			if err := c.getJSON(ctx, "/api/v1/namespaces/"+url.PathEscape(root.namespace())+"/services/"+url.PathEscape(args[0]), nil, &svc); err != nil {
				return err
			}
			var ports []int32
			for _, p := range svc.Spec.Ports {
				if p.NodePort != 0 {
					ports = append(ports, p.NodePort)
				}
			}
			if len(ports) == 0 {
				return fmt.Errorf("service %q has no NodePort (type %s): expose it with --type=NodePort, or use chorus port-forward service/%s", args[0], svc.Spec.Type, args[0])
			}
			hosts := []string{c.base.Hostname()}
			if all {
				var list corev1.NodeList
				if err := c.getJSON(ctx, "/api/v1/nodes", nil, &list); err != nil {
					return err
				}
				hosts = hosts[:0]
				for _, n := range list.Items {
					if ip := internalIP(&n); ready(&n) && ip != "" {
						hosts = append(hosts, ip)
					}
				}
				if len(hosts) == 0 {
					return errors.New("no alive peer has an address")
				}
			}
			for _, h := range hosts {
				for _, p := range ports {
					if _, err := fmt.Fprintf(root.out, "http://%s/\n", net.JoinHostPort(h, strconv.Itoa(int(p)))); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "print the URLs on every alive peer")
	cmd.Flags().Bool("url", true, "print the URLs only (always: chorus opens no browser)")
	return cmd
}

// internalIP returns the node's InternalIP, or its first address.
func internalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	if len(n.Status.Addresses) > 0 {
		return n.Status.Addresses[0].Address
	}
	return ""
}

// ready reports whether the node's Ready condition is True (the peer is
// alive).
func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
