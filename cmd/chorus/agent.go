package main

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"

	"github.com/chorus-sh/chorus/agent"
	"github.com/spf13/cobra"
)

// agentBinary is the program `chorus agent` runs, next to chorus itself.
const agentBinary = "chorus-agent"

// newAgentCmd is `chorus agent`: run a peer. The peer is its own binary,
// chorus-agent, without the kubectl built into chorus (which doubled a
// peer's resident memory when the peer was chorus itself; see
// docs/BENCHMARKS.md): chorus replaces itself with it (exec: the same
// process id, arguments, environment and standard streams), so whoever
// started `chorus agent` (a shell, systemd, a test) holds the peer itself.
func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent [flags]",
		Short: "Run a chorus peer on this machine",
		Long: `Run a chorus peer: it stores the desired state, runs the pods assigned to it
in containerd with CNI networking, and serves the API the CLI talks to.

The peer is the program chorus-agent, installed next to chorus (make build
puts both in bin/): ` + "`chorus agent ARGS`" + ` runs chorus-agent ARGS in the same
process. ` + "`chorus agent --help`" + ` lists its flags.`,
		Example: `  chorus agent --name n1 --bind 127.0.0.11 --data-dir /var/lib/chorus/n1
  chorus agent --name n2 --bind 127.0.0.12 --join 127.0.0.11 --join-token-file /var/lib/chorus/n1/token`,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("chorus agent: find %s: %w", agentBinary, err)
			}
			return execAgent(self, args)
		},
	}
}

// execAgent replaces this process with the chorus-agent next to self (the
// chorus binary), given args. It returns only on failure, with an error
// naming the path it tried.
func execAgent(self string, args []string) error {
	path := filepath.Join(filepath.Dir(self), agentBinary)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("chorus agent runs %s, which is missing: %w (build it with `make build`, or install it next to chorus: go build -o %s ./cmd/chorus-agent)", path, err, path)
	}
	if err := syscall.Exec(path, append([]string{path}, args...), os.Environ()); err != nil {
		return fmt.Errorf("chorus agent: run %s: %w", path, err)
	}
	return nil // not reached: Exec returns only on failure
}

// newResetCmd is `chorus reset`: remove everything a stopped peer left on
// this machine.
func newResetCmd() *cobra.Command {
	var name, dataDir, address, namespace, bridge string
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Remove a stopped peer's containers, pod network, private containerd and data dir",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := agent.Config{Name: name, DataDir: dataDir, ContainerdAddress: address, ContainerdNamespace: namespace, Bridge: bridge,
				Log: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
			if cfg.Name == "" && cfg.DataDir == "" {
				return fmt.Errorf("reset needs --name or --data-dir")
			}
			if cfg.DataDir == "" {
				cfg.DataDir = "/var/lib/chorus/" + cfg.Name
			}
			// Reset fills in the rest from what the peer recorded when it ran.
			if err := agent.Reset(cmd.Context(), cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peer %s reset: %s removed\n", cmp.Or(cfg.Name, cfg.DataDir), cfg.DataDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "peer name (as given to chorus agent)")
	f.StringVar(&dataDir, "data-dir", "", "data dir (default /var/lib/chorus/<name>)")
	f.StringVar(&address, "containerd-address", "", "the containerd the peer used, if not its private one")
	f.StringVar(&namespace, "containerd-namespace", "", "containerd namespace (default chorus-<name>)")
	f.StringVar(&bridge, "bridge", "", "bridge device (default derived from the name)")
	return cmd
}

// newKeygenCmd is `chorus keygen`: print a new gossip key.
func newKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new gossip encryption key (32 random bytes, base64) for --gossip-key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var k [32]byte
			if _, err := rand.Read(k[:]); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), base64.StdEncoding.EncodeToString(k[:]))
			return nil
		},
	}
}
