package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
)

// newExposeCmd is `chorus expose deployment NAME --port=P`: a Service
// selecting the deployment's pods, as kubectl expose makes.
func newExposeCmd(root *rootOptions) *cobra.Command {
	var port, targetPort, nodePort int32
	var typ, name, protocol string
	cmd := &cobra.Command{
		Use:     "expose deployment NAME --port=PORT [--type=NodePort|ClusterIP] [--target-port=PORT] [--name=NAME]",
		Short:   "Expose a deployment as a service",
		Example: "  chorus expose deployment hello --type=NodePort --port=8080",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, dname := args[0], ""
			if k, n, ok := strings.Cut(args[0], "/"); ok {
				kind, dname = k, n
			} else if len(args) == 2 {
				dname = args[1]
			}
			if r, err := lookupResource(kind); err != nil || r.plural != "deployments" {
				return fmt.Errorf("cannot expose %q: only deployments can be exposed", kind)
			}
			if dname == "" {
				return fmt.Errorf("expose needs the name of the deployment")
			}
			if port <= 0 {
				return fmt.Errorf("--port is required: the port the service serves on")
			}
			c, err := root.client()
			if err != nil {
				return err
			}
			var d api.Deployment
			if err := c.getJSON(cmd.Context(), apiPath("namespaces", root.namespace(), "deployments", dname), nil, &d); err != nil {
				return err
			}
			if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
				return fmt.Errorf("deployment %q has no matchLabels selector to expose", dname)
			}
			if name == "" {
				name = dname
			}
			if targetPort == 0 {
				targetPort = port
			}
			svc := api.Service{
				TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: api.KindService},
				Metadata: api.ObjectMeta{Name: name, Namespace: root.namespace(), Labels: d.Metadata.Labels},
				Spec: api.ServiceSpec{Type: typ, Selector: d.Spec.Selector.MatchLabels,
					Ports: []api.ServicePort{{Port: port, TargetPort: api.FromInt(targetPort), NodePort: nodePort, Protocol: protocol}}},
			}
			b, err := json.Marshal(svc)
			if err != nil {
				return err
			}
			var res applyResponse
			if err := c.call(cmd.Context(), request{method: http.MethodPost, path: apiPath("apply"), body: strings.NewReader(string(b)),
				contentType: "application/json"}, &res); err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(root.errOut, "Warning: %s\n", w)
			}
			fmt.Fprintf(root.out, "service/%s exposed\n", name)
			return nil
		},
	}
	f := cmd.Flags()
	f.Int32Var(&port, "port", 0, "the port the service serves on")
	f.Int32Var(&targetPort, "target-port", 0, "the container port traffic goes to (default --port)")
	f.Int32Var(&nodePort, "node-port", 0, "the NodePort (default: allocated, 30000-32767)")
	f.StringVar(&typ, "type", "ClusterIP", "ClusterIP or NodePort")
	f.StringVar(&name, "name", "", "the service's name (default: the deployment's)")
	f.StringVar(&protocol, "protocol", "TCP", "TCP")
	return cmd
}
