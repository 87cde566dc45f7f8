package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// TestKubectlStandalonePods drives standalone pods with the real kubectl,
// each step through another peer: kubectl run binds the pod to one peer,
// exec, logs and describe reach it through any peer, a --restart=Never pod
// ends Completed (or Error), kubectl delete pod removes it from every peer, a
// pod that fits nowhere is Pending with a FailedScheduling event, and a pod
// whose peer dies is not started elsewhere (Unknown, NodeLost) until it is
// deleted.
func TestKubectlStandalonePods(t *testing.T) {
	peers := startCluster(t, 3, 181, "sp")
	loadWebImages(t, peers[0])
	ks := []func(...string) (string, error){kubectlFor(t, peers[0]), kubectlFor(t, peers[1]), kubectlFor(t, peers[2])}
	k1, k2, k3 := ks[0], ks[1], ks[2]
	must := kubectlMust(t)
	eventually := func(k func(...string) (string, error), want string, args ...string) string {
		t.Helper()
		var last string
		harness.Eventually(t, 90*time.Second, strings.Join(args, " ")+" shows "+want, func() (bool, string) {
			out, err := k(args...)
			last = out
			return err == nil && strings.Contains(out, want), out
		})
		return last
	}

	// kubectl run through p1; Running through p2; bound to one peer.
	if out := must(k1("run", "web", "--image=example/web:1", "--port=8080")); !strings.Contains(out, "pod/web created") {
		t.Fatalf("run: %s", out)
	}
	eventually(k2, "Running", "get", "pod", "web")
	node := strings.TrimSpace(must(k2("get", "pod", "web", "-o", "jsonpath={.spec.nodeName}")))
	names := []string{"sp1", "sp2", "sp3"}
	bound := slices.Index(names, node)
	if bound < 0 {
		t.Fatalf("pod web bound to %q, not a peer", node)
	}
	if wide := must(k3("get", "pods", "-o", "wide")); !strings.Contains(wide, "NODE") || !strings.Contains(wide, node) {
		t.Fatalf("get pods -o wide:\n%s", wide)
	}
	if out, err := k3("run", "web", "--image=example/web:1"); err == nil || !strings.Contains(out, "AlreadyExists") {
		t.Fatalf("run twice: %v\n%s", err, out)
	}
	// exec, logs, describe through p3.
	if out := must(k3("exec", "web", "--", "/app", "echo", "from-exec")); !strings.Contains(out, "from-exec") {
		t.Fatalf("exec: %s", out)
	}
	eventually(k3, "listening on", "logs", "web")
	desc := must(k3("describe", "pod", "web"))
	for _, want := range []string{"Node:", node, "Running"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("describe pod web: want %q in\n%s", want, desc)
		}
	}

	// Run to completion: Completed, logs; a failure: Error.
	must(k2("run", "once", "--image=example/web:1", "--restart=Never", "--command", "--", "/app", "echo", "hi"))
	eventually(k3, "Completed", "get", "pod", "once")
	if out := must(k1("logs", "once")); strings.TrimSpace(out) != "hi" {
		t.Fatalf("logs once: %q", out)
	}
	must(k3("run", "bad", "--image=example/web:1", "--restart=Never", "--command", "--", "/app", "fail", "3"))
	eventually(k1, "Error", "get", "pod", "bad")
	if out := must(k2("get", "pod", "bad", "-o", "jsonpath={.status.phase} {.status.containerStatuses[0].restartCount}")); out != "Failed 0" {
		t.Fatalf("pod bad: %q, want Failed 0", out)
	}

	// kind: Pod in a manifest, restartPolicy OnFailure: applied again, unchanged.
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(podManifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := must(k2("apply", "-f", manifest)); !strings.Contains(out, "pod/applied created") {
		t.Fatalf("apply: %s", out)
	}
	eventually(k1, "Completed", "get", "pod", "applied")
	if out := must(k3("apply", "-f", manifest)); !strings.Contains(out, "pod/applied unchanged") {
		t.Fatalf("apply again: %s", out)
	}
	if out := must(k3("logs", "applied")); strings.TrimSpace(out) != "applied" {
		t.Fatalf("logs applied: %q", out)
	}
	if out := must(k1("delete", "-f", manifest, "--timeout=60s")); !strings.Contains(out, `pod "applied" deleted`) {
		t.Fatalf("delete -f: %s", out)
	}

	// kubectl delete pod through any peer.
	dead := -1
	// deleted deletes a pod through k (kubectl waits for its DELETED
	// event) and checks that no peer lists it.
	deleted := func(k func(...string) (string, error), name string) {
		t.Helper()
		must(k("delete", "pod", name, "--timeout=60s"))
		for i, k := range ks {
			if i == dead {
				continue
			}
			harness.Eventually(t, 60*time.Second, fmt.Sprintf("pod %s gone on peer %d", name, i+1), func() (bool, string) {
				out, err := k("get", "pod", name)
				return err != nil && strings.Contains(out, "NotFound"), out
			})
		}
	}
	deleted(k2, "once")
	deleted(k1, "bad")
	for _, k := range ks {
		if out, err := k("get", "pod", "once", "bad"); err == nil || !strings.Contains(out, "NotFound") {
			t.Fatalf("deleted pods still listed: %v\n%s", err, out)
		}
	}

	// A pod that fits nowhere: Pending, with a FailedScheduling event.
	must(k1("run", "nowhere", "--image=example/web:1", `--overrides={"apiVersion":"v1","spec":{"nodeSelector":{"disk":"none"}}}`))
	eventually(k2, "Pending", "get", "pod", "nowhere")
	eventually(k3, "FailedScheduling", "describe", "pod", "nowhere")
	deleted(k3, "nowhere")

	// The bound peer dies: the pod is not started elsewhere; it is shown
	// Unknown/NodeLost until deleted.
	peers[bound].KillMachine()
	other := ks[(bound+1)%3]
	for i, k := range ks {
		if i != bound {
			eventually(k, "NodeLost", "get", "pod", "web")
		}
	}
	for range 10 {
		for i, k := range ks {
			if i == bound {
				continue
			}
			out := must(k("get", "pod", "web", "-o", "jsonpath={.spec.nodeName} {.status.phase}"))
			if out != node+" Unknown" {
				t.Fatalf("after %s died, pod web is %q", node, out)
			}
		}
		time.Sleep(time.Second)
	}
	for i, p := range peers {
		if i == bound {
			continue
		}
		if out, err := p.CLI("get", "pods", "-o", "wide"); err != nil || strings.Count(out, "Running") != 0 {
			t.Fatalf("a peer runs web after %s died: %v\n%s", node, err, out)
		}
	}
	dead = bound
	deleted(other, "web")
}

const podManifest = `apiVersion: v1
kind: Pod
metadata: {name: applied, labels: {app: applied}}
spec:
  restartPolicy: OnFailure
  containers:
  - name: main
    image: example/web:1
    command: [/app, echo, applied]
`
