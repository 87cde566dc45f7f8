package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

// newKubectlCmd is kubectl itself (k8s.io/kubectl), built into chorus as
// k3s builds it in: `chorus kubectl get pods`. Unless the arguments name a
// server, a kubeconfig or a context, it talks to the peer chorus' -s (or
// CHORUS_SERVER) names, with chorus' --token; with neither, to KUBECONFIG's
// cluster when that is set, else to the default peer.
func newKubectlCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl [flags] COMMAND [args]",
		Short:              "Run kubectl (built in) against the peer given by -s",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			args, err := kubectlArgs(o, c, args)
			if err != nil {
				return err
			}
			streams := genericiooptions.IOStreams{In: o.in, Out: o.out, ErrOut: o.errOut}
			kc := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
				Arguments: append([]string{"kubectl"}, args...),
				ConfigFlags: genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().
					WithDiscoveryBurst(300).WithDiscoveryQPS(50).WithWarningPrinter(streams),
				IOStreams: streams,
			})
			kc.SetArgs(args)
			return kc.ExecuteContext(c.Context())
		},
	}
}

// kubectlArgs adds --server (and --token) for the chorus peer unless the
// kubectl arguments choose a cluster themselves.
func kubectlArgs(o *rootOptions, c *cobra.Command, args []string) ([]string, error) {
	if len(args) > 0 && args[0] == "--kubectl-as-is" {
		return args[1:], nil // run as kubectl: its own defaults (KUBECONFIG, ~/.kube/config)
	}
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--server", "-s", "--kubeconfig", "--context", "--cluster":
			return args, nil
		}
		if a == "--" {
			break
		}
	}
	explicit := c.Flags().Changed("server") || o.v.IsSet("server") && o.v.GetString("server") != defaultServer
	if !explicit && os.Getenv("KUBECONFIG") != "" {
		return args, nil
	}
	server := o.server()
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	out := []string{"--server", server}
	tok, err := o.token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		out = append(out, "--token", tok)
	}
	return append(out, args...), nil
}
