package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// echoApp runs two pods of the web image that also echo UDP, with named
// ports; db-0 is a standalone pod with a hostname under the headless
// service db.
const echoApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: UDP_PORT, value: "9090"}]
        ports: [{name: http, containerPort: 8080}, {name: echo-udp, containerPort: 9090, protocol: UDP}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  hostname: db-0
  subdomain: db
  containers: [{name: web, image: example/web:1, readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-lb}
spec:
  type: LoadBalancer
  selector: {app: echo}
  ports: [{name: web, port: 18080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-sticky}
spec:
  selector: {app: echo}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-udp}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 9090, protocol: UDP, targetPort: echo-udp}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-headless}
spec:
  clusterIP: None
  selector: {app: echo}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 8080}]
`

// udpAsk sends msg to addr from a connected socket (which takes answers
// only from addr) and returns the answer.
func udpAsk(addr, msg string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestServiceKinds drives the real kubectl against two real peers: a
// LoadBalancer Service answering on every peer's address at its port (and
// on its node port) with a named targetPort, its status listing both
// peers; ClientIP session affinity keeping one client on one pod; a UDP
// Service through its node port on both peers and through each peer's
// service address; headless Services resolved from inside a pod (the
// Ready pods' IPs, and HOSTNAME.SUBDOMAIN names).
func TestServiceKinds(t *testing.T) {
	peers := startCluster(t, 2, 201, "sk")
	loadServiceImages(t, peers[0])
	k1, k2 := kubectlFor(t, peers[0]), kubectlFor(t, peers[1])
	if out, err := k1("apply", "-f", manifest(t, echoApp)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	harness.Eventually(t, 90*time.Second, "two Ready echo pods on two peers and db-0", func() (bool, string) {
		pods, err := peers[1].Pods("default")
		if err != nil {
			return false, err.Error()
		}
		nodes := map[string]bool{}
		db := false
		for _, p := range pods {
			if strings.HasPrefix(p.Metadata.Name, "echo-") && harness.IsReady(&p) {
				nodes[p.Spec.NodeName] = true
			}
			db = db || (p.Metadata.Name == "db-0" && harness.IsReady(&p))
		}
		return len(nodes) == 2 && db, fmt.Sprint(nodes, db)
	})

	// LoadBalancer: kubectl shows both peers as EXTERNAL-IP and a node port.
	var nodePort string
	harness.Eventually(t, 30*time.Second, "LoadBalancer listed with the peers' addresses", func() (bool, string) {
		out, _ := k2("get", "svc", "echo-lb")
		m := regexp.MustCompile(`echo-lb\s+LoadBalancer\s+\S+\s+127\.0\.0\.201,127\.0\.0\.202\s+18080:(\d+)/TCP`).FindStringSubmatch(out)
		if m == nil {
			return false, out
		}
		nodePort = m[1]
		return true, ""
	})
	for _, p := range peers {
		for _, url := range []string{"http://" + p.Bind + ":18080/", "http://" + p.Bind + ":" + nodePort + "/"} {
			harness.Eventually(t, 30*time.Second, "both pods through "+url, func() (bool, string) {
				failed, pods := answers(url, 30)
				return failed == 0 && len(pods) == 2, fmt.Sprintf("%d failed, %v", failed, pods)
			})
		}
	}
	if out, err := k1("get", "svc", "echo-lb", "-o", "jsonpath={.status.loadBalancer.ingress[*].ip}"); err != nil || out != "127.0.0.201 127.0.0.202" {
		t.Fatalf("status.loadBalancer.ingress: %q %v", out, err)
	}

	// Session affinity: one client, one pod, through either peer's
	// service address (each peer gives the service its own).
	for i, k := range []func(...string) (string, error){k1, k2} {
		ip, err := k("get", "svc", "echo-sticky", "-o", "jsonpath={.spec.clusterIP}")
		if err != nil || net.ParseIP(ip) == nil {
			t.Fatalf("echo-sticky's address through %s: %q %v", peers[i].Name, ip, err)
		}
		url := "http://" + ip + ":8080/"
		var pods map[string]int
		harness.Eventually(t, 30*time.Second, "sticky service answers through "+peers[i].Name, func() (bool, string) {
			var failed int
			failed, pods = answers(url, 30)
			return failed == 0, fmt.Sprint(pods)
		})
		if len(pods) != 1 {
			t.Fatalf("ClientIP affinity through %s: one client reached %v", peers[i].Name, pods)
		}
	}

	// UDP: the node port on each peer and each peer's service address;
	// both pods answer (one of them behind a hop), each to its own client.
	out, err := k1("get", "svc", "echo-udp")
	m := regexp.MustCompile(`9090:(\d+)/UDP`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("echo-udp: %v\n%s", err, out)
	}
	for i, p := range peers {
		ip, _ := []func(...string) (string, error){k1, k2}[i]("get", "svc", "echo-udp", "-o", "jsonpath={.spec.clusterIP}")
		for _, addr := range []string{net.JoinHostPort(p.Bind, m[1]), net.JoinHostPort(ip, "9090")} {
			seen := map[string]bool{}
			harness.Eventually(t, 30*time.Second, "both pods answer UDP at "+addr, func() (bool, string) {
				ans, err := udpAsk(addr, "ping")
				if err != nil {
					return false, err.Error()
				}
				pod, msg, _ := strings.Cut(ans, ":")
				if msg != "ping" || !strings.HasPrefix(pod, "echo-") {
					return false, ans
				}
				seen[pod] = true
				return len(seen) == 2, fmt.Sprint(seen)
			})
		}
	}

	// Headless: the name answers with the Ready pods' addresses, from a
	// pod's own resolver; db-0.db is the standalone pod.
	pods, err := peers[0].Pods("default")
	if err != nil {
		t.Fatal(err)
	}
	var echoIPs []string
	var client, dbIP string
	for _, p := range pods {
		switch {
		case strings.HasPrefix(p.Metadata.Name, "echo-") && harness.IsReady(&p):
			echoIPs = append(echoIPs, p.Status.PodIP)
			client = p.Status.PodIP
		case p.Metadata.Name == "db-0":
			dbIP = p.Status.PodIP
		}
	}
	sort.Strings(echoIPs)
	lookup := func(host string) (string, error) {
		body, err := get("http://" + client + ":8080/lookup?host=" + host)
		lines := strings.Fields(body)
		sort.Strings(lines)
		return strings.Join(lines, " "), err
	}
	for host, want := range map[string]string{
		"echo-headless": strings.Join(echoIPs, " "),
		"echo-headless.default.svc.cluster.local": strings.Join(echoIPs, " "),
		"db":                                dbIP,
		"db-0.db.default.svc.cluster.local": dbIP,
		"db-0.db":                           dbIP,
	} {
		harness.Eventually(t, 20*time.Second, "a pod resolves "+host, func() (bool, string) {
			got, err := lookup(host)
			return err == nil && got == want, fmt.Sprintf("%q %v, want %q", got, err, want)
		})
	}
	out, _ = k2("get", "svc", "echo-headless", "db")
	if !regexp.MustCompile(`echo-headless\s+ClusterIP\s+None\s+<none>\s+<none>`).MatchString(out) {
		t.Errorf("kubectl get svc of headless services:\n%s", out)
	}

	// The Ingress ports are on by default (80 and 443): no Ingress, 404.
	resp, err := http.Get("http://" + peers[0].Bind + ":80/")
	if err != nil {
		t.Fatalf("the default Ingress port: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the default Ingress port without Ingress: %s, want 404", resp.Status)
	}
}

// loadServiceImages loads the web image built from this tree into p. Its
// directory is its own: other worktrees on the machine build their own
// version of web into the shared chorus-test-images at the same time.
func loadServiceImages(t testing.TB, p *harness.Peer) {
	t.Helper()
	imgs, err := images.BuildAll(context.Background(), filepath.Join(os.TempDir(), "chorus-test-images-services"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.CLI("image", "load", imgs["web"]); err != nil {
		t.Fatalf("image load: %v\n%s", err, out)
	}
}
