package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chorus-sh/chorus/lab"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// clustersDir holds what `chorus cluster create` makes: a directory per
// cluster with its record, its peers' data dirs and logs, and its kubeconfig.
const clustersDir = "/var/lib/chorus/clusters"

// labRecord is <dir>/cluster.json: what `cluster delete` needs to undo
// `cluster create`.
type labRecord struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet"`
	Peers  int    `json:"peers"`
}

// newClusterCreateCmd is `chorus cluster create`.
func newClusterCreateCmd(root *rootOptions) *cobra.Command {
	var name, subnet, dir string
	var peers int
	var wait time.Duration
	var agentFlags []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Start a local cluster: several peers, each in its own network namespace (as kind does with containers)",
		Long: "create starts a cluster of --peers peers on this machine, each in a network namespace of its own\n" +
			"(a machine of its own, for the network: one interface, eth0, on a bridge shared with the\n" +
			"others and with this host), then waits until every peer is Ready and prints how to reach the\n" +
			"cluster: its kubeconfig. The first peer creates the cluster's secret; the others join with its\n" +
			"token. Peers run chorus-agent (next to chorus), log to <dir>/<name>/<peer>.log and keep their\n" +
			"state in <dir>/<name>/<peer>. Running it again starts the peers that are not running.\n" +
			"Needs root. `chorus cluster delete` removes everything it made.",
		Example: "  chorus cluster create --name dev --peers 3\n  export KUBECONFIG=/var/lib/chorus/clusters/dev/kubeconfig\n  kubectl get nodes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l := lab.Lab{Name: name, Subnet: lab.DefaultSubnet(name)}
			if subnet != "" {
				p, err := netip.ParsePrefix(subnet)
				if err != nil {
					return fmt.Errorf("--subnet: %w", err)
				}
				l.Subnet = p
			}
			if peers < 1 || peers > 50 {
				return fmt.Errorf("--peers %d: want 1 to 50", peers)
			}
			return createLab(cmd.Context(), root.out, l, peers, filepath.Join(dir, name), wait, agentFlags)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "chorus", "name of the cluster (its peers are <name>-1, <name>-2, ...)")
	f.IntVar(&peers, "peers", 3, "number of peers")
	f.StringVar(&subnet, "subnet", "", "IPv4 subnet of the peers' machines (default a /24 of 10.213.0.0/16 chosen by the name); this host takes its first address")
	f.StringVar(&dir, "dir", clustersDir, "where clusters keep their peers' state, logs and kubeconfig")
	f.DurationVar(&wait, "wait", 3*time.Minute, "how long to wait for every peer to be Ready")
	f.StringArrayVar(&agentFlags, "agent-flag", nil, "a flag for every peer's chorus agent, e.g. --agent-flag=--gossip-profile=local (repeatable)")
	return cmd
}

// newClusterDeleteCmd is `chorus cluster delete`.
func newClusterDeleteCmd(root *rootOptions) *cobra.Command {
	var name, dir string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Stop and remove a cluster made by `chorus cluster create`: peers, pods, namespaces, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return deleteLab(cmd.Context(), root.out, filepath.Join(dir, name))
		},
	}
	cmd.Flags().StringVar(&name, "name", "chorus", "name of the cluster")
	cmd.Flags().StringVar(&dir, "dir", clustersDir, "where clusters keep their state")
	return cmd
}

// createLab makes the machines of l, starts a peer in each one that is not
// running, and waits until all are Ready.
func createLab(ctx context.Context, out io.Writer, l lab.Lab, n int, dir string, wait time.Duration, agentFlags []string) error {
	if os.Geteuid() != 0 {
		return errors.New("chorus cluster create needs root: it creates network namespaces and a bridge")
	}
	if err := l.Check(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if rec, err := readLabRecord(dir); err == nil && rec.Subnet != l.Subnet.String() {
		return fmt.Errorf("cluster %s exists with subnet %s (not %s): delete it first, or leave --subnet out", l.Name, rec.Subnet, l.Subnet)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	rec, _ := json.Marshal(labRecord{Name: l.Name, Subnet: l.Subnet.String(), Peers: n})
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), rec, 0o600); err != nil {
		return err
	}
	ms, err := l.Create(n)
	if err != nil {
		return err
	}
	first := ms[0]
	firstDir := filepath.Join(dir, first.Name)
	for i, m := range ms {
		args := []string{"agent", "--name", m.Name, "--bind", m.Addr.String(), "--data-dir", filepath.Join(dir, m.Name)}
		if i > 0 {
			args = append(args, "--join", first.Addr.String(), "--join-token-file", filepath.Join(firstDir, "token"))
		}
		args = append(args, agentFlags...)
		started, err := startPeer(dir, m, self, args)
		if err != nil {
			return err
		}
		if started {
			fmt.Fprintf(out, "peer %s started on %s (log: %s)\n", m.Name, m.Addr, filepath.Join(dir, m.Name+".log"))
		} else {
			fmt.Fprintf(out, "peer %s already running on %s\n", m.Name, m.Addr)
		}
		if i == 0 {
			// The others join with the token the first one writes.
			if err := waitFile(ctx, filepath.Join(firstDir, "token"), time.Minute, filepath.Join(dir, m.Name+".log")); err != nil {
				return err
			}
		}
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := waitFile(ctx, filepath.Join(firstDir, "kubeconfig"), time.Minute, filepath.Join(dir, first.Name+".log")); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(firstDir, "kubeconfig"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(kc, b, 0o600); err != nil {
		return err
	}
	if err := waitReady(ctx, out, kc, n, wait); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s: %d peers, each in its own network namespace on bridge %s (this host is %s)\n", l.Name, n, l.Bridge(), l.HostAddr())
	for _, m := range ms {
		fmt.Fprintf(out, "  %-12s %-15s nsenter --net=%s\n", m.Name, m.Addr, m.NetNS)
	}
	fmt.Fprintf(out, "reach it with its kubeconfig:\n  export KUBECONFIG=%s\n  kubectl get nodes\n", kc)
	fmt.Fprintf(out, "delete it with: chorus cluster delete --name %s\n", l.Name)
	return nil
}

// startPeer starts `chorus args` in machine m, detached, logging to
// <dir>/<peer>.log, unless the peer's recorded process still runs; it
// reports whether it started one.
func startPeer(dir string, m lab.Machine, self string, args []string) (bool, error) {
	pidFile := filepath.Join(dir, m.Name+".pid")
	if pid, ok := runningPid(pidFile); ok && pid > 0 {
		return false, nil
	}
	logf, err := os.OpenFile(filepath.Join(dir, m.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	c := m.Command(self, args...)
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		return false, fmt.Errorf("start peer %s: %w", m.Name, err)
	}
	pid := c.Process.Pid
	_ = c.Process.Release()
	return true, os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600)
}

// runningPid reads a pid file and says whether that process runs (a
// zombie, a killed peer its parent has not reaped yet, does not).
func runningPid(file string) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// zombie reports whether process pid has ended and waits to be reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// waitFile waits until file exists; on a timeout it shows the end of log.
func waitFile(ctx context.Context, file string, timeout time.Duration, log string) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(file); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			tail, _ := exec.Command("tail", "-n", "20", log).Output()
			return fmt.Errorf("%s did not appear within %s; the end of %s:\n%s", file, timeout, log, tail)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitReady waits until n nodes are Ready, as the cluster's API says,
// printing the count as it changes.
func waitReady(ctx context.Context, out io.Writer, kubeconfig string, n int, timeout time.Duration) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := -1
	var lastErr error
	for {
		ready := 0
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		lastErr = err
		if err == nil {
			for _, nd := range nodes.Items {
				for _, c := range nd.Status.Conditions {
					if c.Type == "Ready" && c.Status == "True" {
						ready++
					}
				}
			}
		}
		if ready != last {
			fmt.Fprintf(out, "waiting for the peers: %d/%d Ready\n", ready, n)
			last = ready
		}
		if ready >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d peers Ready after %s (last error: %v); see the peers' logs", ready, n, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func readLabRecord(dir string) (labRecord, error) {
	var rec labRecord
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return rec, err
	}
	return rec, json.Unmarshal(b, &rec)
}

// deleteLab stops every peer of the cluster in dir, removes what each left
// (containers, pod network, private containerd: `chorus reset` in its
// machine), the machines and the directory.
func deleteLab(ctx context.Context, out io.Writer, dir string) error {
	if os.Geteuid() != 0 {
		return errors.New("chorus cluster delete needs root")
	}
	rec, err := readLabRecord(dir)
	if err != nil {
		return fmt.Errorf("no cluster in %s: %w", dir, err)
	}
	p, err := netip.ParsePrefix(rec.Subnet)
	if err != nil {
		return fmt.Errorf("%s/cluster.json: subnet: %w", dir, err)
	}
	l := lab.Lab{Name: rec.Name, Subnet: p}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range l.Machines() {
		if pid, ok := runningPid(filepath.Join(dir, m.Name+".pid")); ok {
			stopProcess(ctx, pid, 30*time.Second)
		}
		data := filepath.Join(dir, m.Name)
		if _, err := os.Stat(data); err == nil {
			if b, err := m.Command(self, "reset", "--name", m.Name, "--data-dir", data).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("reset %s: %w: %s", m.Name, err, strings.TrimSpace(string(b))))
			}
		}
		fmt.Fprintf(out, "peer %s stopped and removed\n", m.Name)
	}
	if err := l.Delete(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s deleted\n", rec.Name)
	return nil
}

// stopProcess sends SIGTERM to pid and waits for it to end, then SIGKILL.
func stopProcess(ctx context.Context, pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
