package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

const subnetDaemons = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: sweb}
spec:
  selector: {matchLabels: {app: sweb}}
  template:
    metadata: {labels: {app: sweb}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: sweb}
spec:
  selector: {app: sweb}
  ports: [{port: 8080}]
`

// bridgeOf is the bridge device the agent derives from a peer's name.
func bridgeOf(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "chorus" + hex.EncodeToString(sum[:3])
}

// podCIDRs returns each node's spec.podCIDR as p serves them.
func podCIDRs(p *harness.Peer) map[string]string {
	out, err := p.CLI("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.podCIDR}{"\n"}{end}`)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
}

// readyOn returns the Ready pods of app sweb by node.
func readyOn(p *harness.Peer) (map[string]api.Pod, string) {
	pods, err := p.Pods("default")
	if err != nil {
		return nil, err.Error()
	}
	out := map[string]api.Pod{}
	var seen []string
	for _, x := range pods {
		if !strings.HasPrefix(x.Metadata.Name, "sweb-") {
			continue
		}
		seen = append(seen, fmt.Sprintf("%s@%s %s %s ready=%v", x.Metadata.Name, x.Spec.NodeName, x.Status.Phase, x.Status.PodIP, harness.IsReady(&x)))
		if harness.IsReady(&x) {
			out[x.Spec.NodeName] = x
		}
	}
	return out, strings.Join(seen, "; ")
}

// TestPodSubnetsClaimed: three peers whose addresses share their last
// octet (127.0.25x.5: each would have taken 10.88.5.0/24 before claims)
// claim distinct subnets, run a pod each that is Ready and reachable by
// its IP from the host and through a service from the other pods; a
// restarted peer keeps its subnet; a peer whose bridge was given a wrong
// address while it was down repairs it and runs pods again.
func TestPodSubnetsClaimed(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	s1 := harness.NewPeer(t, bin, "sn1", "127.0.250.5")
	s2 := harness.NewPeer(t, bin, "sn2", "127.0.251.5", "--join", "127.0.250.5")
	s3 := harness.NewPeer(t, bin, "sn3", "127.0.252.5", "--join", "127.0.250.5")
	peers := []*harness.Peer{s1, s2, s3}
	s1.Start()
	// The two others join at once: they claim concurrently.
	var wg sync.WaitGroup
	for _, p := range peers[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Start()
		}()
	}
	wg.Wait()
	waitNodes(t, s3, map[string]string{"sn1": "Alive", "sn2": "Alive", "sn3": "Alive"})

	var cidrs map[string]string
	harness.Eventually(t, 60*time.Second, "three distinct pod subnets, the same on every peer", func() (bool, string) {
		cidrs = podCIDRs(s1)
		seen := map[string]bool{}
		for _, c := range cidrs {
			seen[c] = true
		}
		if len(cidrs) != 3 || len(seen) != 3 {
			return false, fmt.Sprint(cidrs)
		}
		for _, p := range peers[1:] {
			if got := podCIDRs(p); fmt.Sprint(got) != fmt.Sprint(cidrs) {
				return false, fmt.Sprintf("%s sees %v, %s sees %v", s1.Name, cidrs, p.Name, got)
			}
		}
		return true, ""
	})
	t.Logf("pod subnets: %v", cidrs)
	if cidrs["sn1"] != "10.88.5.0/24" {
		t.Errorf("the first peer has %s, want 10.88.5.0/24 (its last octet, as before claims)", cidrs["sn1"])
	}
	for _, p := range peers {
		pfx, err := netip.ParsePrefix(cidrs[p.Name])
		if err != nil || !strings.HasPrefix(pfx.String(), "10.") {
			t.Fatalf("%s: pod subnet %q", p.Name, cidrs[p.Name])
		}
	}

	for _, p := range peers {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s1.CLI("apply", "-f", manifest(t, subnetDaemons)); err != nil {
		t.Fatal(err)
	}
	// Every pod Ready, in its peer's subnet, answering from the host by
	// its IP, and reaching the service by name (through its own peer's
	// service address and DNS server, which follow the subnet).
	checkPods := func(when string) map[string]api.Pod {
		t.Helper()
		var ready map[string]api.Pod
		harness.Eventually(t, 90*time.Second, "a Ready pod on each peer, in its subnet, "+when, func() (bool, string) {
			var why string
			ready, why = readyOn(s1)
			if len(ready) != 3 {
				return false, why
			}
			for node, pod := range ready {
				ip, err := netip.ParseAddr(pod.Status.PodIP)
				if err != nil || !netip.MustParsePrefix(cidrs[node]).Contains(ip) {
					return false, fmt.Sprintf("pod %s on %s has %s, not in %s", pod.Metadata.Name, node, pod.Status.PodIP, cidrs[node])
				}
			}
			return true, ""
		})
		for node, pod := range ready {
			harness.Eventually(t, 30*time.Second, "pod on "+node+" answers at "+pod.Status.PodIP+" "+when, func() (bool, string) {
				body, err := get("http://" + pod.Status.PodIP + ":8080/")
				return err == nil && strings.Contains(body, pod.Metadata.Name), fmt.Sprintf("%q %v", body, err)
			})
			harness.Eventually(t, 30*time.Second, "pod on "+node+" reaches the service "+when, func() (bool, string) {
				body, err := get("http://" + pod.Status.PodIP + ":8080/get?url=http://sweb:8080/")
				return err == nil && strings.HasPrefix(body, "200 hello from sweb-"), fmt.Sprintf("%q %v", body, err)
			})
		}
		return ready
	}
	checkPods("at first")
	for _, p := range peers {
		gw := netip.MustParsePrefix(cidrs[p.Name]).Addr().Next().String()
		if out, err := exec.Command("ip", "-4", "addr", "show", "dev", bridgeOf(p.Name)).CombinedOutput(); err != nil || !strings.Contains(string(out), gw+"/24") {
			t.Errorf("bridge of %s: want gateway %s:\n%s %v", p.Name, gw, out, err)
		}
	}

	// A restarted peer keeps its subnet (and its pod).
	s2.Stop()
	s2.Start()
	waitNodes(t, s1, map[string]string{"sn1": "Alive", "sn2": "Alive", "sn3": "Alive"})
	if got := podCIDRs(s2)["sn2"]; got != cidrs["sn2"] {
		t.Fatalf("sn2 restarted with %s, had %s", got, cidrs["sn2"])
	}
	if b, err := os.ReadFile(filepath.Join(s2.DataDir, "subnet.json")); err != nil || !strings.Contains(string(b), cidrs["sn2"]) {
		t.Errorf("sn2's subnet record: %s %v", b, err)
	}
	checkPods("after sn2 restarted")

	// sn3's bridge gets another subnet's address while sn3 is down: it
	// repairs the bridge at start, its pod answers again, and a new pod
	// (set up through the bridge plugin) runs.
	s3.Stop()
	br := bridgeOf("sn3")
	for _, args := range [][]string{{"addr", "flush", "dev", br}, {"addr", "add", "10.77.3.1/24", "dev", br}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	s3.Start()
	harness.Eventually(t, 30*time.Second, "sn3 logs the bridge repair", func() (bool, string) {
		return strings.Contains(s3.Log(), "pod bridge repaired") && strings.Contains(s3.Log(), "10.77.3.1/24"), "no repair in the log"
	})
	before := checkPods("after sn3's bridge was repaired")["sn3"]
	if _, err := s3.CLI("delete", "pod", before.Metadata.Name, "--wait=false"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "a new pod on sn3", func() (bool, string) {
		ready, why := readyOn(s1)
		p, ok := ready["sn3"]
		return ok && (p.Status.PodIP != before.Status.PodIP || p.Metadata.UID != before.Metadata.UID), why
	})
	checkPods("with a new pod on sn3")
	out, _ := exec.Command("ip", "-4", "addr", "show", "dev", br).CombinedOutput()
	if strings.Contains(string(out), "10.77.3.1") {
		t.Errorf("bridge %s still has the wrong address:\n%s", br, out)
	}
}

// TestPodSubnetLoserMoves: a peer whose automatic claim is overlapped by
// another peer's explicit --pod-subnet (given at that peer's restart)
// moves to another subnet while it runs, logs why, and its pod runs again,
// reachable, in the new subnet; the explicit peer's pod runs in its
// explicit subnet.
func TestPodSubnetLoserMoves(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	// sm1 prefers 10.88.7.0/24 (from its address) unless this machine
	// already uses it or its service network, 10.89.7.0/24 (a peer of another
	// test, addresses left by a peer killed with -9).
	addrs, err := exec.Command("ip", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -4 addr show: %v %s", err, addrs)
	}
	preferredFree := !strings.Contains(string(addrs), " 10.88.7.") && !strings.Contains(string(addrs), " 10.89.7.")
	m1 := harness.NewPeer(t, bin, "sm1", "127.0.250.7")
	m2 := harness.NewPeer(t, bin, "sm2", "127.0.251.7", "--join", "127.0.250.7")
	m1.Start()
	m2.Start()
	waitNodes(t, m2, map[string]string{"sm1": "Alive", "sm2": "Alive"})
	for _, p := range []*harness.Peer{m1, m2} {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m1.CLI("apply", "-f", manifest(t, subnetDaemons)); err != nil {
		t.Fatal(err)
	}
	var cidrs map[string]string
	harness.Eventually(t, 90*time.Second, "a Ready pod on each peer", func() (bool, string) {
		cidrs = podCIDRs(m1)
		ready, why := readyOn(m1)
		return len(ready) == 2 && len(cidrs) == 2 && cidrs["sm1"] != cidrs["sm2"], why + fmt.Sprint(cidrs)
	})
	switch {
	case preferredFree && cidrs["sm1"] != "10.88.7.0/24":
		t.Fatalf("sm1 has %s, want its preferred 10.88.7.0/24 (free on this machine)", cidrs["sm1"])
	case !preferredFree:
		t.Logf("10.88.7.0/24 is in use on this machine: sm1 took %s", cidrs["sm1"])
	}
	// sm1 comes back with an explicit subnet covering sm2's: the /16 around
	// it (whose service network, 10.89.0.0/24, no peer here uses).
	old := netip.MustParsePrefix(cidrs["sm2"])
	explicit := netip.PrefixFrom(old.Addr(), 16).Masked()
	if explicit.Overlaps(netip.MustParsePrefix(cidrs["sm1"])) {
		t.Fatalf("sm1's %s and sm2's %s share a /16: the scenario needs them apart", cidrs["sm1"], cidrs["sm2"])
	}
	m1.Stop()
	m1.Args = append(m1.Args, "--pod-subnet", explicit.String())
	m1.Start()
	harness.Eventually(t, 60*time.Second, "sm2 moves out of "+explicit.String()+" and says why", func() (bool, string) {
		log := m2.Log()
		return strings.Contains(log, "pod subnet moved") && strings.Contains(log, "given by --pod-subnet"), "no move in sm2's log"
	})
	// sm1's former service addresses (DNS, its services') left lo, unless
	// sm2 moved into sm1's former subnet (both prefer 10.88.7.0/24).
	formerSvc := subnet.ServiceNet(netip.MustParsePrefix(cidrs["sm1"]))
	if now := podCIDRs(m2)["sm2"]; now != cidrs["sm1"] {
		lo, err := exec.Command("ip", "-4", "-o", "addr", "show", "dev", "lo").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr show dev lo: %v %s", err, lo)
		}
		for _, f := range strings.Fields(string(lo)) {
			if p, err := netip.ParsePrefix(f); err == nil && formerSvc.Contains(p.Addr()) {
				t.Errorf("%s, of sm1's former service network %s, is still on lo (sm2 is in %s)", f, formerSvc, now)
			}
		}
	}
	harness.Eventually(t, 90*time.Second, "both pods Ready and reachable in their subnets", func() (bool, string) {
		cidrs = podCIDRs(m1)
		if got := podCIDRs(m2); fmt.Sprint(got) != fmt.Sprint(cidrs) || cidrs["sm1"] != explicit.String() ||
			netip.MustParsePrefix(cidrs["sm2"]).Overlaps(explicit) {
			return false, fmt.Sprintf("sm1 sees %v, sm2 sees %v", cidrs, got)
		}
		ready, why := readyOn(m1)
		if len(ready) != 2 {
			return false, why
		}
		for node, pod := range ready {
			ip, err := netip.ParseAddr(pod.Status.PodIP)
			if err != nil || !netip.MustParsePrefix(cidrs[node]).Contains(ip) {
				return false, fmt.Sprintf("%s's pod at %s, not in %s", node, pod.Status.PodIP, cidrs[node])
			}
			body, err := get("http://" + pod.Status.PodIP + ":8080/")
			if err != nil || !strings.Contains(body, pod.Metadata.Name) {
				return false, fmt.Sprintf("%s's pod at %s: %q %v", node, pod.Status.PodIP, body, err)
			}
			body, err = get("http://" + pod.Status.PodIP + ":8080/get?url=http://sweb:8080/")
			if err != nil || !strings.HasPrefix(body, "200 hello from sweb-") {
				return false, fmt.Sprintf("%s's pod to the service: %q %v", node, body, err)
			}
		}
		return true, ""
	})
	out, _ := exec.Command("ip", "-4", "addr", "show", "dev", bridgeOf("sm2")).CombinedOutput()
	if strings.Contains(string(out), old.Addr().Next().String()+"/") {
		t.Errorf("sm2's bridge still has its old gateway %s:\n%s", old.Addr().Next(), out)
	}
}
