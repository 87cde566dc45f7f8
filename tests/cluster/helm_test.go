package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// A small chart: a deployment of example/web, its service and a config
// map, the image tag and the replica count from values.
var helmChart = map[string]string{
	"Chart.yaml":  "apiVersion: v2\nname: web\nversion: 0.1.0\nappVersion: \"1\"\n",
	"values.yaml": "replicas: 2\ntag: \"1\"\ngreeting: hello\n",
	"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels: {app.kubernetes.io/name: web, app.kubernetes.io/instance: {{ .Release.Name }}}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app.kubernetes.io/instance: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app.kubernetes.io/instance: {{ .Release.Name }}}
    spec:
      containers:
      - name: web
        image: example/web:{{ .Values.tag }}
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
`,
	"templates/service.yaml": `apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  selector: {app.kubernetes.io/instance: {{ .Release.Name }}}
  ports: [{port: 8080}]
`,
	"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  greeting: {{ .Values.greeting | quote }}
`,
}

// TestHelm drives the real helm against chorus peers: install (helm keeps
// its releases in Secrets) with --wait (helm's readiness checks read the
// deployment's status and its ReplicaSets), upgrade, history, rollback and
// uninstall, each through another peer.
func TestHelm(t *testing.T) {
	peers := startCluster(t, 3, 171, "hm")
	loadWebImages(t, peers[0])
	chart := filepath.Join(t.TempDir(), "web")
	for name, body := range helmChart {
		path := filepath.Join(chart, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	helm := func(p *harness.Peer, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, harness.Helm(t), append([]string{"--kubeconfig", p.Kubeconfig, "-n", "default"}, args...)...)
		cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helm %s through %s: %v\n%s", strings.Join(args, " "), p.Name, err, out)
		}
		return string(out)
	}
	k := func(p *harness.Peer) func(...string) (string, error) { return kubectlFor(t, p) }
	image := func(p *harness.Peer) string {
		t.Helper()
		out, err := k(p)("get", "deployment", "rel", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}")
		if err != nil {
			t.Fatalf("get deployment rel: %v\n%s", err, out)
		}
		return out
	}

	if out := helm(peers[0], "install", "rel", chart, "--wait", "--timeout", "2m"); !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install:\n%s", out)
	}
	if got := image(peers[1]); got != "example/web:1 2" {
		t.Fatalf("after install: %q, want example/web:1 with 2 ready", got)
	}
	if out, err := k(peers[2])("get", "configmap", "rel-config", "-o", "jsonpath={.data.greeting}"); err != nil || out != "hello" {
		t.Fatalf("the chart's config map through hm3: %q %v", out, err)
	}
	if out := helm(peers[1], "list"); !strings.Contains(out, "rel") || !strings.Contains(out, "deployed") {
		t.Fatalf("helm list through hm2:\n%s", out)
	}

	helm(peers[1], "upgrade", "rel", chart, "--set", "tag=2", "--set", "replicas=3", "--wait", "--timeout", "2m")
	// --wait ends once the new replicas are ready (helm does not wait for
	// the old ones to stop, in Kubernetes either): the last old one, still
	// ready, goes soon after (a CI run read 4 ready at once).
	harness.Eventually(t, 30*time.Second, "upgrade to example/web:2 with 3 ready", func() (bool, string) {
		got := image(peers[2])
		return got == "example/web:2 3", got
	})
	if out := helm(peers[2], "history", "rel"); !strings.Contains(out, "superseded") || !strings.Contains(out, "Upgrade complete") {
		t.Fatalf("helm history through hm3:\n%s", out)
	}

	helm(peers[2], "rollback", "rel", "1", "--wait", "--timeout", "2m")
	// --wait ends once enough replicas are ready; the third one of the
	// upgrade goes soon after.
	harness.Eventually(t, 30*time.Second, "rollback to example/web:1 with 2 ready", func() (bool, string) {
		got := image(peers[0])
		return got == "example/web:1 2", got
	})

	helm(peers[0], "uninstall", "rel", "--wait", "--timeout", "1m")
	for _, p := range peers {
		harness.Eventually(t, 30*time.Second, "the release's objects gone on "+p.Name, func() (bool, string) {
			out, _ := k(p)("get", "deployments,services,configmaps,secrets", "-o", "name")
			return !strings.Contains(out, "rel"), out
		})
	}
}
