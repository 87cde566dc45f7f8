package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
)

const webManifest = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example/web:1
        env:
        - {name: PORT, value: "8080"}
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
          periodSeconds: 1
          failureThreshold: 1
        resources:
          limits: {cpu: 500m, memory: 64Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 8080
`

// startPeer starts a peer on bind with the web image loaded.
func startPeer(t testing.TB, name, bind string) *harness.Peer {
	t.Helper()
	p := harness.NewPeer(t, testEnv.bin, name, bind)
	p.Start()
	out, err := p.CLI("image", "load", testEnv.images["web"])
	if err != nil {
		t.Fatalf("image load: %v\n%s", err, p.Log())
	}
	if !strings.Contains(out, "docker.io/example/web:1") {
		t.Fatalf("image load printed %q", out)
	}
	return p
}

func writeManifest(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readyPods waits until want pods of the deployment are Running and Ready
// and returns them sorted by name.
func readyPods(t *testing.T, p *harness.Peer, want int) []api.Pod {
	t.Helper()
	var pods []api.Pod
	harness.Eventually(t, 60*time.Second, fmt.Sprintf("%d ready pods", want), func() (bool, string) {
		all, err := p.Pods("default")
		if err != nil {
			return false, err.Error()
		}
		pods = pods[:0]
		for _, pod := range all {
			if harness.IsReady(&pod) && pod.Status.Phase == api.PodRunning {
				pods = append(pods, pod)
			}
		}
		return len(pods) == want && len(all) == want, fmt.Sprintf("%d of %d pods ready", len(pods), len(all))
	})
	sort.Slice(pods, func(i, j int) bool { return pods[i].Metadata.Name < pods[j].Metadata.Name })
	return pods
}

func httpGet(url string) (string, error) { return harness.HTTPGet(url) }

func TestApplyRunsPodsWithOwnIPs(t *testing.T) {
	p := startPeer(t, "e2e-apply", "127.0.0.21")
	out, err := p.CLI("apply", "-f", writeManifest(t, webManifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deployment.apps/web created", "service/web created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply printed %q, want %q", out, want)
		}
	}
	pods := readyPods(t, p, 3)
	seen := map[string]bool{}
	for _, pod := range pods {
		if seen[pod.Status.PodIP] || pod.Status.PodIP == "" {
			t.Fatalf("pod %s has IP %q, shared or empty", pod.Metadata.Name, pod.Status.PodIP)
		}
		seen[pod.Status.PodIP] = true
		if pod.Spec.NodeName != "e2e-apply" {
			t.Errorf("pod %s: spec.nodeName %q", pod.Metadata.Name, pod.Spec.NodeName)
		}
		body, err := httpGet("http://" + pod.Status.PodIP + ":8080/")
		if err != nil || !strings.Contains(body, pod.Metadata.Name) {
			t.Fatalf("pod %s at %s answered %q, %v", pod.Metadata.Name, pod.Status.PodIP, body, err)
		}
	}

	// The table a user reads.
	wide, err := p.CLI("get", "pods", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(wide), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "IP") || !strings.Contains(lines[0], "NODE") {
		t.Fatalf("get pods -o wide:\n%s", wide)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 7 || f[1] != "1/1" || f[2] != "Running" || f[6] != "e2e-apply" {
			t.Errorf("row %q: want READY 1/1, STATUS Running, NODE e2e-apply", l)
		}
	}
	// Kubernetes' shapes in JSON.
	js, err := p.CLI("get", "pods", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string    `json:"kind"`
		Items []api.Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(js), &list); err != nil || list.Kind != "List" || len(list.Items) != 3 {
		t.Fatalf("get pods -o json: kind %q, %d items, %v", list.Kind, len(list.Items), err)
	}
	deps, err := p.CLI("get", "deployments")
	if err != nil || !regexpMatch(`(?m)^web\s+3/3\s+3\s+3\s`, deps) {
		t.Fatalf("get deployments:\n%s %v", deps, err)
	}

	// Readiness toggles READY in the table.
	ip := pods[0].Status.PodIP
	if _, err := httpGet("http://" + ip + ":8080/toggle-ready"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "READY 0/1 after readiness fails", func() (bool, string) {
		out, _ := p.CLI("get", "pods", pods[0].Metadata.Name)
		return regexpMatch(`\s0/1\s+Running\s+0\s`, out), out
	})
	if _, err := httpGet("http://" + ip + ":8080/toggle-ready"); err != nil {
		t.Fatal(err)
	}

	// Kill a container's process from outside: it is restarted, RESTARTS grows.
	victim := pods[1]
	killPodProcesses(t, p, victim.Metadata.Name)
	harness.Eventually(t, 30*time.Second, "restart after kill", func() (bool, string) {
		out, _ := p.CLI("get", "pods", victim.Metadata.Name)
		return regexpMatch(`\s1/1\s+Running\s+1\s`, out), out
	})
	desc, err := p.CLI("describe", "pod", victim.Metadata.Name)
	if err != nil || !strings.Contains(desc, "Restart Count:") || !strings.Contains(desc, "BackOff") {
		t.Fatalf("describe pod after a restart:\n%s %v", desc, err)
	}
	logs, err := p.CLI("logs", victim.Metadata.Name)
	if err != nil || !strings.Contains(logs, "listening on :8080") {
		t.Fatalf("logs: %q %v", logs, err)
	}

	// Deleting a pod replaces it, as a ReplicaSet would: same name, new
	// UID, restart count 0, Ready again.
	out, err = p.CLI("delete", "pod", victim.Metadata.Name)
	if err != nil || !strings.Contains(out, victim.Metadata.Name) || !strings.Contains(out, "deleted") {
		t.Fatalf("delete pod: %q %v", out, err)
	}
	harness.Eventually(t, 30*time.Second, "the deleted pod back, anew", func() (bool, string) {
		var pod api.Pod
		if err := p.GetJSON("/api/v1/namespaces/default/pods/"+victim.Metadata.Name, &pod); err != nil {
			return false, err.Error()
		}
		restarts := int32(-1)
		if len(pod.Status.ContainerStatuses) == 1 {
			restarts = pod.Status.ContainerStatuses[0].RestartCount
		}
		return pod.Metadata.UID != victim.Metadata.UID && harness.IsReady(&pod) && restarts == 0,
			fmt.Sprintf("uid %s (was %s), ready %v, restarts %d", pod.Metadata.UID, victim.Metadata.UID, harness.IsReady(&pod), restarts)
	})
	if _, err := p.CLI("delete", "pod", "web-nope-0"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("deleting a pod that does not exist: %v", err)
	}
}

func regexpMatch(expr, s string) bool {
	return regexp.MustCompile(expr).MatchString(s)
}

// killPodProcesses SIGKILLs every process in the pod's network namespace,
// as an outside event (the OOM killer, a crash) would.
func killPodProcesses(t *testing.T, p *harness.Peer, pod string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.DataDir, "pods", "pods", "default_"+pod+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Network struct {
			NetNSPath string `json:"netnsPath"`
		} `json:"network"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	var want syscall.Stat_t
	if err := syscall.Stat(rec.Network.NetNSPath, &want); err != nil {
		t.Fatal(err)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	killed := 0
	for _, nsPath := range procs {
		var st syscall.Stat_t
		if syscall.Stat(nsPath, &st) != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(nsPath, "/")[2])
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed++
		}
	}
	if killed == 0 {
		t.Fatalf("no process found in pod %s's network namespace", pod)
	}
}

func TestDeleteLeavesNothingBehind(t *testing.T) {
	p := startPeer(t, "e2e-delete", "127.0.0.22")
	manifest := writeManifest(t, webManifest)
	if _, err := p.CLI("apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	readyPods(t, p, 3)
	nsDir := filepath.Join(p.DataDir, "network", "netns")
	if ents, _ := os.ReadDir(nsDir); len(ents) != 3 {
		t.Fatalf("%d network namespaces for 3 pods", len(ents))
	}
	out, err := p.CLI("delete", "-f", manifest)
	if err != nil || !strings.Contains(out, `deployment.apps "web" deleted`) {
		t.Fatalf("delete: %q %v", out, err)
	}
	harness.Eventually(t, 60*time.Second, "pods gone", func() (bool, string) {
		pods, err := p.Pods("")
		return err == nil && len(pods) == 0, fmt.Sprint(len(pods), " pods ", err)
	})
	if ents, _ := os.ReadDir(nsDir); len(ents) != 0 {
		t.Errorf("network namespaces left: %d", len(ents))
	}
	bridge := bridgeOf(t, p)
	if out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("interfaces left on bridge %s:\n%s", bridge, out)
	}
	if out := containersOf(t, p); out != "" {
		t.Errorf("containers left in containerd:\n%s", out)
	}
	if out, err := p.CLI("get", "deployments"); err != nil || strings.Contains(out, "web") {
		t.Errorf("deployment still listed: %q %v", out, err)
	}
}

// bridgeOf reads the bridge name the agent logged at start.
func bridgeOf(t *testing.T, p *harness.Peer) string {
	t.Helper()
	m := regexp.MustCompile(`bridge=(\S+)`).FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no bridge in the agent log:\n%s", p.Log())
	}
	return m[1]
}

// containersOf lists the peer's containers with containerd's own CLI.
func containersOf(t *testing.T, p *harness.Peer) string {
	t.Helper()
	m := regexp.MustCompile(`containerd=(\S+)`).FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no containerd address in the agent log")
	}
	out, err := exec.Command("ctr", "-a", m[1], "-n", "chorus-"+p.Name, "containers", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr containers ls: %v %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestKillAgentAdoptsPods(t *testing.T) {
	p := startPeer(t, "e2e-adopt", "127.0.0.23")
	if _, err := p.CLI("apply", "-f", writeManifest(t, webManifest)); err != nil {
		t.Fatal(err)
	}
	before := readyPods(t, p, 3)
	ctrsBefore := containersOf(t, p)

	p.Kill()
	// The containers live on without their agent.
	for _, pod := range before {
		if _, err := httpGet("http://" + pod.Status.PodIP + ":8080/"); err != nil {
			t.Fatalf("pod %s died with its agent: %v", pod.Metadata.Name, err)
		}
	}
	p.Start()
	after := readyPods(t, p, 3)
	for i := range before {
		b, a := before[i], after[i]
		if a.Metadata.Name != b.Metadata.Name || a.Status.PodIP != b.Status.PodIP || a.Metadata.UID != b.Metadata.UID {
			t.Errorf("pod %s at %s became %s at %s", b.Metadata.Name, b.Status.PodIP, a.Metadata.Name, a.Status.PodIP)
		}
		if a.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("pod %s restarted on adoption", a.Metadata.Name)
		}
	}
	// Give the reconcile loop time to act wrongly, then check for duplicates.
	time.Sleep(3 * time.Second)
	if got := containersOf(t, p); got != ctrsBefore {
		t.Errorf("containers before kill:\n%s\nafter restart:\n%s", ctrsBefore, got)
	}
	out, err := p.CLI("get", "deployment", "web", "-o", "json")
	if err != nil || !strings.Contains(out, `"replicas": 3`) {
		t.Errorf("desired state after restart: %s %v", out, err)
	}
}

func TestBadManifestChangesNothing(t *testing.T) {
	p := harness.NewPeer(t, testEnv.bin, "e2e-bad", "127.0.0.24")
	p.Start()
	if _, err := p.CLI("apply", "-f", writeManifest(t, webManifest)); err != nil {
		t.Fatal(err)
	}
	stateBefore, err := p.CLI("get", "deployments,services", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, manifest, want string
	}{
		{"missing image", strings.Replace(webManifest, "image: example/web:1", "imagePullPolicy: Always", 1),
			`The Deployment "web" is invalid: spec.template.spec.containers[0].image: required`},
		{"bad name", strings.Replace(webManifest, "name: web\n  labels", "name: Web_App\n  labels", 1),
			`metadata.name`},
		{"unsupported kind", webManifest + "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db}\n",
			`no matches for kind "PodDisruptionBudget" in version "policy/v1"`},
		{"bad port", strings.Replace(webManifest, "containerPort: 8080", "containerPort: 70000", 1),
			`spec.template.spec.containers[0].ports[0].containerPort`},
		{"replicas type", strings.Replace(webManifest, "replicas: 3", "replicas: three", 1),
			`spec.replicas`},
		{"yaml syntax", "apiVersion: v1\nkind: Service\nmetadata:\n  name: [oops\n", `line`},
		{"selector mismatch", strings.Replace(webManifest, "matchLabels: {app: web}", "matchLabels: {app: other}", 1),
			`spec.selector`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The second document (the Service) is valid: nothing of it may land either.
			m := strings.ReplaceAll(tc.manifest, "name: web\nspec:\n  selector", "name: web2\nspec:\n  selector")
			out, err := p.CLI("apply", "-f", writeManifest(t, m))
			if err == nil {
				t.Fatalf("apply succeeded: %s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	stateAfter, err := p.CLI("get", "deployments,services", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if stripAnnotations(stateAfter) != stripAnnotations(stateBefore) {
		t.Errorf("state changed by rejected manifests:\nbefore %s\nafter %s", stateBefore, stateAfter)
	}
	if out, _ := p.CLI("get", "services"); strings.Contains(out, "web2") {
		t.Errorf("service web2 of a rejected manifest was stored:\n%s", out)
	}
}

// stripAnnotations drops what changes with pod readiness (deployment
// status, service endpoints) so two reads of unchanged desired state compare.
func stripAnnotations(s string) string {
	var l struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return s
	}
	for _, it := range l.Items {
		// Status, and the version its writes bump (a deployment's rollout
		// progress is written as the pods start), are observed state:
		// what a rejected manifest must not change is the rest.
		delete(it, "status")
		if m, ok := it["metadata"].(map[string]any); ok {
			delete(m, "annotations")
			delete(m, "resourceVersion")
		}
	}
	b, _ := json.Marshal(l)
	return string(b)
}

// Labels beyond what serf carries stop the agent with an error that says
// which flag to change.
func TestTooManyLabelsIsAClearError(t *testing.T) {
	dir := t.TempDir()
	args := []string{"agent", "--name", "e2e-labels", "--bind", "127.0.0.28", "--discover=false", "--data-dir", filepath.Join(dir, "data")}
	for i := range 30 {
		args = append(args, "--label", fmt.Sprintf("key%d=value-%d-padding", i, i))
	}
	t.Cleanup(func() {
		_ = exec.Command(testEnv.bin, "reset", "--name", "e2e-labels", "--data-dir", filepath.Join(dir, "data")).Run()
	})
	cmd := exec.Command(testEnv.bin, args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		defer close(done)
		out, err = cmd.CombinedOutput()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the agent with too many labels did not stop:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "use fewer or shorter labels") {
		t.Fatalf("want a failure naming the labels, got %v:\n%s", err, out)
	}
}
