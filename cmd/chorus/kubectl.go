package main

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
)

// newKubectlCmd is kubectl itself (k8s.io/kubectl), built into chorus as
// k3s builds it in: `chorus kubectl get pods`. Unless the arguments name a
// server, a kubeconfig or a context, it uses the kubeconfig chorus uses
// (--kubeconfig, KUBECONFIG, or a local peer's) and the peer chorus' -s (or
// CHORUS_SERVER) names, https unless -s says http://, with chorus' --token
// and --certificate-authority.
func newKubectlCmd(o *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl [flags] COMMAND [args]",
		Short:              "Run kubectl (built in) against the peer given by -s",
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			args, err := kubectlArgs(o, args)
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
func kubectlArgs(o *rootOptions, args []string) ([]string, error) {
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
	var out []string
	_, path, err := o.kubeconfig()
	if err != nil {
		return nil, err
	}
	if path != "" {
		out = append(out, "--kubeconfig", path) // its server, cluster CA and token
	}
	if o.serverExplicit() || path == "" {
		server := o.server()
		if !strings.Contains(server, "://") {
			server = "https://" + server
		}
		out = append(out, "--server", server)
	}
	if ca := strings.TrimSpace(o.v.GetString("certificate-authority")); ca != "" {
		out = append(out, "--certificate-authority", ca)
	}
	tok, err := o.token()
	if err != nil {
		return nil, err
	}
	if tok != "" {
		out = append(out, "--token", tok)
	}
	return append(out, args...), nil
}
