// Command chorus-agent is a chorus peer: `chorus agent` runs it (the
// chorus binary execs chorus-agent, found next to itself, with the same
// arguments), and it can be run directly with the same flags. It is a
// binary of its own so that a peer's memory holds no kubectl: the kubectl
// built into chorus (k8s.io/kubectl, cli-runtime, client-go) doubles the
// binary, and a peer's resident memory with it (docs/BENCHMARKS.md).
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
	"time"

	"github.com/chorus-sh/chorus/agent"
	"github.com/chorus-sh/chorus/api"
	"github.com/spf13/cobra"
	"github.com/spf13/viper"
)

// version is the peer's version, set at build time with
// -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() {
	tuneGC(os.Getenv)
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the agent's command line args and returns the process'
// exit code; an error is printed to stderr as chorus prints it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newAgentCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	cmd.SilenceErrors = true
	cmd.SilenceUsage = true
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// newAgentCmd is the peer's command line (chorus-agent, or `chorus agent`
// which runs it). Every flag can also come from the config file (--config,
// YAML/TOML/JSON, keys named as the flags) or from CHORUS_<FLAG>
// environment variables (dashes become underscores).
func newAgentCmd() *cobra.Command {
	v := viper.New()
	cmd := &cobra.Command{
		Use:     "chorus-agent",
		Short:   "Run a chorus peer on this machine",
		Version: version,
		Long: `Run a chorus peer: it stores the desired state, runs the pods assigned to it
in containerd with CNI networking, and serves the API the CLI talks to.
` + "`chorus agent ARGS`" + ` runs this program, chorus-agent, found next to chorus.

The cluster is protected with no flag: the first peer (no --join) creates
the cluster secret and writes its join token to <data-dir>/token (0600);
the other peers join with it (--join-token-file, --join-token or
CHORUS_JOIN_TOKEN) and keep it in their own data dir, so a restart needs
no flag. Gossip is encrypted, the API is TLS with certificates of a CA
derived from the secret and a bearer token, and every peer writes an
admin kubeconfig to <data-dir>/kubeconfig. --insecure runs an open cluster.

Every flag can also be set in a config file (--config) or through an
environment variable CHORUS_<FLAG>, e.g. CHORUS_DATA_DIR=/srv/chorus.`,
		Example: `  chorus agent --name n1 --bind 127.0.0.11 --data-dir /var/lib/chorus/n1
  chorus agent --name n2 --bind 127.0.0.12 --join 127.0.0.11 --join-token-file /var/lib/chorus/n1/token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f := v.GetString("config"); f != "" {
				v.SetConfigFile(f)
				if err := v.ReadInConfig(); err != nil {
					return fmt.Errorf("read config %s: %w", f, err)
				}
			}
			level := slog.LevelInfo
			if err := level.UnmarshalText([]byte(v.GetString("log-level"))); err != nil {
				return fmt.Errorf("--log-level %q: want debug, info, warn or error", v.GetString("log-level"))
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			cfg := agent.Config{
				Name:                v.GetString("name"),
				Bind:                v.GetString("bind"),
				APIPort:             v.GetInt("api-port"),
				DataDir:             v.GetString("data-dir"),
				ContainerdAddress:   v.GetString("containerd-address"),
				ContainerdNamespace: v.GetString("containerd-namespace"),
				Bridge:              v.GetString("bridge"),
				PodSubnet:           v.GetString("pod-subnet"),
				CNIPluginDirs:       v.GetStringSlice("cni-plugin-dir"),
				Join:                v.GetStringSlice("join"),
				Discover:            v.GetBool("discover"),
				GossipKey:           v.GetString("gossip-key"),
				GossipProfile:       v.GetString("gossip-profile"),
				SerfPort:            v.GetInt("serf-port"),
				P2PPort:             v.GetInt("p2p-port"),
				HopPort:             v.GetInt("hop-port"),
				WireGuardPort:       v.GetInt("wireguard-port"),
				IngressHTTPPort:     v.GetInt("ingress-http-port"),
				IngressHTTPSPort:    v.GetInt("ingress-https-port"),
				Insecure:            v.GetBool("insecure"),
				APIHosts:            v.GetStringSlice("api-host"),
				ServiceProxy:        v.GetString("service-proxy"),
				Version:             version,
				Log:                 log,
			}
			labels, err := parseLabels(v.GetStringSlice("label"))
			if err != nil {
				return err
			}
			cfg.Labels = labels
			for _, p := range v.GetStringSlice("allow-host-path") {
				if !filepath.IsAbs(p) {
					return fmt.Errorf("--allow-host-path %q: want an absolute path", p)
				}
				cfg.AllowedHostPaths = append(cfg.AllowedHostPaths, filepath.Clean(p))
			}
			if cfg.MaxImageSize, err = api.ParseMemory(v.GetString("max-image-size")); err != nil || cfg.MaxImageSize < 1<<20 {
				return fmt.Errorf("--max-image-size %q: want a size of at least 1Mi, like 4Gi", v.GetString("max-image-size"))
			}
			if cfg.MaxImageExpansion = v.GetInt64("max-image-expansion"); cfg.MaxImageExpansion < 0 {
				return fmt.Errorf("--max-image-expansion %d: want a ratio, or 0 for no bound", cfg.MaxImageExpansion)
			} else if cfg.MaxImageExpansion == 0 {
				cfg.MaxImageExpansion = -1
			}
			if cfg.MetricsInterval = v.GetDuration("metrics-interval"); cfg.MetricsInterval == 0 {
				cfg.MetricsInterval = -1 // 0 on the command line: off
			} else if cfg.MetricsInterval > 0 && cfg.MetricsInterval < 100*time.Millisecond {
				return fmt.Errorf("--metrics-interval %v: want at least 100ms, or 0 for no resource metrics", cfg.MetricsInterval)
			} else if cfg.MetricsInterval < 0 {
				return fmt.Errorf("--metrics-interval %v: want a duration, 0 for no resource metrics", cfg.MetricsInterval)
			}
			if cfg.ImageGCAfter = v.GetDuration("image-gc-after"); cfg.ImageGCAfter < 0 {
				return fmt.Errorf("--image-gc-after %v: want a duration, 0 to keep unused images", cfg.ImageGCAfter)
			}
			if cfg.APIToken, err = apiToken(v.GetString("api-token"), v.GetString("api-token-file")); err != nil {
				return err
			}
			if cfg.JoinToken, err = joinToken(v.GetString("join-token"), v.GetString("join-token-file")); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "config file (YAML, TOML or JSON) with any of these flags as keys")
	f.String("name", "", "peer name (default: the host name)")
	f.String("bind", "127.0.0.1", "address this peer listens on")
	f.Int("api-port", 7070, "port of the HTTP API on --bind")
	f.String("data-dir", "", "where the peer keeps its state (default /var/lib/chorus/<name>)")
	f.String("containerd-address", "", "use the containerd at this socket (default: start a private containerd under the data dir)")
	f.String("containerd-namespace", "", "containerd namespace of this peer (default chorus-<name>)")
	f.String("bridge", "", "bridge device of the pod network (default derived from the name)")
	f.String("pod-subnet", "", "pod subnet of this peer, claimed even against another peer's (default: a /24 claimed cluster-wide, 10.88.<last octet of --bind>.0/24 when free, kept across restarts)")
	f.StringSlice("cni-plugin-dir", nil, "directories holding the CNI plugins (default /usr/lib/cni,/opt/cni/bin)")
	f.StringSlice("join", nil, "peers to join, host or host:port (repeatable); none: discover by mDNS")
	f.Bool("discover", true, "find peers on the local network by mDNS")
	f.String("join-token", "", "join token of the cluster to join (the first peer's <data-dir>/token); env CHORUS_JOIN_TOKEN; default: the token kept in the data dir, or a new cluster")
	f.String("join-token-file", "", "read --join-token from this file, out of the process list")
	f.Bool("insecure", false, "run an open cluster: no cluster secret, plain HTTP API, no token unless --api-token, no gossip encryption unless --gossip-key (not for networks you do not trust)")
	f.String("gossip-key", "", "base64 key encrypting membership gossip (chorus keygen); peers without it are refused; default: derived from the cluster secret")
	f.String("gossip-profile", "local", "failure detection timings: local (one machine or a local network: a dead peer found in 1-2 s), lan (round trips up to ~100 ms, busy machines: 2-4 s) or wan (tens of seconds); see docs/ARCHITECTURE.md")
	f.StringSlice("label", nil, "node label k=v (repeatable)")
	f.StringSlice("allow-host-path", nil, "a path prefix of this machine that pods may mount as hostPath volumes (repeatable; none: hostPath is refused, as a pod that mounts / owns the machine)")
	f.StringSlice("api-host", nil, "DNS name clients use for this peer's API (repeatable); IP addresses, localhost, --name and the host name are always accepted, any other Host header is refused")
	f.String("api-token", "", "bearer token every API request must carry (chorus --token); the same on every peer; default: derived from the cluster secret (none with --insecure)")
	f.String("api-token-file", "", "read --api-token from this file (trimmed), out of the process list")
	f.Int("serf-port", 7946, "membership port (UDP and TCP) on --bind")
	f.Int("p2p-port", 7947, "data plane port (TCP) on --bind")
	f.Int("hop-port", 7948, "port on --bind where other peers' service proxies reach this peer's pods")
	f.Int("wireguard-port", 7949, "UDP port (every address) of the WireGuard device that encrypts pod traffic between peers on different machines, in a cluster that is not --insecure (0: no WireGuard, plain routes; peers sharing a machine need none)")
	f.Int("ingress-http-port", 80, "port on --bind where this peer serves the cluster's Ingresses over HTTP (0: none)")
	f.Int("ingress-https-port", 443, "port on --bind where this peer serves the cluster's Ingresses over HTTPS, with the certificates of their tls Secrets (0: none)")
	f.String("service-proxy", "kernel", "how service connections reach their pods: kernel (nftables translates them where every endpoint is on the pod network; the user-space proxy serves the rest) or userspace")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("max-image-size", "4Gi", "largest image a load, fetch or pull may bring: the archive or compressed blobs, and the unpacked size of each image")
	f.Int64("max-image-expansion", 100, "refuse an image layer that unpacks to more than this many times its compressed size and more than 64Mi (a decompression bomb); 0: no bound")
	f.Duration("metrics-interval", 5*time.Second, "how often to sample the CPU and memory of this peer's containers and machine, for kubectl top and /metrics (0: not sampled)")
	f.Duration("image-gc-after", 24*time.Hour, "remove an image no pod on this peer used for this long when an alive peer whose name sorts first holds it too (0: never)")
	_ = v.BindPFlags(f)
	v.SetEnvPrefix("CHORUS")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--label %q: want key=value", kv)
		}
		out[k] = v
	}
	return out, nil
}

// apiToken returns the API token of the agent: --api-token, or the trimmed
// content of --api-token-file; "" when neither is set. An empty or
// unreadable file is an error: a peer must not start open by mistake.
func apiToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", errors.New("--api-token and --api-token-file: give one of them, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--api-token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--api-token-file %s: the file is empty", file)
		}
		if err := api.CheckToken(t); err != nil {
			return "", fmt.Errorf("--api-token-file %s: %w", file, err)
		}
		return t, nil
	case token != "":
		if err := api.CheckToken(token); err != nil {
			return "", fmt.Errorf("--api-token: %w", err)
		}
	}
	return token, nil
}

// joinToken returns the join token of the agent: --join-token (or
// CHORUS_JOIN_TOKEN), or the content of --join-token-file; "" when neither
// is set. The token itself is checked by the agent.
func joinToken(token, file string) (string, error) {
	switch {
	case token != "" && file != "":
		return "", errors.New("--join-token and --join-token-file: give one of them, not both")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--join-token-file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("--join-token-file %s: the file is empty", file)
		}
		return t, nil
	}
	return strings.TrimSpace(token), nil
}
