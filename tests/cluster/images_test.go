package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

func webDeployment(name string, replicas int) string { return harness.WebDeployment(name, replicas) }

// readyOn returns node -> Ready replicas of deployment name, as p sees them.
func readyOnNodes(p *harness.Peer, name string) map[string]int {
	pods, _ := p.Pods("default")
	out := map[string]int{}
	for _, pod := range pods {
		if strings.HasPrefix(pod.Metadata.Name, name+"-") && harness.IsReady(&pod) {
			out[pod.Spec.NodeName]++
		}
	}
	return out
}

func TestImageLoadedOnceRunsEverywhere(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), filepath.Join(os.TempDir(), "chorus-test-images"))
	if err != nil {
		t.Fatal(err)
	}
	peers := startCluster(t, 3, 81, "i")
	// Loaded on i1 only; known cluster-wide by name and digest.
	if _, err := peers[0].CLI("image", "load", imgs["web"]); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 20*time.Second, "the image listed on i3", func() (bool, string) {
		out, _ := peers[2].CLI("image", "ls")
		return strings.Contains(out, "docker.io/example/web:1"), out
	})
	if _, err := peers[0].CLI("apply", "-f", manifest(t, webDeployment("web", 6))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "6 replicas Ready on the three peers", func() (bool, string) {
		on := readyOnNodes(peers[0], "web")
		total := 0
		for _, n := range on {
			total += n
		}
		return total == 6 && len(on) == 3, fmt.Sprint(on)
	})
	for _, p := range peers[1:] {
		if !strings.Contains(p.Log(), "image fetched from peers") {
			t.Errorf("%s did not fetch the image from its peers:\n%s", p.Name, p.Log())
		}
	}
	harness.Eventually(t, 20*time.Second, "three peers hold the image", func() (bool, string) {
		out, _ := peers[1].CLI("image", "ls")
		return regexp.MustCompile(`docker.io/example/web:1\s+\S+\s+\S+\s+3\b`).MatchString(out), out
	})
}

func TestCorruptTransferRetriedAndLateJoiner(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), filepath.Join(os.TempDir(), "chorus-test-images"))
	if err != nil {
		t.Fatal(err)
	}
	good := harness.NewPeer(t, bin, "j1", "127.0.0.85")
	bad := harness.NewPeer(t, bin, "j2", "127.0.0.86", "--join", "127.0.0.85", "--fault-corrupt-blobs")
	late := harness.NewPeer(t, bin, "j3", "127.0.0.87", "--join", "127.0.0.85")
	good.Start()
	bad.Start()
	for _, p := range []*harness.Peer{good, bad} {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	waitNodes(t, good, map[string]string{"j1": "Alive", "j2": "Alive"})
	if _, err := good.CLI("apply", "-f", manifest(t, webDeployment("web", 2))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "2 replicas Ready", func() (bool, string) {
		on := readyOnNodes(good, "web")
		return on["j1"]+on["j2"] == 2, fmt.Sprint(on)
	})
	// A peer joins later and gets a replica: it fetches the image, part of
	// it from a peer that sends corrupted blobs.
	late.Start()
	// Every peer knows every other (a peer serves blobs to members only).
	for _, p := range []*harness.Peer{good, bad, late} {
		waitNodes(t, p, map[string]string{"j1": "Alive", "j2": "Alive", "j3": "Alive"})
	}
	if _, err := good.CLI("scale", "deployment", "web", "--replicas=3"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "a Ready replica on the late peer", func() (bool, string) {
		on := readyOnNodes(good, "web")
		return on["j3"] == 1, fmt.Sprint(on)
	})
	log := late.Log()
	if !strings.Contains(log, "image fetched from peers") {
		t.Fatalf("j3 did not fetch the image from its peers:\n%s", log)
	}
	t.Logf("j3 log about images:\n%s", grepLines(log, "blob", "image fetched"))
	if !strings.Contains(log, "digest mismatch") {
		t.Fatalf("j3 never met the corrupted transfer (no digest mismatch in its log):\n%s", log)
	}
}

// grepLines returns the lines of s containing any of words.
func grepLines(s string, words ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
