package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// orderedPod has an init container that sleeps (so Init:0/5 can be seen),
// two that append to a shared emptyDir, a sidecar between them (its
// postStart hook appends too, its startup probe gates the next init
// container, which fetches from it over the pod's shared network), and an
// app container. The preStop hooks of the app and of the sidecar tell the
// witness pod (WITNESS) when they run; both run on the first peer (pod
// addresses are not routed between peers yet).
const orderedPod = `apiVersion: v1
kind: Pod
metadata: {name: witness}
spec:
  nodeName: ic1
  containers: [{name: witness, image: example/web:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  nodeName: ic1
  restartPolicy: Never
  terminationGracePeriodSeconds: 10
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - {name: wait, image: example/web:1, args: [sleep, "4"]}
  - {name: first, image: example/web:1, args: [appendfile, /work/log, first], volumeMounts: [{name: work, mountPath: /work}]}
  - name: side
    image: example/web:1
    restartPolicy: Always
    args: [-port, "8081"]
    volumeMounts: [{name: work, mountPath: /work}]
    startupProbe: {httpGet: {port: 8081, path: /healthz}, periodSeconds: 1, failureThreshold: 30}
    lifecycle:
      postStart: {exec: {command: [/app, appendfile, /work/log, side-started]}}
      preStop: {exec: {command: [/app, fetch, "http://WITNESS:8080/?from=side-prestop"]}}
  - {name: second, image: example/web:1, args: [fetch, "http://127.0.0.1:8081/"]}
  - {name: third, image: example/web:1, args: [appendfile, /work/log, third], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - name: app
    image: example/web:1
    volumeMounts: [{name: work, mountPath: /work}]
    readinessProbe: {httpGet: {port: 8080, path: /ready}, periodSeconds: 1}
    lifecycle:
      preStop: {exec: {command: [/app, fetch, "http://WITNESS:8080/?from=app-prestop"]}}
`

const failingInitPods = `apiVersion: v1
kind: Pod
metadata: {name: initfail-never}
spec:
  restartPolicy: Never
  initContainers: [{name: setup, image: example/web:1, args: [fail, "3"]}]
  containers: [{name: app, image: example/web:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: initfail-loop}
spec:
  initContainers: [{name: setup, image: example/web:1, args: [fail, "1"]}]
  containers: [{name: app, image: example/web:1}]
`

// startupPods: slowstart's liveness probe always fails, but runs only once
// the startup probe (a file the test writes) has passed; neverstarts'
// startup probe never passes, so it is restarted after 3 failures.
const startupPods = `apiVersion: v1
kind: Pod
metadata: {name: slowstart}
spec:
  containers:
  - name: app
    image: example/web:1
    startupProbe: {exec: {command: [/app, readfile, /tmp/started]}, periodSeconds: 1, failureThreshold: 120}
    livenessProbe: {exec: {command: [/app, fail, "1"]}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: neverstarts}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: example/web:1
    startupProbe: {exec: {command: [/app, readfile, /tmp/never]}, periodSeconds: 1, failureThreshold: 3}
`

const grpcPods = `apiVersion: v1
kind: Pod
metadata: {name: grpc-ok}
spec:
  containers:
  - name: srv
    image: example/grpchealth:1
    readinessProbe: {grpc: {port: 9090}, periodSeconds: 1}
    livenessProbe: {grpc: {port: 9090, service: app}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: grpc-sick}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: srv
    image: example/grpchealth:1
    livenessProbe: {grpc: {port: 9090, service: sick}, periodSeconds: 1, failureThreshold: 2}
`

// slowStop's preStop hook would take a minute; its grace period is 3 s.
const slowStop = `apiVersion: v1
kind: Pod
metadata: {name: slowstop}
spec:
  nodeName: ic1
  terminationGracePeriodSeconds: 3
  containers:
  - name: app
    image: example/web:1
    lifecycle: {preStop: {exec: {command: [/app, sleep, "60"]}}}
`

// neverPull runs on the second peer, which does not hold its image (the
// first peer does).
const neverPull = `apiVersion: v1
kind: Pod
metadata: {name: neverpull}
spec:
  nodeName: ic2
  containers: [{name: app, image: example/never:2, imagePullPolicy: Never}]
`

// TestInitContainersSidecarsProbesHooks drives the real kubectl against two
// peers: init containers run in order to completion (each appends to a
// shared emptyDir that the app reads), kubectl shows Init:N/M meanwhile; a
// sidecar starts in order, gates the next init container through its
// startup probe, shares the pod's network, runs next to the app (READY
// 2/2) and stops after it (their preStop hooks reach a witness pod in that
// order); failing init containers show Init:Error and
// Init:CrashLoopBackOff; a startup probe holds back a liveness probe and
// restarts a container that never starts; grpc probes ask a real gRPC
// health server; imagePullPolicy Never waits with ErrImageNeverPull until
// the image is loaded on the pod's own peer.
func TestInitContainersSidecarsProbesHooks(t *testing.T) {
	peers := startCluster(t, 2, 195, "ic")
	// Images built from this tree into a directory of this test's own:
	// the shared chorus-test-images directory may hold a web image built
	// from another tree (without the modes used here), and Build names its
	// file after the program and tag (a never:1 tag would overwrite web-1.tar).
	ctx := context.Background()
	dir := t.TempDir()
	var loaded []string
	for _, b := range []struct{ prog, tag string }{
		{"web", "example/web:1"}, {"grpchealth", "example/grpchealth:1"}, {"web", "example/never:2"},
	} {
		img, err := images.Build(ctx, b.prog, dir, []string{b.tag}, images.FormatDocker)
		if err != nil {
			t.Fatal(err)
		}
		loaded = append(loaded, img)
	}
	neverImg := loaded[2]
	for _, img := range loaded {
		if out, err := peers[0].CLI("image", "load", img); err != nil {
			t.Fatalf("image load: %v\n%s", err, out)
		}
	}
	k1, k2 := kubectlFor(t, peers[0]), kubectlFor(t, peers[1])
	must := kubectlMust
	apply := func(t *testing.T, k func(...string) (string, error), manifest string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "m.yaml")
		if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := k("apply", "-f", f); err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
	}
	eventually := func(t *testing.T, k func(...string) (string, error), what string, ok func(string) bool, args ...string) string {
		t.Helper()
		var last string
		harness.Eventually(t, 90*time.Second, strings.Join(args, " ")+": "+what, func() (bool, string) {
			out, err := k(args...)
			last = out
			return err == nil && ok(out), out
		})
		return last
	}
	has := func(s string) func(string) bool { return func(out string) bool { return strings.Contains(out, s) } }
	is := func(s string) func(string) bool { return func(out string) bool { return strings.TrimSpace(out) == s } }
	atLeast := func(n int) func(string) bool {
		return func(out string) bool {
			got, err := strconv.Atoi(strings.TrimSpace(out))
			return err == nil && got >= n
		}
	}
	// On a failure, the pods as the API shows them.
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := k1("get", "pods", "-o", "yaml")
			t.Logf("pods:\n%s", out)
		}
	})

	t.Run("order sidecar preStop", func(t *testing.T) {
		witness, _, _ := strings.Cut(orderedPod, "---\n")
		apply(t, k1, witness)
		eventually(t, k1, "Running", has("Running"), "get", "pod", "witness")
		ip := strings.TrimSpace(must(t)(k1("get", "pod", "witness", "-o", "jsonpath={.status.podIP}")))
		apply(t, k2, strings.ReplaceAll(orderedPod, "WITNESS", ip))
		eventually(t, k1, "Init:0/5 while the first init container sleeps", has("Init:0/5"), "get", "pod", "ordered")
		eventually(t, k1, "Running with the sidecar next to the app", func(out string) bool {
			return strings.Contains(out, "2/2") && strings.Contains(out, "Running")
		}, "get", "pod", "ordered")
		// The init containers ran in order, the sidecar's postStart hook
		// before the init container after it.
		if got := must(t)(k2("exec", "ordered", "-c", "app", "--", "/app", "readfile", "/work/log")); got != "first\nside-started\nthird\n" {
			t.Fatalf("shared log: %q", got)
		}
		st := must(t)(k1("get", "pod", "ordered", "-o",
			`jsonpath={range .status.initContainerStatuses[*]}{.name}={.state.terminated.reason}{.state.running.startedAt}/{.restartCount};{end}`))
		for _, name := range []string{"wait", "first", "second", "third"} {
			if !strings.Contains(st, name+"=Completed/0;") {
				t.Errorf("init container %s not Completed on its first run: %s", name, st)
			}
		}
		if !strings.Contains(st, "side=2") { // running since 2026-...
			t.Errorf("sidecar not running: %s", st)
		}
		// An init container's log, through the other peer.
		if out := must(t)(k2("logs", "ordered", "-c", "second")); !strings.Contains(out, "hello from ordered") {
			t.Errorf("logs -c second: %q", out)
		}
		if c := must(t)(k1("get", "pod", "ordered", "-o", `jsonpath={.status.conditions[?(@.type=="Initialized")].status}`)); c != "True" {
			t.Errorf("Initialized condition %q", c)
		}
		must(t)(k1("delete", "pod", "ordered", "--wait=false"))
		logs := eventually(t, k1, "both preStop hooks reached the witness", func(out string) bool {
			return strings.Contains(out, "side-prestop") && strings.Contains(out, "app-prestop")
		}, "logs", "witness")
		if a, s := strings.Index(logs, "from=app-prestop"), strings.Index(logs, "from=side-prestop"); a > s {
			t.Errorf("the sidecar stopped before the app:\n%s", logs)
		}
		eventually(t, k2, "ordered gone", func(out string) bool { return !strings.Contains(out, "ordered") }, "get", "pods")
	})

	t.Run("failing init containers", func(t *testing.T) {
		apply(t, k1, failingInitPods)
		eventually(t, k2, "Init:Error", has("Init:Error"), "get", "pod", "initfail-never")
		eventually(t, k2, "phase Failed", is("Failed"), "get", "pod", "initfail-never", "-o", "jsonpath={.status.phase}")
		eventually(t, k2, "Init:CrashLoopBackOff", has("Init:CrashLoopBackOff"), "get", "pod", "initfail-loop")
		eventually(t, k1, "restarted init container", atLeast(2), "get", "pod", "initfail-loop", "-o", "jsonpath={.status.initContainerStatuses[0].restartCount}")
		if st := must(t)(k1("get", "pod", "initfail-loop", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}")); st != "PodInitializing" {
			t.Errorf("the app container of a pod whose init container fails: %q, want PodInitializing", st)
		}
		must(t)(k1("delete", "pod", "initfail-never", "initfail-loop", "--wait=false"))
	})

	t.Run("startupProbe", func(t *testing.T) {
		apply(t, k1, startupPods)
		eventually(t, k2, "slowstart running", func(out string) bool { return strings.TrimSpace(out) != "" },
			"get", "pod", "slowstart", "-o", "jsonpath={.status.containerStatuses[0].state.running.startedAt}")
		// While the startup probe fails, the failing liveness probe does
		// not run: no restart, not Started, not Ready.
		for range 6 {
			time.Sleep(time.Second)
			out := must(t)(k2("get", "pod", "slowstart", "-o", "jsonpath={.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}"))
			if out != "0/false/false" {
				t.Fatalf("slowstart before its startup probe passed: restarts/started/ready = %s", out)
			}
		}
		must(t)(k1("exec", "slowstart", "--", "/app", "writefile", "/tmp/started", "yes"))
		eventually(t, k2, "liveness runs (and kills) once started", atLeast(1), "get", "pod", "slowstart", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
		eventually(t, k1, "startup probe failures restart neverstarts", atLeast(1), "get", "pod", "neverstarts", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
		eventually(t, k1, "a Startup probe event", has("Startup probe failed"), "get", "events", "--field-selector", "involvedObject.name=neverstarts")
		must(t)(k1("delete", "pod", "slowstart", "neverstarts", "--wait=false"))
	})

	t.Run("grpc probes", func(t *testing.T) {
		apply(t, k2, grpcPods)
		eventually(t, k1, "grpc-ok Ready", func(out string) bool {
			return strings.Contains(out, "1/1") && strings.Contains(out, "Running")
		}, "get", "pod", "grpc-ok")
		eventually(t, k1, "grpc-sick restarted", atLeast(1), "get", "pod", "grpc-sick", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
		eventually(t, k1, "the kubelet's message", has(`service unhealthy (responded with "NOT_SERVING")`),
			"get", "events", "--field-selector", "involvedObject.name=grpc-sick", "-o", "jsonpath={.items[*].message}")
		if n := must(t)(k1("get", "pod", "grpc-ok", "-o", "jsonpath={.status.containerStatuses[0].restartCount}")); n != "0" {
			t.Errorf("grpc-ok restarted %s times", n)
		}
		must(t)(k1("delete", "pod", "grpc-ok", "grpc-sick", "--wait=false"))
	})

	t.Run("grace period bounds preStop", func(t *testing.T) {
		apply(t, k1, slowStop)
		eventually(t, k1, "Running", has("Running"), "get", "pod", "slowstop")
		start := time.Now()
		must(t)(k1("delete", "pod", "slowstop", "--wait=false"))
		eventually(t, k2, "slowstop gone", func(out string) bool { return !strings.Contains(out, "slowstop") }, "get", "pods")
		took := time.Since(start)
		t.Logf("a pod whose preStop hook sleeps 60 s, with a 3 s grace period, was gone %s after kubectl delete", took.Round(100*time.Millisecond))
		if took < 3*time.Second || took > 30*time.Second {
			t.Errorf("slowstop gone after %s: want the 3 s grace period (plus removal), not the hook's 60 s", took)
		}
	})

	t.Run("imagePullPolicy Never", func(t *testing.T) {
		apply(t, k1, neverPull)
		eventually(t, k1, "ErrImageNeverPull", has("ErrImageNeverPull"), "get", "pod", "neverpull")
		// Still waiting: the other peer's copy is never fetched.
		time.Sleep(3 * time.Second)
		if out := must(t)(k2("get", "pod", "neverpull")); !strings.Contains(out, "ErrImageNeverPull") {
			t.Fatalf("neverpull after 3 s:\n%s", out)
		}
		if out, err := peers[1].CLI("image", "load", neverImg); err != nil {
			t.Fatalf("image load on the pod's peer: %v\n%s", err, out)
		}
		eventually(t, k2, "Running once loaded on its peer", has("Running"), "get", "pod", "neverpull")
		must(t)(k1("delete", "pod", "neverpull", "--wait=false"))
	})
}
