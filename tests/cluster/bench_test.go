package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// startCluster starts n peers on 127.0.0.<base+i> that join the first.
func startCluster(b testing.TB, n, base int, prefix string, extra ...string) []*harness.Peer {
	b.Helper()
	var peers []*harness.Peer
	for i := 0; i < n; i++ {
		args := slices.Clone(extra)
		if i > 0 {
			args = append(args, "--join", fmt.Sprintf("127.0.0.%d", base))
		}
		p := harness.NewPeer(b, bin, fmt.Sprintf("%s%d", prefix, i+1), fmt.Sprintf("127.0.0.%d", base+i), args...)
		peers = append(peers, p)
	}
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Start()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for {
		alive := 0
		for _, s := range nodesSeen(peers[n-1]) {
			if s == "Alive" {
				alive++
			}
		}
		if alive == n {
			return peers
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d peers alive after 60s", alive, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// replicasOn returns spec.replicas of deployment shop/name on p, or -1.
func replicasOn(c *http.Client, p *harness.Peer, name string) int {
	req, err := p.Request(http.MethodGet, "/apis/apps/v1/namespaces/shop/deployments/"+name, nil)
	if err != nil {
		return -1
	}
	resp, err := c.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var d struct {
		Spec struct {
			Replicas int `json:"replicas"`
		} `json:"spec"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&d) != nil {
		return -1
	}
	return d.Spec.Replicas
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(q*float64(len(s)-1))]
}

// BenchmarkPropagation measures the time from an apply acknowledged by one
// peer until every peer holds it, for 3, 5 and 10 peers (lan profile).
func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{3, 5, 10} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			peers := startCluster(b, n, 200+20*(n/5), fmt.Sprintf("g%d-", n))
			ns := []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
			if err := peers[0].Apply(ns); err != nil {
				b.Fatal(err)
			}
			c := peers[0].HTTPClient(2 * time.Second) // one cluster CA for all
			var lat []time.Duration
			const applies = 40
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for i := 1; i <= applies; i++ {
					body := []byte(deploymentYAML("prop", i))
					start := time.Now()
					if err := peers[0].Apply(body); err != nil {
						b.Fatal(err)
					}
					for _, p := range peers {
						for replicasOn(c, p, "prop") != i {
							if time.Since(start) > 30*time.Second {
								b.Fatalf("apply %d not on %s after 30s", i, p.Name)
							}
							time.Sleep(2 * time.Millisecond)
						}
					}
					lat = append(lat, time.Since(start))
				}
			}
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "median-ms")
			b.ReportMetric(float64(percentile(lat, 1).Microseconds())/1000, "max-ms")
		})
	}
}

// acct counts bytes per peer address with iptables rules: the bytes sent
// to each address (newAcct), or sent from each (newSentAcct: a peer's
// answers to the others' requests, and its gossip).
type acct struct {
	chain string
	flag  string // -d or -s
}

func newAcct(b testing.TB, ips []string) *acct { return startAcct(b, "CHORUS_ACCT", "-d", ips) }

func newSentAcct(b testing.TB, ips []string) *acct {
	return startAcct(b, "CHORUS_SENT_ACCT", "-s", ips)
}

func startAcct(b testing.TB, chain, flag string, ips []string) *acct {
	a := &acct{chain: chain, flag: flag}
	clean := func() {
		_ = exec.Command("iptables", "-D", "INPUT", "-j", a.chain).Run()
		_ = exec.Command("iptables", "-F", a.chain).Run()
		_ = exec.Command("iptables", "-X", a.chain).Run()
	}
	clean()
	for _, args := range [][]string{{"-N", a.chain}, {"-I", "INPUT", "-j", a.chain}} {
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			b.Fatalf("iptables %v: %v %s", args, err, out)
		}
	}
	for _, ip := range ips {
		if out, err := exec.Command("iptables", "-A", a.chain, a.flag, ip).CombinedOutput(); err != nil {
			b.Fatalf("iptables: %v %s", err, out)
		}
	}
	b.Cleanup(clean)
	return a
}

// bytes returns the bytes counted per address so far.
func (a *acct) bytes(b testing.TB) map[string]int64 {
	out, err := exec.Command("iptables", "-L", a.chain, "-v", "-x", "-n").Output()
	if err != nil {
		b.Fatal(err)
	}
	col := 1 // destination, the last column
	if a.flag == "-s" {
		col = 2 // source, before it
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 8 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[f[len(f)-col]] = n
			}
		}
	}
	return m
}

// applyMany applies n deployments in batches of 100 on p.
func applyMany(b testing.TB, p *harness.Peer, prefix string, n, replicas int) {
	var buf bytes.Buffer
	for i := 0; i < n; i++ {
		buf.WriteString(deploymentYAML(fmt.Sprintf("%s%d", prefix, i), replicas))
		buf.WriteString("---\n")
		if (i+1)%100 == 0 || i == n-1 {
			if err := p.Apply(buf.Bytes()); err != nil {
				b.Fatal(err)
			}
			buf.Reset()
		}
	}
}

func objects(p *harness.Peer) int {
	self, err := p.Self()
	if err != nil {
		return -1
	}
	return int(self.Status.Replication.Objects)
}

// BenchmarkIdleTraffic measures the bytes per second each peer receives
// (membership gossip, anti-entropy, everything) once 3 peers agree on
// 1,000 objects.
func BenchmarkIdleTraffic(b *testing.B) {
	peers := startCluster(b, 3, 230, "t")
	if err := peers[0].Apply([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")); err != nil {
		b.Fatal(err)
	}
	applyMany(b, peers[0], "idle", 1000, 0)
	for _, p := range peers {
		for objects(p) < 1001 {
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(5 * time.Second)
	var ips []string
	for _, p := range peers {
		ips = append(ips, p.Bind)
	}
	a := newAcct(b, ips)
	before := a.bytes(b)
	const window = 30 * time.Second
	time.Sleep(window)
	after := a.bytes(b)
	var worst float64
	for _, ip := range ips {
		rate := float64(after[ip]-before[ip]) / window.Seconds()
		worst = max(worst, rate)
	}
	b.ReportMetric(worst/1024, "max-KiB/s-per-peer")
}

// BenchmarkCatchUp measures how long a peer that was down while 1,000
// changes were made takes to hold them all after it starts again.
func BenchmarkCatchUp(b *testing.B) {
	peers := startCluster(b, 3, 235, "u")
	if err := peers[0].Apply([]byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for it := 0; it < b.N; it++ {
		peers[2].Stop()
		applyMany(b, peers[0], fmt.Sprintf("c%d-", it), 1000, 0)
		want := objects(peers[0])
		start := time.Now()
		peers[2].Start()
		for objects(peers[2]) < want {
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("peer holds %d of %d objects after 2m", objects(peers[2]), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	b.ReportMetric(float64(percentile(took, 0.5).Milliseconds()), "ms-to-catch-up")
}

// BenchmarkFailover kills a peer holding replicas (with its containers), on
// 5 peers running 10 replicas, and measures the time until every replica is
// Running and Ready elsewhere; then it brings the peer back. Median and max
// over b.N kills (run with -benchtime 10x).
func BenchmarkFailover(b *testing.B) {
	for i, profile := range []string{"lan", "local"} {
		b.Run("profile="+profile, func(b *testing.B) { failover(b, profile, 250-25*i) })
	}
}

func failover(b *testing.B, profile string, base int) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	peers := startCluster(b, 5, base, "f"+profile[:2], "--gossip-profile", profile)
	for _, p := range peers {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			b.Fatal(err)
		}
	}
	if err := peers[0].Apply([]byte(web10)); err != nil {
		b.Fatal(err)
	}
	waitReady := func(observer *harness.Peer, avoid string, limit time.Duration) (time.Duration, error) {
		start := time.Now()
		for {
			byNode, ready, dup, err := placementOf(observer)
			_, on := byNode[avoid]
			if err == nil && ready == 10 && len(dup) == 0 && !on {
				return time.Since(start), nil
			}
			if time.Since(start) > limit {
				return 0, fmt.Errorf("%d ready, dup %v, %v", ready, dup, byNode)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := waitReady(peers[0], "", 2*time.Minute); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for it := 0; it < b.N; it++ {
		byNode, _, _, _ := placementOf(peers[0])
		var victim *harness.Peer
		for _, p := range peers[1:] {
			if len(byNode[p.Name]) > 0 && (victim == nil || len(byNode[p.Name]) > len(byNode[victim.Name])) {
				victim = p
			}
		}
		if victim == nil {
			b.Fatalf("no peer but the observer holds replicas: %v", byNode)
		}
		start := time.Now()
		victim.KillMachine()
		if _, err := waitReady(peers[0], victim.Name, time.Minute); err != nil {
			b.Fatalf("after killing %s: %v", victim.Name, err)
		}
		d := time.Since(start)
		took = append(took, d)
		b.Logf("kill %d: %s held %d replicas, all Ready elsewhere after %s", it+1, victim.Name, len(byNode[victim.Name]), d.Round(10*time.Millisecond))
		victim.Start()
		if _, err := waitReady(peers[0], "", 2*time.Minute); err != nil {
			b.Fatal(err)
		}
		time.Sleep(3 * time.Second)
	}
	b.ReportMetric(float64(percentile(took, 0.5).Milliseconds()), "median-ms")
	b.ReportMetric(float64(percentile(took, 1).Milliseconds()), "max-ms")
}

// BenchmarkDetection measures, per gossip profile, the time from kill -9 of
// a peer (with its containers) until another of 5 peers lists it Dead.
func BenchmarkDetection(b *testing.B) {
	for i, profile := range []string{"local", "lan", "wan"} {
		b.Run("profile="+profile, func(b *testing.B) {
			peers := startCluster(b, 5, 170+10*i, "d"+profile[:1], "--gossip-profile", profile)
			var took []time.Duration
			for it := 0; it < b.N; it++ {
				victim := peers[1+it%4]
				start := time.Now()
				victim.KillMachine()
				for nodesSeen(peers[0])[victim.Name] != "Dead" {
					if time.Since(start) > 3*time.Minute {
						b.Fatalf("%s not declared dead after 3m", victim.Name)
					}
					time.Sleep(20 * time.Millisecond)
				}
				took = append(took, time.Since(start))
				victim.Start()
				for nodesSeen(peers[0])[victim.Name] != "Alive" {
					time.Sleep(100 * time.Millisecond)
				}
				time.Sleep(2 * time.Second)
			}
			b.ReportMetric(float64(percentile(took, 0.5).Milliseconds()), "median-ms")
			b.ReportMetric(float64(percentile(took, 1).Milliseconds()), "max-ms")
		})
	}
}

// BenchmarkFalseSuspicion runs 5 peers for 60 s per gossip profile while
// both cores are kept busy by CPU burners, and counts the suspicions and
// false deaths memberlist logged: none of the peers was really down.
func BenchmarkFalseSuspicion(b *testing.B) {
	for i, profile := range []string{"lan", "local"} {
		b.Run("profile="+profile, func(b *testing.B) { falseSuspicion(b, profile, 200+10*i) })
	}
}

func falseSuspicion(b *testing.B, profile string, base int) {
	peers := startCluster(b, 5, base, "l"+profile[:2], "--gossip-profile", profile)
	burn := filepath.Join(b.TempDir(), "burn")
	build := exec.Command("go", "build", "-o", burn, "./tests/images/burn")
	root, _ := harness.ModuleRoot()
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build burn: %v %s", err, out)
	}
	count := func() (suspect, failed int) {
		for _, p := range peers {
			log := p.Log()
			suspect += strings.Count(log, "memberlist: Suspect")
			failed += strings.Count(log, "as failed, suspect timeout reached")
		}
		return
	}
	s0, f0 := count()
	const window = 60 * time.Second
	cmd := exec.Command(burn)
	cmd.Env = append(os.Environ(), "THREADS=4", fmt.Sprintf("SECONDS=%d", int(window.Seconds())))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	deaths := 0
	for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		for _, st := range nodesSeen(peers[0]) {
			if st != "Alive" {
				deaths++
			}
		}
	}
	_ = cmd.Wait()
	s1, f1 := count()
	b.ReportMetric(float64(s1-s0), "suspicions")
	b.ReportMetric(float64(f1-f0), "false-deaths")
	b.ReportMetric(float64(deaths), "non-alive-samples")
}

// wrk runs wrk against url and returns requests/s and the mean latency.
func wrk(b *testing.B, url string, d time.Duration) (float64, string) {
	out, err := exec.Command("wrk", "-t2", "-c32", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v %s", err, out)
	}
	rps, lat := 0.0, ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Requests/sec:" {
			rps, _ = strconv.ParseFloat(f[1], 64)
		}
		if len(f) >= 2 && f[0] == "Latency" {
			lat = f[1]
		}
	}
	if rps == 0 {
		b.Fatalf("no Requests/sec in wrk's output:\n%s", out)
	}
	return rps, lat
}

// BenchmarkServicePath compares, with wrk (2 threads, 32 connections, 10 s
// per run, alternating), requests to a pod directly, through the NodePort
// of the pod's own peer, and through the NodePort of another peer (a hop
// over mutual TLS); and, in the same run, through the NodePort of another
// peer of an --insecure cluster (a hop over plain TCP).
func BenchmarkServicePath(b *testing.B) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	// A protected cluster (hops over mutual TLS) and, in the same run, an
	// --insecure one (hops over plain TCP, as before hops had TLS).
	peers := startCluster(b, 2, 245, "w", "--label", "role=bench")
	open := startCluster(b, 2, 151, "iw", "--label", "role=bench", "--insecure")
	podIP := servePathApp(b, peers, imgs["web"], "w1")
	servePathApp(b, open, imgs["web"], "iw1")
	time.Sleep(2 * time.Second)
	targets := []struct{ name, url string }{
		{"direct", "http://" + podIP + ":8080/"},
		{"local-nodeport", "http://" + peers[0].Bind + ":31080/"},
		{"remote-nodeport", "http://" + peers[1].Bind + ":31080/"},
		{"remote-plainhop", "http://" + open[1].Bind + ":31080/"},
	}
	sum := map[string]float64{}
	for round := 0; round < 2; round++ {
		for _, tg := range targets {
			rps, lat := wrk(b, tg.url, 10*time.Second)
			b.Logf("round %d %-15s %8.0f req/s, mean latency %s", round+1, tg.name, rps, lat)
			sum[tg.name] += rps
		}
	}
	b.ReportMetric(sum["direct"]/2, "direct-req/s")
	b.ReportMetric(sum["local-nodeport"]/sum["direct"], "local/direct")
	b.ReportMetric(sum["remote-nodeport"]/sum["direct"], "remote/direct")
	b.ReportMetric(sum["remote-plainhop"]/sum["direct"], "remote-plainhop/direct")
}

// servePathApp loads the web image on peers and runs one hello pod on
// node behind NodePort 31080, and returns the pod's IP.
func servePathApp(b *testing.B, peers []*harness.Peer, web, node string) string {
	for _, p := range peers {
		if _, err := p.CLI("image", "load", web); err != nil {
			b.Fatal(err)
		}
	}
	app := strings.Replace(helloApp, "replicas: 2", "replicas: 1", 1)
	app = strings.Replace(app, "    spec:\n      containers:", "    spec:\n      nodeSelector: {kubernetes.io/hostname: "+node+"}\n      containers:", 1)
	app += `---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  type: NodePort
  selector: {app: hello}
  ports: [{port: 8080, nodePort: 31080}]
`
	if err := peers[0].Apply([]byte(app)); err != nil {
		b.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		pods, _ := peers[1].Pods("default")
		for _, p := range pods {
			if harness.IsReady(&p) && p.Spec.NodeName == node {
				return p.Status.PodIP
			}
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("pod not ready on %s", node)
		}
	}
}

// bigImage writes an archive of example/big:1: the web image plus a layer
// of size random (incompressible) bytes.
func bigImage(b testing.TB, web string, size int64) string {
	base, err := tarball.ImageFromPath(web, nil)
	if err != nil {
		b.Fatal(err)
	}
	layer, err := random.Layer(size, types.DockerLayer)
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		b.Fatal(err)
	}
	tag, err := name.NewTag("example/big:1")
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "big.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		b.Fatal(err)
	}
	return path
}

// imagePeers returns how many peers hold ref, as p's `image ls` says.
func imagePeers(p *harness.Peer, ref string) int {
	out, err := p.CLI("image", "ls")
	if err != nil {
		return 0
	}
	return imageHolders(out, ref)
}

// bigDaemonSet runs example/big:1 (bigImage's) on every peer.
const bigDaemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: big}
spec:
  selector: {matchLabels: {app: big}}
  template:
    metadata: {labels: {app: big}}
    spec:
      containers: [{name: big, image: example/big:1, env: [{name: PORT, value: "8080"}]}]
`

// imageHolders reads, from the output of `chorus image ls`, how many peers
// hold ref (its last column).
func imageHolders(out, ref string) int {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == ref {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// BenchmarkImageSpread compares getting a 100 MB image onto 5 peers from
// one (a DaemonSet of it: each peer fetches it from the peers that have it)
// with copying the archive to each of the other 4 peers one after another
// (image load on each), in the same run.
func BenchmarkImageSpread(b *testing.B) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		b.Fatal(err)
	}
	archive := bigImage(b, imgs["web"], 100<<20)
	const ref = "docker.io/example/big:1"

	// Copying to each peer, one after another.
	peers := startCluster(b, 5, 215, "ic")
	if _, err := peers[0].CLI("image", "load", archive); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, p := range peers[1:] {
		if _, err := p.CLI("image", "load", archive); err != nil {
			b.Fatal(err)
		}
	}
	copyEach := time.Since(start)
	for _, p := range peers {
		p.Destroy()
	}

	// Peer to peer.
	peers = startCluster(b, 5, 240, "ip")
	if _, err := peers[0].CLI("image", "load", archive); err != nil {
		b.Fatal(err)
	}
	start = time.Now()
	if err := peers[0].Apply([]byte(bigDaemonSet)); err != nil {
		b.Fatal(err)
	}
	for imagePeers(peers[0], ref) < 5 {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("image on %d peers after 5m", imagePeers(peers[0], ref))
		}
		time.Sleep(100 * time.Millisecond)
	}
	p2p := time.Since(start)
	b.Logf("100 MB image onto 4 more peers: copy to each %s, peer to peer %s", copyEach.Round(10*time.Millisecond), p2p.Round(10*time.Millisecond))
	b.ReportMetric(copyEach.Seconds(), "s-copy-to-each")
	b.ReportMetric(p2p.Seconds(), "s-peer-to-peer")
}
