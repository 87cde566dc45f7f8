package cluster

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

const rollService = `apiVersion: v1
kind: Service
metadata: {name: roll}
spec:
  type: NodePort
  selector: {app: roll}
  ports: [{port: 8080, nodePort: 31091}]
`

// podImages returns the image of every pod of deployment name, by pod, and
// how many are Ready.
func podImages(p *harness.Peer, name string) (map[string]string, int, error) {
	pods, err := p.Pods("default")
	if err != nil {
		return nil, 0, err
	}
	out, ready := map[string]string{}, 0
	for _, pod := range pods {
		if pod.Metadata.Labels[api.LabelDeployment] != name {
			continue
		}
		out[pod.Metadata.Name] = pod.Spec.Containers[0].Image
		if harness.IsReady(&pod) {
			ready++
		}
	}
	return out, ready, nil
}

// allOn waits until the deployment runs exactly n Ready pods, all of image.
func allOn(t *testing.T, p *harness.Peer, name string, n int, image string) {
	t.Helper()
	harness.Eventually(t, 90*time.Second, fmt.Sprintf("%d ready pods of %s", n, image), func() (bool, string) {
		imgs, ready, err := podImages(p, name)
		if err != nil {
			return false, err.Error()
		}
		for _, img := range imgs {
			if img != image {
				return false, fmt.Sprint(imgs)
			}
		}
		return len(imgs) == n && ready == n, fmt.Sprintf("%v, %d ready", imgs, ready)
	})
}

// holds waits until peer p's replica holds deployment roll with image: a
// write on one peer reaches the others in tens of milliseconds, and
// `rollout status` asked of a peer that has not seen it yet would report
// the previous rollout as done.
func holds(t *testing.T, p *harness.Peer, image string) {
	t.Helper()
	harness.Eventually(t, 10*time.Second, p.Name+" holds "+image, func() (bool, string) {
		var d api.Deployment
		if err := p.GetJSON("/apis/apps/v1/namespaces/default/deployments/roll", &d); err != nil {
			return false, err.Error()
		}
		got := d.Spec.Template.Spec.Containers[0].Image
		return got == image, got
	})
}

// TestRollForwardAndBack: a rolling update through one peer, followed from
// another, with a service answering all along; the history on a third; an
// undo; a broken image that stalls the rollout with its reason while the
// old pods keep serving; an undo out of it.
func TestRollForwardAndBack(t *testing.T) {
	ctx := context.Background()
	dir := images.CacheDir()
	imgs, err := images.BuildAll(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	web2, err := images.Build(ctx, "web", dir, []string{"example/web:2"}, images.FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	peers := startCluster(t, 3, 91, "r")
	r1, r2, r3 := peers[0], peers[1], peers[2]
	for _, img := range []string{imgs["web"], web2} { // on one peer only: the others fetch them
		if _, err := r1.CLI("image", "load", img); err != nil {
			t.Fatal(err)
		}
	}

	// One new pod at a time, none of the old ones gone before its
	// replacement is Ready: a rollout of several seconds that `rollout
	// status` can be seen following.
	roll := strings.Replace(harness.WebDeployment("roll", 4), "spec:\n  replicas",
		"spec:\n  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  replicas", 1)
	app := manifest(t, roll+"---\n"+rollService)
	out, err := r1.CLI("create", "-f", app)
	if err != nil || !strings.Contains(out, "deployment.apps/roll created") || !strings.Contains(out, "service/roll created") {
		t.Fatalf("create -f: %q %v", out, err)
	}
	if out, err := r2.CLI("create", "-f", app); err == nil || !strings.Contains(err.Error(), "AlreadyExists") {
		t.Fatalf("a second create -f: %q %v", out, err)
	}
	allOn(t, r1, "roll", 4, "example/web:1")
	// `chorus service` (minikube's `service --url`) says where to reach it.
	if u, err := r2.CLI("service", "roll"); err != nil || strings.TrimSpace(u) != "http://127.0.0.92:31091/" {
		t.Fatalf("service roll: %q %v", u, err)
	} else if body, err := get(strings.TrimSpace(u)); err != nil || !strings.HasPrefix(body, "hello from roll-") {
		t.Fatalf("GET %s: %q %v", u, body, err)
	}

	// Logs of every pod through one peer, whichever peer runs it.
	pods, err := r1.Pods("default")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		// Whole logs: readiness probes (one a second) soon push the first
		// line out of any tail.
		logs, err := r1.CLI("logs", p.Metadata.Name)
		if err != nil || !strings.Contains(logs, "listening on :8080") {
			t.Fatalf("logs of %s (on %s) through r1: %q %v", p.Metadata.Name, p.Spec.NodeName, logs, err)
		}
	}

	// Deleting a pod through a peer that does not run it replaces it there.
	for _, p := range pods {
		if p.Spec.NodeName == "r1" {
			continue
		}
		out, err := r1.CLI("delete", "pod", p.Metadata.Name)
		if err != nil || !strings.Contains(out, "deleted") {
			t.Fatalf("delete pod %s (on %s) through r1: %q %v", p.Metadata.Name, p.Spec.NodeName, out, err)
		}
		harness.Eventually(t, 30*time.Second, p.Metadata.Name+" replaced", func() (bool, string) {
			var now api.Pod
			if err := r1.GetJSON("/api/v1/namespaces/default/pods/"+p.Metadata.Name, &now); err != nil {
				return false, err.Error()
			}
			return now.Metadata.UID != p.Metadata.UID && harness.IsReady(&now), now.Metadata.UID
		})
		break
	}
	allOn(t, r1, "roll", 4, "example/web:1")

	// Requests through r2's NodePort during every rollout below.
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.After(4 * time.Minute) // bounded whatever happens
		for {
			select {
			case <-stop:
				return
			case <-deadline:
				return
			case <-time.After(20 * time.Millisecond):
			}
			sent.Add(1)
			if body, err := get("http://127.0.0.92:31091/"); err != nil || !strings.HasPrefix(body, "hello from roll-") {
				failed.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// Forward, through r2, followed from r3.
	// No pod moves between peers during the rollout: a new pod starts where
	// it will stay, an old one stays where it is until it goes.
	moves := make(chan string, 1)
	watchStop := make(chan struct{})
	go func() {
		defer close(moves)
		where := map[string]string{}
		for {
			select {
			case <-watchStop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			pods, err := r3.Pods("default")
			if err != nil {
				continue
			}
			for _, p := range pods {
				if n, ok := where[p.Metadata.Name]; ok && n != p.Spec.NodeName && p.Spec.NodeName != "" {
					moves <- fmt.Sprintf("%s moved from %s to %s", p.Metadata.Name, n, p.Spec.NodeName)
					return
				}
				if p.Spec.NodeName != "" {
					where[p.Metadata.Name] = p.Spec.NodeName
				}
			}
		}
	}()
	if out, err := r2.CLI("set", "image", "deployment/roll", "web=example/web:2"); err != nil || !strings.Contains(out, "deployment.apps/roll image updated") {
		t.Fatalf("set image: %q %v", out, err)
	}
	holds(t, r3, "example/web:2")
	status, err := r3.CLI("rollout", "status", "deployment/roll", "--timeout", "90s")
	if err != nil || !strings.Contains(status, `deployment "roll" successfully rolled out`) || !strings.Contains(status, "Waiting for deployment") {
		t.Fatalf("rollout status:\n%s %v", status, err)
	}
	t.Logf("rollout status printed:\n%s", status)
	close(watchStop)
	if m, ok := <-moves; ok {
		t.Fatalf("a pod moved during the rollout: %s", m)
	}
	allOn(t, r1, "roll", 4, "example/web:2")

	// The history, from r1 (kubectl reads it from the ReplicaSets; no
	// change cause: kubectl records none without --record).
	hist, err := r1.CLI("rollout", "history", "deployment/roll")
	if err != nil || !regexp.MustCompile(`(?m)^1\s`).MatchString(hist) || !regexp.MustCompile(`(?m)^2\s`).MatchString(hist) {
		t.Fatalf("rollout history:\n%s %v", hist, err)
	}
	if dep, err := r3.CLI("get", "deployment", "roll", "-o", "yaml"); err != nil || !strings.Contains(dep, "deployment.kubernetes.io/revision: \"2\"") {
		t.Fatalf("deployment without its revision:\n%s %v", dep, err)
	}

	// Back, through r1.
	if out, err := r1.CLI("rollout", "undo", "deployment/roll"); err != nil || !strings.Contains(out, "deployment.apps/roll rolled back") {
		t.Fatalf("rollout undo: %q %v", out, err)
	}
	holds(t, r2, "example/web:1")
	if status, err := r2.CLI("rollout", "status", "deployment/roll", "--timeout", "90s"); err != nil || !strings.Contains(status, "successfully rolled out") {
		t.Fatalf("rollout status after undo:\n%s %v", status, err)
	}
	allOn(t, r3, "roll", 4, "example/web:1")
	hist, err = r3.CLI("rollout", "history", "deployment/roll")
	if err != nil || regexp.MustCompile(`(?m)^1\s`).MatchString(hist) || !regexp.MustCompile(`(?m)^3\s`).MatchString(hist) {
		t.Fatalf("history after undo (revision 1 became 3):\n%s %v", hist, err)
	}
	close(stop)
	wg.Wait()
	t.Logf("requests through a NodePort during two rollouts: %d sent, %d failed", sent.Load(), failed.Load())
	// The rollouts may take only a second or two: the loop must have run
	// during them, and at most one request in twenty (or one) may fail.
	if sent.Load() < 5 || failed.Load() > max(1, sent.Load()/20) {
		t.Fatalf("%d of %d requests failed during the rollouts (more than 5%%, or the loop did not run)", failed.Load(), sent.Load())
	}

	// A broken image stalls the rollout with its reason; the old pods serve.
	if _, err := r2.CLI("set", "image", "deployment/roll", "web=example/web:nope"); err != nil {
		t.Fatal(err)
	}
	holds(t, r3, "example/web:nope")
	status, err = r3.CLI("rollout", "status", "deployment/roll", "--timeout", "10s")
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("rollout status of a broken image should time out:\n%s %v", status, err)
	}
	// get pods, through any peer, says why.
	harness.Eventually(t, 20*time.Second, "the pull failure in get pods through r3", func() (bool, string) {
		out, err := r3.CLI("get", "pods")
		return err == nil && (strings.Contains(out, "ErrImagePull") || strings.Contains(out, "ImagePullBackOff")), out
	})
	_, ready, err := podImages(r1, "roll")
	if err != nil || ready < 4 {
		t.Fatalf("a stalled rollout left %d ready pods (maxUnavailable is 0): %v", ready, err)
	}
	// Events are cluster-wide: describe through r1 shows why a pod that
	// another peer runs cannot start.
	harness.Eventually(t, 20*time.Second, "the pull failure in describe through r1", func() (bool, string) {
		pods, err := r1.Pods("default")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if p.Spec.NodeName != "r1" && p.Spec.Containers[0].Image == "example/web:nope" {
				out, err := r1.CLI("describe", "pod", p.Metadata.Name)
				return err == nil && strings.Contains(out, "Failed to pull image"), out
			}
		}
		return false, "no pod of the broken image on r2 or r3"
	})
	if f, pods := answers("http://127.0.0.91:31091/", 20); f != 0 {
		t.Fatalf("the service failed %d of 20 requests during a stalled rollout (%v)", f, pods)
	}
	if out, err := r3.CLI("rollout", "undo", "deployment/roll"); err != nil || !strings.Contains(out, "rolled back") {
		t.Fatalf("undo of the broken image: %q %v", out, err)
	}
	holds(t, r1, "example/web:1")
	if status, err := r1.CLI("rollout", "status", "deployment/roll", "--timeout", "90s"); err != nil || !strings.Contains(status, "successfully rolled out") {
		t.Fatalf("rollout status after undoing the broken image:\n%s %v", status, err)
	}
	allOn(t, r2, "roll", 4, "example/web:1")
}

// BenchmarkRollout measures updates of a 10-replica deployment over 5
// peers (alternating example/web:1 and :2): the time from `set image` to
// every replica updated and Ready, requests through a NodePort that failed
// meanwhile (every 10 ms), and pods that changed peer; for the default
// RollingUpdate strategy (maxSurge and maxUnavailable 25%) and, in the same
// run, for Recreate. Run with -benchtime 6x.
func BenchmarkRollout(b *testing.B) {
	peers := startCluster(b, 5, 145, "ro")
	loadWebImages(b, peers[0])
	for i, strategy := range []string{"RollingUpdate", "Recreate"} {
		b.Run("strategy="+strategy, func(b *testing.B) { rollouts(b, peers, strategy, 31145+i) })
	}
}

func rollouts(b *testing.B, peers []*harness.Peer, strategy string, nodePort int) {
	name := strings.ToLower(strategy)
	dep := harness.WebDeployment(name, 10)
	if strategy == "Recreate" {
		dep = strings.Replace(dep, "spec:\n  replicas", "spec:\n  strategy: {type: Recreate}\n  replicas", 1)
	}
	svc := strings.ReplaceAll(strings.ReplaceAll(rollService, "roll", name), "31091", fmt.Sprint(nodePort))
	if _, err := peers[0].CLI("apply", "-f", manifest(b, dep+"---\n"+svc)); err != nil {
		b.Fatal(err)
	}
	defer func() { _, _ = peers[0].CLI("delete", "-f", manifest(b, dep+"---\n"+svc)) }()
	waitImage := func(image string) (moves int) {
		where := map[string]string{}
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			imgs, ready, err := podImages(peers[1], name)
			pods, perr := peers[1].Pods("default")
			if perr == nil {
				for _, p := range pods {
					if n, ok := where[p.Metadata.Name]; ok && n != p.Spec.NodeName {
						moves++
					}
					where[p.Metadata.Name] = p.Spec.NodeName
				}
			}
			done := err == nil && ready == 10 && len(imgs) == 10
			for _, img := range imgs {
				done = done && img == image
			}
			if done {
				return moves
			}
			time.Sleep(50 * time.Millisecond)
		}
		b.Fatalf("rollout to %s did not finish in 2 minutes", image)
		return 0
	}
	waitImage("example/web:1")
	url := fmt.Sprintf("http://127.0.0.147:%d/", nodePort)
	var took []time.Duration
	var sent, failed, moves int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		image := []string{"example/web:2", "example/web:1"}[i%2]
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var s, f atomic.Int64
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				s.Add(1)
				if _, err := get(url); err != nil {
					f.Add(1)
				}
			}
		}()
		start := time.Now()
		if _, err := peers[2].CLI("set", "image", "deployment/"+name, "web="+image); err != nil {
			b.Fatal(err)
		}
		moves += waitImage(image)
		took = append(took, time.Since(start))
		close(stop)
		wg.Wait()
		sent += int(s.Load())
		failed += int(f.Load())
	}
	b.StopTimer()
	b.ReportMetric(percentile(took, 0.5).Seconds(), "median-s")
	b.ReportMetric(percentile(took, 1).Seconds(), "max-s")
	b.ReportMetric(float64(failed), "failed-requests")
	b.ReportMetric(float64(sent), "requests")
	b.ReportMetric(float64(moves), "pod-moves")
}
