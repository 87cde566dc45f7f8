package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
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
			asIs := len(args) > 0 && args[0] == "--kubectl-as-is"
			fromChorus := len(args) > 0 && args[0] == "--from-chorus"
			kargs, err := kubectlArgs(o, args)
			if err != nil {
				return err
			}
			in := o.in
			if fromChorus && checkFirst(args[1:]) {
				// chorus apply|create|replace -f: every object is checked
				// by a server dry run before any is written, so that a
				// manifest with one bad object changes nothing.
				if readsStdin(args[1:]) {
					// kubectl reads `-f -` from os.Stdin itself: both
					// runs read a copy of it from the start.
					f, restore, err := replayStdin(in)
					if err != nil {
						return err
					}
					defer restore()
					in = f
				}
				var errb bytes.Buffer
				if err := runKubectl(c.Context(), withDryRun(kargs), false, in, io.Discard, &errb); err != nil {
					_, _ = o.errOut.Write(errb.Bytes())
					return err
				}
				if f, ok := in.(*os.File); ok && f == os.Stdin {
					if _, err := f.Seek(0, io.SeekStart); err != nil { // the real run reads it again
						return fmt.Errorf("standard input: %w", err)
					}
				}
			}
			return runKubectl(c.Context(), kargs, asIs, in, o.out, o.errOut)
		},
	}
}

// runKubectl runs kubectl with args in this process. kubectl ends a
// failed command by exiting the process; here it returns an *exitError
// instead, its message printed to errOut. asIs gives kubectl its own
// --password flag and prompt (chorus peers take tokens only).
func runKubectl(ctx context.Context, args []string, asIs bool, in io.Reader, out, errOut io.Writer) (err error) {
	streams := genericiooptions.IOStreams{In: in, Out: out, ErrOut: errOut}
	flags := genericclioptions.NewConfigFlags(true).WithDiscoveryBurst(300).WithDiscoveryQPS(50).WithWarningPrinter(streams)
	if asIs {
		flags = flags.WithDeprecatedPasswordFlag()
	}
	kc := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		Arguments:   append([]string{"kubectl"}, args...),
		ConfigFlags: flags,
		IOStreams:   streams,
	})
	kc.SetArgs(args)
	cmdutil.BehaviorOnFatal(func(msg string, code int) {
		if msg != "" && !strings.HasSuffix(msg, "\n") {
			msg += "\n"
		}
		_, _ = io.WriteString(errOut, msg)
		panic(kubectlExit{code})
	})
	defer cmdutil.DefaultBehaviorOnFatal()
	defer func() {
		if r := recover(); r != nil {
			e, ok := r.(kubectlExit)
			if !ok {
				panic(r)
			}
			err = &exitError{code: e.code}
		}
	}()
	return kc.ExecuteContext(ctx)
}

// kubectlExit is the panic by which kubectl's fatal handler ends a command
// run in this process (runKubectl recovers it).
type kubectlExit struct{ code int }

// replayStdin copies in to an unlinked temporary file and makes it
// os.Stdin (where kubectl reads `-f -`) until restore; seeking it back to
// the start lets another run read it again.
func replayStdin(in io.Reader) (*os.File, func(), error) {
	f, err := os.CreateTemp("", "chorus-stdin-")
	if err != nil {
		return nil, nil, fmt.Errorf("standard input: %w", err)
	}
	_ = os.Remove(f.Name())
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read standard input: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("standard input: %w", err)
	}
	saved := os.Stdin
	os.Stdin = f
	return f, func() { os.Stdin = saved; f.Close() }, nil
}

// checkFirst reports whether a chorus command line (the command first) is
// one whose objects are all checked before any is written: apply, create
// or replace of files (-f, -k), not already a dry run.
func checkFirst(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "apply", "create", "replace":
	default:
		return false
	}
	files := false
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		switch {
		case name == "--dry-run" || name == "--server-dry-run":
			return false
		case name == "-f" || name == "--filename" || name == "-k" || name == "--kustomize" ||
			strings.HasPrefix(a, "-f") && !strings.HasPrefix(a, "--"):
			files = true
		}
	}
	return files
}

// readsStdin reports whether the command's files include standard input
// (-f -).
func readsStdin(args []string) bool {
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "-f-" || a == "--filename=-" || a == "-f=-" || (a == "-f" || a == "--filename") && i+1 < len(args) && args[i+1] == "-" {
			return true
		}
	}
	return false
}

// withDryRun returns kubectl args with --dry-run=server (and quiet output).
func withDryRun(args []string) []string {
	out := make([]string, 0, len(args)+2)
	for i, a := range args {
		if a == "--" {
			out = append(out, "--dry-run=server")
			return append(out, args[i:]...)
		}
		out = append(out, a)
	}
	return append(out, "--dry-run=server")
}

// kubectlArgs adds --server (and --token) for the chorus peer unless the
// kubectl arguments choose a cluster themselves.
func kubectlArgs(o *rootOptions, args []string) ([]string, error) {
	if len(args) > 0 && args[0] == "--kubectl-as-is" {
		return args[1:], nil // run as kubectl: its own defaults (KUBECONFIG, ~/.kube/config)
	}
	var ns []string
	if len(args) > 0 && args[0] == "--from-chorus" {
		// `chorus COMMAND`: chorus' -n (or CHORUS_NAMESPACE) is kubectl's -n.
		args = args[1:]
		if _, env := os.LookupEnv("CHORUS_NAMESPACE"); env || o.v.IsSet("namespace") && o.namespaceFlagChanged() {
			ns = []string{"--namespace", o.namespace()}
		}
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
	return append(append(out, ns...), args...), nil
}
