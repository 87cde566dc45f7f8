// Command chorus is chorus' command-line tool. Every kubectl command
// (get, apply, describe, logs, exec, rollout, ...) is kubectl itself
// (k8s.io/kubectl, built in) pointed at a chorus peer; the commands only
// chorus has (agent, image, kubeconfig, leave, reset, keygen, drain,
// dashboard, service) are its own; and `chorus agent` is the peer itself.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// version is the client's version, set at build time with
// -ldflags "-X main.version=v0.1.0".
var version = "dev"

// defaultServer is the agent address used when neither -s nor CHORUS_SERVER
// names one.
const defaultServer = "127.0.0.1:7070"

func main() {
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "kubectl" {
		// Installed (or linked) as kubectl: be kubectl, as k3s' binary is.
		args = append([]string{"kubectl", "--kubectl-as-is"}, args...)
	}
	ctx, stop := context.Background(), func() {}
	if !isKubectl(args) {
		// chorus' own commands end cleanly on Ctrl-C or SIGTERM (the agent
		// stops its peer); a second Ctrl-C kills the process the usual
		// way. kubectl's commands get the signals as kubectl does.
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		go func() { <-ctx.Done(); stop() }()
	}
	code := run(ctx, args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// isKubectl reports whether the command line runs kubectl.
func isKubectl(args []string) bool {
	if len(args) > 0 && args[0] == "kubectl" {
		return true
	}
	root, _ := newRootCmd(nil, io.Discard, io.Discard)
	_, _, ok := kubectlCommand(root, args)
	return ok
}

// run executes the chorus command line args and returns the process' exit
// code. Errors are printed to stderr the way kubectl prints them. A command
// chorus does not have itself is kubectl's, with chorus' global flags
// (-s, --token, --kubeconfig, --certificate-authority, -n) turned into
// kubectl's.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, _ := newRootCmd(stdin, stdout, stderr)
	if globals, rest, ok := kubectlCommand(root, args); ok {
		if err := root.PersistentFlags().Parse(globals); err != nil {
			return reportError(stderr, err)
		}
		args = append([]string{"kubectl", "--from-chorus"}, rest...)
	}
	root.SetArgs(args)
	return reportError(stderr, root.ExecuteContext(ctx))
}

// globalValueFlags are chorus' global flags that take a value.
var globalValueFlags = map[string]bool{
	"s": true, "server": true, "n": true, "namespace": true, "token": true,
	"kubeconfig": true, "certificate-authority": true,
}

// kubectlCommand splits args into chorus' leading global flags and the
// rest, and reports whether the rest is a kubectl command: its first word
// is not one of chorus' own commands (nor help or a shell completion).
// Flags before the command that chorus does not know are kubectl's: the
// whole command line is then kubectl's, global flags included.
func kubectlCommand(root *cobra.Command, args []string) (globals, rest []string, ok bool) {
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case globalValueFlags[name]:
			if !hasValue {
				i++
			}
		case name == "v" || name == "verbose" || strings.Trim(name, "v") == "":
		case name == "h" || name == "help" || name == "version":
			return nil, nil, false
		default:
			return nil, args, true // a kubectl flag: kubectl parses everything
		}
		i++
	}
	if i >= len(args) {
		return nil, nil, false // no command: chorus' help
	}
	verb := args[i]
	if verb == "help" || verb == "completion" || verb == cobra.ShellCompRequestCmd || verb == cobra.ShellCompNoDescRequestCmd {
		return nil, nil, false
	}
	for _, c := range root.Commands() {
		if c.Name() == verb || c.HasAlias(verb) {
			return nil, nil, false
		}
	}
	if i == 0 {
		return nil, args, true
	}
	return args[:i:i], args[i:], true
}

// rootOptions is the state shared by every client subcommand: the global
// flags, the streams and the logger.
type rootOptions struct {
	in     io.Reader
	out    io.Writer
	errOut io.Writer

	v             *viper.Viper // resolves -s/-n/--token against CHORUS_SERVER/CHORUS_NAMESPACE/CHORUS_TOKEN
	verbosity     int
	serverFlag    *pflag.Flag
	namespaceFlag *pflag.Flag
	kc            kubeconfigState
}

// newRootCmd builds the chorus command tree writing to stdout and stderr and
// reading stdin (for `-f -` and `image load -`).
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *rootOptions) {
	o := &rootOptions{in: stdin, out: stdout, errOut: stderr, v: viper.New()}
	root := &cobra.Command{
		Use:   "chorus",
		Short: "chorus runs containers on a masterless cluster of peers",
		Long: "chorus controls a masterless chorus cluster with kubectl (built in) and runs a peer\n" +
			"with `chorus agent`. Every kubectl command works as `chorus COMMAND` (chorus get pods,\n" +
			"chorus apply -f app.yaml, chorus rollout status deployment/web, ...), pointed at the peer\n" +
			"given by -s, CHORUS_SERVER or the kubeconfig; `chorus kubectl help` lists them. The\n" +
			"commands below are chorus' own.",
		Version:       version,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w\nSee '%s --help' for usage.", err, c.CommandPath())
	})

	pf := root.PersistentFlags()
	pf.StringP("server", "s", defaultServer, "address of a chorus agent: host:port (HTTPS) or a URL; env CHORUS_SERVER; default: the kubeconfig's server")
	pf.StringP("namespace", "n", "default", "namespace of the request; env CHORUS_NAMESPACE")
	pf.String("token", "", "bearer token of the agent's API; env CHORUS_TOKEN; default: the kubeconfig's")
	pf.String("kubeconfig", "", "kubeconfig giving the server, its CA and the token (a peer writes one to <data-dir>/kubeconfig); env KUBECONFIG; default: "+localKubeconfigHint)
	pf.String("certificate-authority", "", "PEM file of the CA the agent's certificate must chain to; default: the kubeconfig's")
	o.serverFlag = pf.Lookup("server")
	o.namespaceFlag = pf.Lookup("namespace")
	pf.CountVarP(&o.verbosity, "verbose", "v", "log requests to stderr (debug)")
	o.v.SetEnvPrefix("CHORUS")
	for _, name := range []string{"server", "namespace", "token", "certificate-authority"} {
		_ = o.v.BindEnv(name)
		_ = o.v.BindPFlag(name, pf.Lookup(name))
	}
	_ = o.v.BindEnv("kubeconfig", "KUBECONFIG")
	_ = o.v.BindPFlag("kubeconfig", pf.Lookup("kubeconfig"))

	root.AddCommand(
		newImageCmd(o),
		newAgentCmd(),
		newResetCmd(),
		newKeygenCmd(),
		newKubeconfigCmd(o),
		newLeaveCmd(o),
		newClusterCmd(o),
		newDrainCmd(o),
		newDashboardCmd(o),
		newServiceCmd(o),
		newKubectlCmd(o),
	)
	return root, o
}

// server returns the agent address: -s, else CHORUS_SERVER, else the
// kubeconfig's server, else the default.
func (o *rootOptions) server() string {
	if o.serverExplicit() {
		if s := strings.TrimSpace(o.v.GetString("server")); s != "" {
			return s
		}
	}
	if kc, _, _ := o.kubeconfig(); kc != nil && kc.Server != "" {
		return kc.Server
	}
	return defaultServer
}

// serverExplicit reports whether the user named the server (-s or
// CHORUS_SERVER).
func (o *rootOptions) serverExplicit() bool {
	if o.serverFlag != nil && o.serverFlag.Changed {
		return true
	}
	_, ok := os.LookupEnv("CHORUS_SERVER")
	return ok
}

// namespace returns the request namespace: -n, else CHORUS_NAMESPACE, else
// "default".
func (o *rootOptions) namespace() string {
	if ns := strings.TrimSpace(o.v.GetString("namespace")); ns != "" {
		return ns
	}
	return "default"
}

// token returns the API token: --token, else CHORUS_TOKEN, else the
// kubeconfig's, else "" (no Authorization header).
func (o *rootOptions) token() (string, error) {
	t := strings.TrimSpace(o.v.GetString("token"))
	if t == "" {
		kc, path, err := o.kubeconfig()
		if err != nil || kc == nil || kc.Token == "" {
			return "", err
		}
		if err := api.CheckToken(kc.Token); err != nil {
			return "", fmt.Errorf("kubeconfig %s: token: %w", path, err)
		}
		return kc.Token, nil
	}
	if err := api.CheckToken(t); err != nil {
		return "", fmt.Errorf("--token: %w", err)
	}
	return t, nil
}

// namespaceExplicit reports whether the user named the namespace (flag or
// environment) rather than relying on the default.
func (o *rootOptions) namespaceExplicit(cmd *cobra.Command) bool {
	if f := cmd.Flags().Lookup("namespace"); f != nil && f.Changed {
		return true
	}
	_, ok := os.LookupEnv("CHORUS_NAMESPACE")
	return ok
}

// namespaceFlagChanged reports whether -n was given before the command.
func (o *rootOptions) namespaceFlagChanged() bool {
	return o.namespaceFlag != nil && o.namespaceFlag.Changed
}

// logger logs to stderr at debug level with -v, and nowhere otherwise.
func (o *rootOptions) logger() *slog.Logger {
	if o.verbosity == 0 {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(o.errOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// client returns an API client for the configured agent.
func (o *rootOptions) client() (*client, error) {
	token, err := o.token()
	if err != nil {
		return nil, err
	}
	tc, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	return newClient(o.server(), token, tc, o.logger())
}

// exitError ends the command with a code after its messages were already
// printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// reportError prints err as kubectl would and returns the exit code.
func reportError(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	printError(stderr, err)
	return 1
}

// printError prints one error: a server Status as "Error from server
// (Reason): message", anything else as "error: message".
func printError(w io.Writer, err error) {
	var se *statusError
	if errors.As(err, &se) {
		fmt.Fprintln(w, se.Error())
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}
