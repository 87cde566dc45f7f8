package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/lab"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// TestLabCluster runs what a user runs: `chorus cluster create` makes three
// peers, each in a network namespace of its own (machines, for the
// network), and the test drives the cluster with the real kubectl through
// the kubeconfig it prints. A pod reaches a pod of another peer by its IP
// and sees the caller's own pod IP (no translation), the host reaches
// every pod and every peer's NodePort, a peer cut off the network
// (every packet lost) is found dead and its pods run elsewhere, and
// `chorus cluster delete` leaves nothing behind. The cluster has a key, so
// pod traffic between peers is encrypted (WireGuard): routed to each
// peer's device, counted by it, and a killed peer started again rejoins
// the overlay.
func TestLabCluster(t *testing.T) {
	name := fmt.Sprintf("lt%d", os.Getpid()%10000)
	subnet := netip.MustParsePrefix("10.214.201.0/24")
	dir := t.TempDir()
	l := lab.Lab{Name: name, Subnet: subnet}
	run := func(timeout time.Duration, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("chorus %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range l.Machines() {
				if b, err := os.ReadFile(filepath.Join(dir, name, m.Name+".log")); err == nil {
					t.Logf("log of %s (last 4000 bytes):\n%s", m.Name, tail(b, 4000))
				}
			}
		}
		if _, err := os.Stat(filepath.Join(dir, name, "cluster.json")); err == nil {
			if out, err := exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).CombinedOutput(); err != nil {
				t.Logf("cluster delete: %v\n%s", err, out)
			}
		}
		_ = l.Delete()
	})
	out := run(4*time.Minute, "cluster", "create", "--name", name, "--peers", "3", "--subnet", subnet.String(), "--dir", dir)
	kc := filepath.Join(dir, name, "kubeconfig")
	if !strings.Contains(out, "export KUBECONFIG="+kc) || !strings.Contains(out, "3/3 Ready") {
		t.Fatalf("cluster create said:\n%s", out)
	}
	k := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		b, err := exec.CommandContext(ctx, harness.Kubectl(t), append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput()
		return string(b), err
	}
	mustK := func(args ...string) string {
		t.Helper()
		out, err := k(args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// A peer claims its pod subnet once it has heard the others' claims:
	// a moment after it is Ready.
	for deadline := time.Now().Add(30 * time.Second); ; {
		cidrs := mustK("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR} {end}")
		if len(strings.Fields(cidrs)) == 3 && !strings.Contains(cidrs, "= ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes' pod CIDRs 30 s after the cluster was made: %q", cidrs)
		}
		time.Sleep(500 * time.Millisecond)
	}

	img, err := images.Build(context.Background(), "web", images.CacheDir(), []string{"example/web:1"}, images.FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	run(2*time.Minute, "--kubeconfig", kc, "image", "load", img)
	manifest := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(manifest, []byte(labServices), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK("apply", "-f", manifest)
	mustK("rollout", "status", "deployment/web", "--timeout=120s")

	pods := func() []labPod {
		t.Helper()
		var ps []labPod
		for _, line := range strings.Split(strings.TrimSpace(mustK("get", "pods", "-l", "app=web", "-o",
			`jsonpath={range .items[?(@.status.podIP)]}{.metadata.name} {.status.podIP} {.spec.nodeName}{"\n"}{end}`)), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				ps = append(ps, labPod{f[0], f[1], f[2]})
			}
		}
		return ps
	}
	ps := pods()
	byNode := map[string]labPod{}
	for _, p := range ps {
		byNode[p.node] = p
	}
	if len(byNode) < 2 {
		t.Fatalf("the pods are not on two peers at least: %v", ps)
	}
	// Pod to pod across peers, by IP, untranslated.
	for _, from := range byNode {
		for _, to := range byNode {
			if from.node == to.node {
				continue
			}
			got := strings.TrimSpace(mustK("exec", from.name, "--", "/app", "fetch", "http://"+to.ip+":8080/remote"))
			if got != from.ip {
				t.Fatalf("%s (%s on %s) asked %s (on %s): it saw the caller as %q, want the pod's own IP", from.name, from.ip, from.node, to.name, to.node, got)
			}
		}
	}
	ms := l.Machines()
	if len(ms) != 3 {
		t.Fatalf("machines: %v", ms)
	}
	// The cluster has a key: pod traffic between peers goes through
	// WireGuard, and every peer reaches every pod.
	web := hostWeb(t)
	checkWireGuard(t, ms, ps, web, mustK)
	// The host reaches each peer's NodePort, and (through the peer it
	// runs on) each pod.
	for _, m := range ms {
		if body, err := harness.HTTPGet(fmt.Sprintf("http://%s:31201/", m.Addr)); err != nil || !strings.HasPrefix(body, "hello from web-") {
			t.Fatalf("NodePort of %s: %q %v", m.Name, body, err)
		}
	}
	// Services translated by the kernel: ClusterIP, NodePort (TCP and
	// UDP), LoadBalancer, affinity, a deleted endpoint.
	checkKernelServices(t, l, ms, pods, mustK, overlayAddrs(t, mustK))
	mustK("rollout", "status", "deployment/web", "--timeout=120s")

	// Cut peer 3 off: every packet of its link lost.
	victim := ms[2]
	if err := l.Shape(victim, lab.Link{Loss: 100}); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	deadline := cut.Add(90 * time.Second)
	for {
		out, _ := k("get", "nodes", victim.Name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
		moved := true
		for _, p := range pods() {
			if p.node == victim.Name {
				moved = false
			}
		}
		ready, _ := k("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}")
		if out != "True" && moved && ready == "3" {
			t.Logf("peer %s cut off: found dead and its pods Ready elsewhere after %v", victim.Name, time.Since(cut).Round(100*time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s cut off for 90 s: Ready=%q, pods %v, ready replicas %q", victim.Name, out, pods(), ready)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := l.Shape(victim, lab.Link{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(90 * time.Second); ; {
		out, _ := k("get", "nodes", victim.Name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
		if out == "True" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s not Ready 90 s after its link came back: %q", victim.Name, out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// Peer 3 comes back with another address (killed with its containers,
	// as a dead machine; its machine given a new address; started again
	// with the same name and data): its WireGuard device goes with it and
	// comes back, it rejoins, keeps its pod subnet, and its pods are
	// reached at their addresses from the other peers' pods, through its
	// NodePort at its new address; machines reach every pod.
	cidr := mustK("get", "nodes", victim.Name, "-o", "jsonpath={.spec.podCIDR}")
	moved := restartWithNewAddress(t, l, filepath.Join(dir, name), victim, ms[0])
	for deadline := time.Now().Add(90 * time.Second); ; {
		out, _ := k("get", "nodes", victim.Name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.addresses[?(@.type=="InternalIP")].address}`)
		if out == "True "+moved.Addr.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s restarted at %s: not Ready there after 90 s: %q", victim.Name, moved.Addr, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for deadline := time.Now().Add(60 * time.Second); wireGuardLink(t, machineNet(t, victim)) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no WireGuard device 60 s after its peer restarted", victim.Name)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := mustK("get", "nodes", victim.Name, "-o", "jsonpath={.spec.podCIDR}"); got != cidr {
		t.Fatalf("peer %s restarted with a new address: pod subnet %s, was %s", victim.Name, got, cidr)
	}
	mustK("scale", "deployment/web", "--replicas=6")
	mustK("rollout", "status", "deployment/web", "--timeout=120s")
	var there, elsewhere []labPod
	for _, p := range pods() {
		if p.node == victim.Name {
			there = append(there, p)
		} else {
			elsewhere = append(elsewhere, p)
		}
	}
	if len(there) == 0 || len(elsewhere) == 0 {
		t.Fatalf("after scaling to 6, pods on %s: %v, elsewhere: %v", victim.Name, there, elsewhere)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		got, err := k("exec", elsewhere[0].name, "--", "/app", "fetch", "http://"+there[0].ip+":8080/remote")
		if err == nil && strings.TrimSpace(got) == elsewhere[0].ip {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s (on %s) cannot reach %s (%s on %s, moved to %s): %q %v", elsewhere[0].name, elsewhere[0].node,
				there[0].name, there[0].ip, victim.Name, moved.Addr, got, err)
		}
		time.Sleep(time.Second)
	}
	if body, err := harness.HTTPGet(fmt.Sprintf("http://%s:31201/", moved.Addr)); err != nil || !strings.HasPrefix(body, "hello from web-") {
		t.Fatalf("NodePort of %s at its new address %s: %q %v", victim.Name, moved.Addr, body, err)
	}
	overlay := overlayAddrs(t, mustK)
	checkMachineReachesPods(t, moved, pods, overlay, web)
	checkMachineReachesPods(t, ms[0], pods, overlay, web)

	out = run(3*time.Minute, "cluster", "delete", "--name", name, "--dir", dir)
	if !strings.Contains(out, "cluster "+name+" deleted") {
		t.Fatalf("cluster delete said:\n%s", out)
	}
	for _, m := range ms {
		if _, err := os.Stat(m.NetNS); err == nil {
			t.Errorf("%s left behind", m.NetNS)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
		t.Errorf("%s left behind", filepath.Join(dir, name))
	}
}

// processRuns reports whether process pid exists and is not a zombie
// (whose files, and so its TUN device, are already closed).
func processRuns(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
