package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

var helloApp = harness.WebDeployment("hello", 2)

func get(url string) (string, error) { return harness.HTTPGet(url) }

// answers sends n requests to url and returns how many failed and which
// pods answered.
func answers(url string, n int) (failed int, pods map[string]int) {
	pods = map[string]int{}
	for i := 0; i < n; i++ {
		body, err := get(url)
		if err != nil {
			failed++
			continue
		}
		pods[strings.TrimSpace(strings.TrimPrefix(body, "hello from "))]++
	}
	return failed, pods
}

func TestServicesAcrossPeers(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	peers := startCluster(t, 3, 71, "v")
	for _, p := range peers {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := peers[0].CLI("apply", "-f", manifest(t, helloApp)); err != nil {
		t.Fatal(err)
	}
	// Through another peer: expose reads the deployment first, and a read
	// right after a write on another peer can miss it until the delta or
	// an anti-entropy round arrives (a CI run got NotFound), so it waits.
	var out string
	harness.Eventually(t, 20*time.Second, "expose through another peer", func() (bool, string) {
		out, err = peers[1].CLI("expose", "deployment", "hello", "--type=NodePort", "--port=8080")
		return err == nil && strings.Contains(out, "service/hello exposed"), fmt.Sprintf("%q %v", out, err)
	})
	var nodePort string
	harness.Eventually(t, 60*time.Second, "service with two endpoints", func() (bool, string) {
		out, _ := peers[2].CLI("get", "services", "hello")
		m := regexp.MustCompile(`8080:(\d+)/TCP`).FindStringSubmatch(out)
		if m == nil {
			return false, out
		}
		nodePort = m[1]
		eps, _ := peers[2].CLI("get", "endpoints", "hello")
		return strings.Count(eps, ":8080") >= 2, out + eps
	})

	// Every peer answers on the NodePort, and both pods answer.
	for _, p := range peers {
		url := "http://" + p.Bind + ":" + nodePort + "/"
		var failed int
		var pods map[string]int
		harness.Eventually(t, 30*time.Second, "both pods through "+p.Name, func() (bool, string) {
			failed, pods = answers(url, 40)
			return failed == 0 && len(pods) == 2, fmt.Sprintf("%d failed, answered by %v", failed, pods)
		})
	}

	// A pod reaches the service by its DNS name and by its variables.
	client := `apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  replicas: 1
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      containers:
      - {name: c, image: example/web:1, env: [{name: PORT, value: "8080"}]}
`
	if _, err := peers[0].CLI("apply", "-f", manifest(t, client)); err != nil {
		t.Fatal(err)
	}
	var clientIP string
	harness.Eventually(t, 60*time.Second, "client pod running", func() (bool, string) {
		pods, err := peers[0].Pods("default")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if strings.HasPrefix(p.Metadata.Name, "client-") && harness.IsReady(&p) {
				clientIP = p.Status.PodIP
				return true, ""
			}
		}
		return false, "no ready client pod"
	})
	for _, name := range []string{"hello", "hello.default.svc", "hello.default.svc.cluster.local"} {
		harness.Eventually(t, 20*time.Second, "a pod reaches http://"+name+":8080", func() (bool, string) {
			body, err := get("http://" + clientIP + ":8080/get?url=http://" + name + ":8080/")
			return err == nil && strings.HasPrefix(body, "200 hello from hello-"), fmt.Sprintf("%q %v", body, err)
		})
	}
	env, err := get("http://" + clientIP + ":8080/env")
	if err != nil {
		t.Fatal(err)
	}
	host := regexp.MustCompile(`(?m)^HELLO_SERVICE_HOST=(\S+)$`).FindStringSubmatch(env)
	port := regexp.MustCompile(`(?m)^HELLO_SERVICE_PORT=8080$`).FindString(env)
	if host == nil || port == "" {
		t.Fatalf("the pod's environment lacks the service variables:\n%s", env)
	}
	if body, err := get("http://" + clientIP + ":8080/get?url=http://" + host[1] + ":8080/"); err != nil || !strings.HasPrefix(body, "200 hello") {
		t.Fatalf("HELLO_SERVICE_HOST=%s does not answer: %q %v", host[1], body, err)
	}

	// port-forward from the CLI machine, through a peer.
	pf := peers[2].Command(context.Background(), "port-forward", "service/hello", "17080:8080")
	pfOut := &strings.Builder{}
	pf.Stdout, pf.Stderr = pfOut, pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pf.Process.Kill(); _ = pf.Wait() }()
	harness.Eventually(t, 10*time.Second, "port-forward answers", func() (bool, string) {
		body, err := get("http://127.0.0.1:17080/")
		return err == nil && strings.HasPrefix(body, "hello from hello-"), fmt.Sprintf("%q %v %s", body, err, pfOut)
	})

	// One replica: the peers that do not hold it still answer.
	if _, err := peers[0].CLI("scale", "deployment", "hello", "--replicas=1"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, "one endpoint", func() (bool, string) {
		out, _ := peers[0].CLI("get", "endpoints", "hello")
		return strings.Count(out, ":8080") == 1, out
	})
	for _, p := range peers {
		if failed, pods := answers("http://"+p.Bind+":"+nodePort+"/", 20); failed > 0 || len(pods) != 1 {
			t.Fatalf("through %s with one replica: %d failed, answered by %v", p.Name, failed, pods)
		}
	}

	// Kill the peer of a replica during a bounded request loop.
	if _, err := peers[0].CLI("scale", "deployment", "hello", "--replicas=2"); err != nil {
		t.Fatal(err)
	}
	var victim *harness.Peer
	harness.Eventually(t, 30*time.Second, "two ready replicas on two peers but v1", func() (bool, string) {
		pods, _ := peers[0].Pods("default")
		nodes := map[string]bool{}
		for _, p := range pods {
			if strings.HasPrefix(p.Metadata.Name, "hello-") && harness.IsReady(&p) {
				nodes[p.Spec.NodeName] = true
			}
		}
		for _, p := range peers[1:] {
			if nodes[p.Name] {
				victim = p
			}
		}
		return len(nodes) == 2 && victim != nil, fmt.Sprint(nodes)
	})
	url := "http://" + peers[0].Bind + ":" + nodePort + "/"
	total, failed := 0, 0
	victim.KillMachine()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		total++
		if _, err := get(url); err != nil {
			failed++
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("killing %s during %d requests through v1's NodePort: %d failed (%.1f%%)", victim.Name, total, failed, 100*float64(failed)/float64(total))
	// A failed dial is retried on the other endpoint: almost nothing fails.
	if failed*20 > total {
		t.Fatalf("%d of %d requests failed while %s died (more than 5%%)", failed, total, victim.Name)
	}
	harness.Eventually(t, 60*time.Second, "all requests succeed once the replacement is ready", func() (bool, string) {
		f, pods := answers(url, 30)
		return f == 0 && len(pods) == 2, fmt.Sprintf("%d failed, %v", f, pods)
	})
}

func TestServiceErrorsChangeNothing(t *testing.T) {
	p := harness.NewPeer(t, bin, "e1", "127.0.0.75")
	p.Start()
	svc := `apiVersion: v1
kind: Service
metadata: {name: a}
spec:
  type: NodePort
  selector: {app: a}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
`
	if _, err := p.CLI("apply", "-f", manifest(t, svc)); err != nil {
		t.Fatal(err)
	}
	before, _ := p.CLI("get", "services", "-o", "json")
	cases := []struct{ name, manifest, want string }{
		{"port taken", strings.ReplaceAll(svc, "name: a}", "name: b}"), "port 30080 is already allocated to service default/a"},
		{"port out of range", strings.ReplaceAll(svc, "30080", "20080"), "spec.ports[0].nodePort"},
		{"bad selector", strings.ReplaceAll(strings.ReplaceAll(svc, "name: a}", "name: c}"), "{app: a}", "{app: \"not valid!\"}"), "spec.selector"},
		{"two in one manifest", strings.ReplaceAll(svc, "name: a}", "name: d}") + "---\n" + strings.ReplaceAll(svc, "name: a}", "name: e}"), "30080"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.CLI("apply", "-f", manifest(t, tc.manifest))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply: %q, error %v; want an error containing %q", out, err, tc.want)
			}
		})
	}
	if after, _ := p.CLI("get", "services", "-o", "json"); after != before {
		t.Fatalf("rejected manifests changed the services:\n%s\n%s", before, after)
	}
}
