package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// podLife is what identifies one run of a pod: a pod stopped and started
// again (here or elsewhere) has another start time or restart count.
type podLife struct {
	node, uid, started string
	restarts           string
}

// podLives reads the Ready pods of namespace default with the real kubectl:
// name -> life, and how many pods are listed in all.
func podLives(t *testing.T, k func(...string) (string, error)) (map[string]podLife, int) {
	t.Helper()
	out, err := k("get", "pods", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.uid} {.status.startTime} {.status.containerStatuses[0].restartCount} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	if err != nil {
		t.Fatalf("kubectl get pods: %v\n%s", err, out)
	}
	lives := map[string]podLife{}
	listed := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(strings.TrimSpace(l), " ") // fields may be empty
		if f[0] == "" {
			continue
		}
		listed++
		if len(f) == 6 && f[5] == "True" {
			lives[f[0]] = podLife{node: f[1], uid: f[2], started: f[3], restarts: f[4]}
		}
	}
	return lives, listed
}

// waitLives waits until kubectl lists exactly n pods, all Ready, and the
// same lives two reads in a row (one second apart).
func waitLives(t *testing.T, k func(...string) (string, error), n int, what string) map[string]podLife {
	t.Helper()
	var last map[string]podLife
	harness.Eventually(t, 90*time.Second, what, func() (bool, string) {
		lives, listed := podLives(t, k)
		stable := len(lives) == n && listed == n && fmt.Sprint(lives) == fmt.Sprint(last)
		last = lives
		if !stable {
			time.Sleep(time.Second)
		}
		return stable, fmt.Sprintf("%d listed, Ready: %v", listed, lives)
	})
	return last
}

// watchCopies samples p's pods of namespace default every 100 ms until stop
// is closed, and returns the first sample, if any, in which a pod of want
// had no Ready copy anywhere (a move that broke before it made), and the
// lowest number of distinct Ready pods seen.
func watchCopies(p *harness.Peer, want []string, stop <-chan struct{}) <-chan string {
	res := make(chan string, 1)
	go func() {
		broken, low := "", len(want)
		for {
			select {
			case <-stop:
				res <- fmt.Sprintf("%s|%d", broken, low)
				return
			case <-time.After(100 * time.Millisecond):
			}
			pods, err := p.Pods("default")
			if err != nil {
				continue
			}
			ready := map[string][]string{}
			for _, pod := range pods {
				if harness.IsReady(&pod) && pod.Status.Phase == api.PodRunning {
					ready[pod.Metadata.Name] = append(ready[pod.Metadata.Name], pod.Spec.NodeName)
				}
			}
			n := 0
			for _, name := range want {
				if len(ready[name]) > 0 {
					n++
				} else if broken == "" {
					broken = fmt.Sprintf("at %s %s had no Ready copy: %v", time.Now().Format("15:04:05.000"), name, ready)
				}
			}
			low = min(low, n)
		}
	}()
	return res
}

// Placement is stable under growth, seen as a user sees it with the real
// kubectl: scaling a deployment of 3 replicas on 3 peers to 5 stops none of
// the 3 (same node, uid, start time, restart count), and a 4th peer joining
// takes pods (make-before-break: every pod keeps a Ready copy throughout)
// and moves no other pod. Placement guarantees the scale; for the join it
// guarantees that replicas in no group move only onto the newcomer, while a
// deployment's replicas, which spread, may also shift between old peers (a
// vacancy chain, see placement's documentation). The names are chosen: with
// peers g1-g4 and the deployment "front", placement by hash alone (before
// ordinals) moved a running pod on this scale, so the test fails without
// ordinals, and the join makes no vacancy chain, so any move between old
// peers here is a bug.
func TestScaleUpAndJoinMoveNoOtherPod(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	start := func(i int) *harness.Peer {
		var args []string
		if i > 1 {
			args = append(args, "--join", "127.0.0.247")
		}
		p := harness.NewPeer(t, bin, fmt.Sprintf("g%d", i), fmt.Sprintf("127.0.0.%d", 246+i), args...)
		p.Start()
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var peers []*harness.Peer
	for i := 1; i <= 3; i++ {
		peers = append(peers, start(i))
	}
	waitNodes(t, peers[0], map[string]string{"g1": "Alive", "g2": "Alive", "g3": "Alive"})
	k := kubectlFor(t, peers[1])
	kubectlApply(t)(k, harness.WebDeployment("front", 3))
	three := waitLives(t, k, 3, "3 replicas Ready")
	nodes := map[string]bool{}
	for _, l := range three {
		nodes[l.node] = true
	}
	if len(nodes) != 3 {
		t.Errorf("3 replicas on 3 peers use %d peers: %v", len(nodes), three)
	}

	// Scale up with kubectl: the 3 running pods go on running.
	names := func(m map[string]podLife) []string {
		var out []string
		for n := range m {
			out = append(out, n)
		}
		sort.Strings(out)
		return out
	}
	stop := make(chan struct{})
	watch := watchCopies(peers[2], names(three), stop)
	kubectlMust(t)(k("scale", "deployment", "front", "--replicas=5"))
	five := waitLives(t, k, 5, "5 replicas Ready after the scale")
	close(stop)
	if w := <-watch; !strings.HasPrefix(w, "|") {
		t.Errorf("during the scale: %s", w)
	}
	for name, was := range three {
		if now, ok := five[name]; !ok || now != was {
			t.Errorf("scale 3 -> 5 disturbed %s: was %+v, now %+v (present %v)", name, was, now, ok)
		}
	}
	t.Logf("after the scale: %v", five)

	// A 4th peer joins: it takes pods, each Ready there before its old
	// copy stops, and no pod moves between the old peers.
	stop = make(chan struct{})
	watch = watchCopies(peers[0], names(five), stop)
	g4 := start(4)
	waitNodes(t, peers[0], map[string]string{"g1": "Alive", "g2": "Alive", "g3": "Alive", "g4": "Alive"})
	harness.Eventually(t, 90*time.Second, "g4 runs a Ready pod", func() (bool, string) {
		lives, _ := podLives(t, k)
		for _, l := range lives {
			if l.node == g4.Name {
				return true, ""
			}
		}
		return false, fmt.Sprint(lives)
	})
	time.Sleep(5 * time.Second) // the moves' old copies stop once the new ones are Ready
	after := waitLives(t, k, 5, "5 replicas Ready after the join")
	close(stop)
	w := <-watch
	if broken, _, _ := strings.Cut(w, "|"); broken != "" {
		t.Errorf("during the join (make-before-break): %s", broken)
	}
	moved := 0
	for name, was := range five {
		now, ok := after[name]
		switch {
		case !ok:
			t.Errorf("%s is gone after the join", name)
		case now.node == was.node && now != was:
			t.Errorf("%s stayed on %s but was restarted: was %+v, now %+v", name, was.node, was, now)
		case now.node != was.node && now.node != g4.Name:
			t.Errorf("%s moved from %s to %s, not to the joining %s", name, was.node, now.node, g4.Name)
		case now.node != was.node:
			moved++
		}
	}
	t.Logf("after the join: %v (%d moved to %s; lowest Ready count sampled %s of 5)", after, moved, g4.Name, w[strings.Index(w, "|")+1:])
}
