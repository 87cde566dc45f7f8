// Command scale runs N chorus peers in one process and measures how the
// cluster scales:
//
//	go run ./tests/scale -peers 50 -objects 1000 -pods 500 -json
//
// Each peer is an agent.Sim: chorus's real membership (serf on memberlist,
// failure detection with the lan profile), real data plane (a libp2p host,
// GossipSub deltas, the anti-entropy protocol), real store, placement,
// reconcile loop, pod status publication and runtime.PodManager; only the
// runtime is replaced, by one that "runs" pods in memory (memruntime.go),
// and nothing that touches the machine runs (containerd, CNI, routes,
// service addresses, proxy, API server). The peers talk over real loopback
// sockets: peer i listens on 127.0.<3+i/250>.<1+i%250> (127.0.3.0/24 to
// 127.0.9.0/24), on ports the kernel chooses. Timers are chorus's own, with
// the lan gossip profile (not the peers' default, local: every peer here
// shares this process and the machine's cores); -profile wan slows failure
// detection for runs of many peers, and the JSON says which was used.
//
// As root, the command runs itself in a network namespace of its own, so
// that the loopback's byte counter there is exactly what the peers sent
// (membership, data plane, framing and encryption included): the
// bytes_per_peer_per_s_* figures. Without it (-netns=false, or not root),
// only the replication payloads are counted (repl_bytes_per_peer_per_s_*,
// always reported). CPU is the process's, per peer, as a percentage of
// one core; memory is the resident set per peer (with the Go heap in use
// after a GC, heap_per_peer_mib). The last line of the output is one JSON
// object (with -json).
//
// What one run does: start the peers (each joins the first and two random
// earlier ones) and wait until each sees every other alive; store -objects
// ConfigMaps (500 a write, through the peers in turn) and wait until every
// peer holds them; write deployments for -pods replicas (10 a deployment)
// and wait until every replica is Running on exactly one peer, as every
// peer sees it; write -writes single objects through random peers, one
// every 200 ms, each timed until every peer holds it (converge_*); measure
// traffic and CPU for -window idle, then under -load writes a second; kill
// (no leave) the peer that runs the most pods and time until its pods run
// elsewhere, once each, as every surviving peer sees it (failover_ms).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const netnsEnv = "CHORUS_SCALE_NETNS"

func main() {
	var opt Options
	var (
		asJSON  bool
		netns   bool
		verbose bool
		profile string
	)
	flag.IntVar(&opt.Peers, "peers", 10, "peers to run")
	flag.IntVar(&opt.Objects, "objects", 1000, "ConfigMaps in the desired state")
	flag.IntVar(&opt.Pods, "pods", -1, "replicas to run (deployments of 10; -1: 5 a peer; 0: none, with -failover=false)")
	flag.IntVar(&opt.Writes, "writes", 50, "writes timed for convergence")
	flag.DurationVar(&opt.Window, "window", 15*time.Second, "how long idle and loaded traffic are measured")
	flag.IntVar(&opt.LoadRate, "load", 10, "writes a second during the loaded window (0: none)")
	flag.BoolVar(&opt.Failover, "failover", true, "kill a peer and time its pods' failover")
	flag.StringVar(&opt.Profile, "profile", "lan", "the peers' gossip profile: lan (the harness's default: not the peers' own, local, as every peer here shares two cores), local, or wan (slower failure detection, for runs of many peers)")
	flag.IntVar(&opt.FullMeshUpTo, "full-mesh", 0, "how many other peers a peer connects to all of (0: chorus's default); beyond, only to its neighbours")
	flag.DurationVar(&opt.Timeout, "timeout", 10*time.Minute, "bound of every wait")
	flag.StringVar(&opt.Dir, "dir", "", "where the peers' data dirs go (default: /dev/shm if present, else the temp dir)")
	flag.BoolVar(&asJSON, "json", false, "print the result as one JSON object on the last line")
	flag.BoolVar(&netns, "netns", true, "as root, run in a network namespace of its own and count every byte sent")
	flag.BoolVar(&verbose, "v", false, "log the peers' warnings and errors to stderr")
	flag.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if opt.Pods < 0 {
		opt.Pods = 5 * opt.Peers
	}
	if opt.Dir == "" {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			opt.Dir = "/dev/shm"
		}
	}
	if netns && os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" {
		os.Exit(reexec())
	}
	raiseFileLimit()
	if os.Getenv(netnsEnv) != "" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "scale: lo up: %v: %s\n", err, out)
			os.Exit(1)
		}
		opt.Counter = loBytes
		opt.SerfPort = memberPort
		if err := countMembership(); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		opt.MemberCounter = membershipBytes
	}
	opt.Log = slog.New(slog.DiscardHandler)
	if verbose {
		opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	start := time.Now()
	opt.Progress = func(phase string, took time.Duration) {
		fmt.Fprintf(os.Stderr, "scale: %s done (%.1f s) at %.1f s\n", phase, took.Seconds(), time.Since(start).Seconds())
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, opt)
	if err != nil {
		b, _ := json.Marshal(res)
		fmt.Fprintf(os.Stderr, "scale: %v\nscale: measured until then: %s\n", err, b)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		return
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
}

// reexec runs this command again in a new network namespace and returns
// its exit code.
func reexec() int {
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "scale: network namespace:", err)
		return 1
	}
	return 0
}

// loBytes is the bytes sent on the loopback of this network namespace
// (/proc/self/net/dev is the namespace's; /sys is the host's).
func loBytes() (uint64, error) {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		return 0, fmt.Errorf("loopback counter: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || name != "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			break
		}
		return strconv.ParseUint(f[8], 10, 64) // transmit bytes
	}
	return 0, errors.New("loopback counter: no lo in /proc/self/net/dev")
}

// memberPort is every peer's membership port in the harness's own network
// namespace, where each peer has an address of its own.
const memberPort = 7946

// countMembership counts, with an nftables rule in this network namespace,
// the bytes sent from or to memberPort (membership's UDP and TCP).
func countMembership() error {
	rules := fmt.Sprintf("table inet scale {\n chain out {\n  type filter hook output priority 0;\n  udp sport %[1]d counter\n  tcp sport %[1]d counter\n  tcp dport %[1]d counter\n }\n}\n", memberPort)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("membership counter: nft: %v: %s", err, out)
	}
	return nil
}

// membershipBytes sums countMembership's counters: UDP from the member
// port (every memberlist datagram: peers send from the port they listen
// on, so counting its destination too would count each twice), and TCP
// either way.
func membershipBytes() (uint64, error) {
	out, err := exec.Command("nft", "-j", "list", "chain", "inet", "scale", "out").Output()
	if err != nil {
		return 0, fmt.Errorf("membership counter: nft: %w", err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("membership counter: %w", err)
	}
	var sum []uint64
	for _, r := range doc.Nftables {
		if r.Rule == nil {
			continue
		}
		for _, e := range r.Rule.Expr {
			if c, ok := e["counter"]; ok {
				var v struct{ Bytes uint64 }
				if err := json.Unmarshal(c, &v); err != nil {
					return 0, fmt.Errorf("membership counter: %w", err)
				}
				sum = append(sum, v.Bytes)
			}
		}
	}
	if len(sum) != 3 {
		return 0, fmt.Errorf("membership counter: %d counters, want 3", len(sum))
	}
	return sum[0] + sum[1] + sum[2], nil
}

// raiseFileLimit lets many peers' connections open (each peer holds a
// connection to every other: two descriptors a pair in one process).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return
	}
	want := uint64(1 << 20)
	if l.Max < want && os.Geteuid() == 0 {
		l.Max = want
	}
	l.Cur = l.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}
