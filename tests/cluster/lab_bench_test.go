package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/lab"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// BenchmarkLabDetection measures failure detection on lossy links: five
// peers made by `chorus cluster create` (a network namespace each), every
// machine losing loss% of what it sends, for each gossip profile. For 30 s
// nobody is down and the peers' logs are searched for suspicions and
// deaths (false ones); then the last peer is killed (kill -9 of its agent)
// three times (with its containerd, as a dead machine), each time measuring
// until the first peer's API shows it NotReady, and restarted.
//
//	go test -run '^$' -bench LabDetection -benchtime 1x ./tests/cluster/
func BenchmarkLabDetection(b *testing.B) {
	for _, profile := range []string{"lan", "local"} {
		for _, loss := range []float64{0, 1, 5} {
			b.Run(fmt.Sprintf("profile=%s/loss=%g", profile, loss), func(b *testing.B) {
				for range b.N {
					labDetection(b, profile, loss, false)
				}
			})
		}
		// Every core of the machine busy (as many spinning processes as
		// cores, for the whole measure) with 1% loss.
		b.Run(fmt.Sprintf("profile=%s/loss=1/cpu=full", profile), func(b *testing.B) {
			for range b.N {
				labDetection(b, profile, 1, true)
			}
		})
	}
}

// burnCPU starts one spinning process per core; stop kills them.
func burnCPU(b *testing.B) (stop func()) {
	var cmds []*exec.Cmd
	for range goruntime.NumCPU() {
		c := exec.Command("sh", "-c", "while :; do :; done")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	return func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}

func labDetection(b *testing.B, profile string, loss float64, busy bool) {
	name := fmt.Sprintf("lb%d", os.Getpid()%10000)
	l := lab.Lab{Name: name, Subnet: netip.MustParsePrefix("10.214.202.0/24")}
	dir := b.TempDir()
	create := []string{"cluster", "create", "--name", name, "--peers", "5", "--subnet", l.Subnet.String(), "--dir", dir,
		"--agent-flag=--gossip-profile=" + profile}
	chorus := func(args ...string) {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			b.Fatalf("chorus %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b.Cleanup(func() {
		_ = exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).Run()
		_ = l.Delete()
	})
	chorus(create...)
	ms := l.Machines()
	for _, m := range ms {
		if err := l.Shape(m, lab.Link{Loss: loss}); err != nil {
			b.Fatal(err)
		}
	}
	if busy {
		defer burnCPU(b)()
	}
	logLen := map[string]int{}
	logOf := func(m lab.Machine) []byte {
		out, _ := os.ReadFile(filepath.Join(dir, name, m.Name+".log"))
		return out
	}
	for _, m := range ms {
		logLen[m.Name] = len(logOf(m))
	}
	time.Sleep(30 * time.Second)
	suspicions, deaths := 0, 0
	for _, m := range ms {
		since := logOf(m)[logLen[m.Name]:]
		suspicions += bytes.Count(since, []byte("memberlist: Suspect"))
		deaths += bytes.Count(since, []byte("EventMemberFailed"))
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, name, "kubeconfig"))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Timeout = 2 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	victim := ms[len(ms)-1]
	var took []float64
	for range 3 {
		pid, err := os.ReadFile(filepath.Join(dir, name, victim.Name+".pid"))
		if err != nil {
			b.Fatal(err)
		}
		p, err := strconv.Atoi(strings.TrimSpace(string(pid)))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		runtime.KillPeerProcesses(filepath.Join(dir, name, victim.Name)) // as a dead machine: its containerd too
		for {
			n, err := cs.CoreV1().Nodes().Get(context.Background(), victim.Name, metav1.GetOptions{})
			if err == nil && !nodeReady(n.Status.Conditions) {
				took = append(took, time.Since(start).Seconds())
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s killed a minute ago and still Ready", victim.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		chorus(create...) // starts the killed peer again, waits until all are Ready
		if err := l.Shape(victim, lab.Link{Loss: loss}); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(took)
	b.ReportMetric(took[len(took)/2], "detect_median_s")
	b.ReportMetric(took[len(took)-1], "detect_max_s")
	b.ReportMetric(float64(suspicions), "suspicions/30s")
	b.ReportMetric(float64(deaths), "false_deaths/30s")
	b.Logf("profile %s, loss %g%%: detection %v s; in 30 s with nobody down: %d suspicions, %d deaths", profile, loss, took, suspicions, deaths)
}

// nodeReady reports whether the Ready condition is True.
func nodeReady(cs []corev1.NodeCondition) bool {
	for _, c := range cs {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// BenchmarkLabPodToPod measures TCP throughput between pods on two peers
// (each in a network namespace of its own, `chorus cluster create`), over
// the encrypted pod network (WireGuard, the default of a cluster with a
// key) and, on a second cluster started with --wireguard-port=0, over plain
// host-gw routes; and, in the same run, between the two machines
// themselves with the same program (the web test image's, built for the
// host): the pod network's cost is the ratio. Each figure is the median of
// three 1 GB transfers (HTTP GET of /zero, read by `/app throughput`).
//
//	go test -run '^$' -bench LabPodToPod -benchtime 1x ./tests/cluster/
func BenchmarkLabPodToPod(b *testing.B) {
	for range b.N {
		wg, _ := labPodToPod(b, "10.214.203.0/24", false)
		plainPods, machines := labPodToPod(b, "10.214.207.0/24", true)
		b.ReportMetric(wg, "pod_to_pod_wireguard_MB/s")
		b.ReportMetric(plainPods, "pod_to_pod_hostgw_MB/s")
		b.ReportMetric(machines, "machine_to_machine_MB/s")
		b.ReportMetric(wg/machines, "ratio_wireguard")
		b.ReportMetric(plainPods/machines, "ratio_hostgw")
		b.Logf("pod to pod across peers: WireGuard %.0f MB/s, host-gw %.0f MB/s; machine to machine %.0f MB/s; ratios %.2f and %.2f",
			wg, plainPods, machines, wg/machines, plainPods/machines)
	}
}

// labPodToPod runs a cluster of two peers on subnet (plain: host-gw
// routes, else WireGuard) and returns the median pod to pod throughput
// and, with plain, the machine to machine one.
func labPodToPod(b *testing.B, subnet string, plain bool) (pod, machines float64) {
	name := fmt.Sprintf("lp%d", os.Getpid()%10000)
	create := []string{}
	if plain {
		name += "h"
		create = append(create, "--agent-flag=--wireguard-port=0")
	}
	l := lab.Lab{Name: name, Subnet: netip.MustParsePrefix(subnet)}
	dir := b.TempDir()
	defer func() {
		_ = exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).Run()
		_ = l.Delete()
	}()
	run := func(name string, args ...string) string {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(bin, append([]string{"cluster", "create", "--name", name, "--peers", "2", "--subnet", l.Subnet.String(), "--dir", dir}, create...)...)
	kc := filepath.Join(dir, name, "kubeconfig")
	img, err := images.Build(context.Background(), "web", images.CacheDir(), []string{"example/web:1"}, images.FormatDocker)
	if err != nil {
		b.Fatal(err)
	}
	run(bin, "--kubeconfig", kc, "image", "load", img)
	manifest := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(manifest, []byte(harness.WebDeployment("web", 2)), 0o644); err != nil {
		b.Fatal(err)
	}
	k := harness.Kubectl(b)
	run(k, "--kubeconfig", kc, "apply", "-f", manifest)
	run(k, "--kubeconfig", kc, "rollout", "status", "deployment/web", "--timeout=120s")
	var pods [][3]string // name, IP, node
	for _, line := range strings.Split(strings.TrimSpace(run(k, "--kubeconfig", kc, "get", "pods", "-l", "app=web", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{"\n"}{end}`)), "\n") {
		if f := strings.Fields(line); len(f) == 3 {
			pods = append(pods, [3]string{f[0], f[1], f[2]})
		}
	}
	if len(pods) != 2 || pods[0][2] == pods[1][2] {
		b.Fatalf("want the two pods on two peers: %v", pods)
	}
	ms := l.Machines()
	// The route to the other pod is the kind asked for.
	h := machineNet(b, ms[1])
	wg := wireGuardLink(b, h)
	if plain == (wg != nil) {
		b.Fatalf("cluster %s (plain %v): WireGuard device %v", name, plain, wg)
	}
	const size = "1000000000"
	median := func(measure func() string) float64 {
		var mbs []float64
		for range 3 {
			out := measure()
			var n int64
			var v float64
			if _, err := fmt.Sscanf(strings.TrimSpace(out), "%d bytes %f MB/s", &n, &v); err != nil || strconv.FormatInt(n, 10) != size {
				b.Fatalf("throughput said %q: %v", out, err)
			}
			mbs = append(mbs, v)
		}
		slices.Sort(mbs)
		return mbs[1]
	}
	pod = median(func() string {
		return run(k, "--kubeconfig", kc, "exec", pods[0][0], "--", "/app", "throughput", "http://"+pods[1][1]+":8080/zero?bytes="+size)
	})
	if !plain {
		return pod, 0
	}

	web := hostWeb(b)
	server := ms[0].Command(web, "-port", "9099")
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	url := fmt.Sprintf("http://%s:9099/zero?bytes=%s", ms[0].Addr, size)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := harness.HTTPGet(fmt.Sprintf("http://%s:9099/", ms[0].Addr)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the web program did not start in machine 1")
		}
		time.Sleep(100 * time.Millisecond)
	}
	machines = median(func() string { return run("nsenter", "--net="+ms[1].NetNS, "--", web, "throughput", url) })
	return pod, machines
}

// BenchmarkLabImageSpread is BenchmarkImageSpread on machines with shaped
// links: five peers made by `chorus cluster create`, every machine's link
// limited to 100 Mbit/s. A 100 MB image is loaded on the first peer; then,
// copying to each: `chorus image load` run on the first peer's machine
// sends the archive to each of the 4 others in turn (through the first
// machine's link); peer to peer, in the same run on a fresh cluster: a
// DaemonSet of the image, timed until all 5 peers hold it.
//
//	go test -run '^$' -bench LabImageSpread -benchtime 1x ./tests/cluster/
func BenchmarkLabImageSpread(b *testing.B) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	archive := bigImage(b, imgs["web"], 100<<20)
	const rate = 100_000_000
	for range b.N {
		var copyEach, p2p time.Duration
		for _, mode := range []string{"copy", "p2p"} {
			name := fmt.Sprintf("li%d%s", os.Getpid()%1000, mode)
			l := lab.Lab{Name: name, Subnet: netip.MustParsePrefix("10.214.204.0/24")}
			dir := b.TempDir()
			run := func(args ...string) string {
				b.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
				if err != nil {
					b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			b.Cleanup(func() {
				if _, err := os.Stat(filepath.Join(dir, name, "cluster.json")); err == nil {
					_ = exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).Run()
				}
				_ = l.Delete()
			})
			run(bin, "cluster", "create", "--name", name, "--peers", "5", "--subnet", l.Subnet.String(), "--dir", dir)
			ms := l.Machines()
			for _, m := range ms {
				if err := l.Shape(m, lab.Link{Rate: rate}); err != nil {
					b.Fatal(err)
				}
			}
			kubeconfig := func(m lab.Machine) string { return filepath.Join(dir, name, m.Name, "kubeconfig") }
			fromFirst := func(m lab.Machine, args ...string) string {
				return run(append([]string{"nsenter", "--net=" + ms[0].NetNS, "--", bin, "--kubeconfig", kubeconfig(m)}, args...)...)
			}
			fromFirst(ms[0], "image", "load", archive)
			start := time.Now()
			if mode == "copy" {
				for _, m := range ms[1:] {
					fromFirst(m, "image", "load", archive)
				}
				copyEach = time.Since(start)
			} else {
				manifest := filepath.Join(dir, "ds.yaml")
				if err := os.WriteFile(manifest, []byte(bigDaemonSet), 0o644); err != nil {
					b.Fatal(err)
				}
				fromFirst(ms[0], "apply", "-f", manifest)
				for {
					held := imageHolders(fromFirst(ms[0], "image", "ls"), "docker.io/example/big:1")
					if held >= 5 {
						break
					}
					if time.Since(start) > 8*time.Minute {
						b.Fatalf("image on %d peers after 8 minutes", held)
					}
					time.Sleep(200 * time.Millisecond)
				}
				p2p = time.Since(start)
			}
			run(bin, "cluster", "delete", "--name", name, "--dir", dir)
		}
		b.Logf("100 MB image onto 4 more peers over 100 Mbit/s links: copy to each %s, peer to peer %s",
			copyEach.Round(10*time.Millisecond), p2p.Round(10*time.Millisecond))
		b.ReportMetric(copyEach.Seconds(), "s-copy-to-each")
		b.ReportMetric(p2p.Seconds(), "s-peer-to-peer")
	}
}
