package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/images"
)

// These tests drive a real private containerd, runc and Debian's CNI
// plugins. A missing dependency fails them: run `make deps`.

func requireEnv(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("runtime tests need root: run them as root (make test)")
	}
	for _, b := range []string{"containerd", "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed: run `make deps`", b)
		}
	}
}

type rig struct {
	ctd  *Containerd
	pm   *PodManager
	dir  string
	ip   func(pod string) string
	stop func()
}

func newRig(t *testing.T, name string) *rig { return newRigNet(t, name, "10.87.1.0/24") }

func (r *rig) loadImage(t *testing.T, name string) {
	t.Helper()
	// A folder per source tree: worktrees of the repository share /tmp,
	// and BuildAll keeps an archive newer than its sources.
	src, err := images.SourceDir(name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(src))
	out := filepath.Join(os.TempDir(), "chorus-test-images-"+hex.EncodeToString(sum[:6]))
	paths, err := images.BuildAll(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(paths[name])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	imgs, err := r.ctd.ImportImage(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) == 0 || imgs[0].Name != "docker.io/example/"+name+":1" {
		t.Fatalf("imported %+v, want docker.io/example/%s:1", imgs, name)
	}
}

func (r *rig) pod(t *testing.T, name string) api.Pod {
	t.Helper()
	for _, p := range r.pm.Pods() {
		if p.Metadata.Name == name {
			return p
		}
	}
	t.Fatalf("pod %s not found", name)
	return api.Pod{}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func webPod(name string) api.Pod {
	return api.Pod{
		Metadata: api.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: api.PodSpec{RestartPolicy: "Always", Containers: []api.Container{{
			Name: "web", Image: "example/web:1",
			Env:   []api.EnvVar{{Name: "PORT", Value: "8080"}},
			Ports: []api.ContainerPort{{ContainerPort: 8080, Protocol: "TCP"}},
			ReadinessProbe: &api.Probe{HTTPGet: &api.HTTPGetAction{Path: "/ready", Port: api.FromInt(8080)},
				PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 1},
			LivenessProbe: &api.Probe{HTTPGet: &api.HTTPGetAction{Path: "/healthz", Port: api.FromInt(8080)},
				PeriodSeconds: 1, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 2},
			Resources: api.ResourceRequirements{Limits: api.ResourceList{"cpu": "500m", "memory": "64Mi"}},
		}}},
	}
}

func get(url string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestPodLifecycle(t *testing.T) {
	r := newRig(t, "life")
	r.loadImage(t, "web")
	r.pm.Sync([]api.Pod{webPod("web-a"), webPod("web-b")})

	ips := map[string]string{}
	for _, name := range []string{"web-a", "web-b"} {
		waitFor(t, 30*time.Second, name+" ready", func() (bool, string) {
			p := r.pod(t, name)
			ok := p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
			return ok, fmt.Sprintf("%+v", p.Status)
		})
		p := r.pod(t, name)
		ips[name] = p.Status.PodIP
		code, body, err := get("http://" + p.Status.PodIP + ":8080/")
		if err != nil || code != 200 || !strings.Contains(body, name) {
			t.Fatalf("GET %s: %d %q %v", name, code, body, err)
		}
	}
	if ips["web-a"] == ips["web-b"] {
		t.Fatalf("both pods have IP %s", ips["web-a"])
	}

	// Readiness toggles READY without a restart.
	ip := ips["web-a"]
	if _, _, err := get("http://" + ip + ":8080/toggle-ready"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "web-a not ready", func() (bool, string) {
		p := r.pod(t, "web-a")
		return !p.Status.ContainerStatuses[0].Ready, "still ready"
	})
	if p := r.pod(t, "web-a"); p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("readiness failure restarted the container")
	}
	if _, _, err := get("http://" + ip + ":8080/toggle-ready"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "web-a ready again", func() (bool, string) {
		return r.pod(t, "web-a").Status.ContainerStatuses[0].Ready, "not ready"
	})

	// A process that exits is restarted; RESTARTS grows.
	_, _, _ = get("http://" + ip + ":8080/exit?code=3")
	waitFor(t, 15*time.Second, "web-a restarted after exit", func() (bool, string) {
		p := r.pod(t, "web-a")
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount == 1 && cs.Ready, fmt.Sprintf("%+v", cs)
	})
	if last := r.pod(t, "web-a").Status.ContainerStatuses[0].LastState.Terminated; last == nil || last.ExitCode != 3 {
		t.Fatalf("last state %+v, want exit code 3", last)
	}

	// A failing liveness probe restarts it.
	_, _, _ = get("http://" + ip + ":8080/fail")
	waitFor(t, 20*time.Second, "web-a restarted by liveness", func() (bool, string) {
		cs := r.pod(t, "web-a").Status.ContainerStatuses[0]
		return cs.RestartCount == 2 && cs.Ready, fmt.Sprintf("%+v", cs)
	})

	// Logs of the current and the previous attempt.
	path, err := r.pm.LogPath("default", "web-a", "", false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "log written", func() (bool, string) {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), "listening on :8080"), string(b)
	})
	prev, err := r.pm.LogPath("default", "web-a", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(prev); !strings.Contains(string(b), "GET /fail") {
		t.Fatalf("previous log lacks the /fail request: %q", b)
	}

	// Removing a pod removes its containers and network namespace.
	r.pm.Sync([]api.Pod{webPod("web-b")})
	waitFor(t, 30*time.Second, "web-a removed", func() (bool, string) {
		return len(r.pm.Pods()) == 1, fmt.Sprint(len(r.pm.Pods()), " pods")
	})
	ctrs, err := r.ctd.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ctrs) != 1 || !strings.Contains(ctrs[0].ID, "web-b") {
		t.Fatalf("containers left: %+v", ctrs)
	}
	nss, _ := r.ctd.net.NetNSPaths()
	if len(nss) != 1 {
		t.Fatalf("network namespaces left: %v", nss)
	}
}

func TestAdoptAfterRestart(t *testing.T) {
	r := newRig(t, "adopt")
	r.loadImage(t, "web")
	r.pm.Sync([]api.Pod{webPod("web-a")})
	waitFor(t, 30*time.Second, "web-a ready", func() (bool, string) {
		p := r.pod(t, "web-a")
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready, ""
	})
	ip := r.pod(t, "web-a").Status.PodIP
	r.pm.Close()

	// A new manager over the same state adopts the running pod.
	pm := NewPodManager(r.ctd, r.pm.opts)
	if err := pm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.pm = pm
	pods := pm.Pods()
	if len(pods) != 1 || pods[0].Status.PodIP != ip {
		t.Fatalf("adopted %+v, want web-a at %s", pods, ip)
	}
	pm.Sync([]api.Pod{webPod("web-a")})
	waitFor(t, 10*time.Second, "adopted web-a ready", func() (bool, string) {
		cs := r.pod(t, "web-a").Status.ContainerStatuses[0]
		return cs.Ready && cs.RestartCount == 0, fmt.Sprintf("%+v", cs)
	})
	ctrs, _ := r.ctd.Containers(context.Background())
	if len(ctrs) != 1 {
		t.Fatalf("want 1 container after adoption, got %d", len(ctrs))
	}
}
