package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"

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
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
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
		return regexp.MustCompile(`docker.io/example/web:1\s+\S+\s+\S+\s+\S+\s+3\b`).MatchString(out), out
	})
}

func TestCorruptTransferRetriedAndLateJoiner(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	good := harness.NewPeer(t, bin, "j1", "127.0.0.85")
	bad := harness.NewPeer(t, bin, "j2", "127.0.0.86", "--join", "127.0.0.85")
	late := harness.NewPeer(t, bin, "j3", "127.0.0.87", "--join", "127.0.0.85")
	good.Start()
	bad.Start()
	for _, p := range []*harness.Peer{good, bad} {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	// The second peer's disk rots: a byte of each layer it stores flips,
	// so it serves blobs whose bytes no longer match their digests.
	if n := rotBlobs(t, bad.DataDir); n == 0 {
		t.Fatalf("no layer blob found to corrupt under %s", bad.DataDir)
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

// rotBlobs flips one byte in the middle of every blob larger than 64 KiB
// (the layers) in the content store of the containerd a peer started
// under its data dir, as a failing disk would, and returns how many.
func rotBlobs(t *testing.T, dataDir string) int {
	t.Helper()
	dir := filepath.Join(dataDir, "containerd", "io.containerd.content.v1.content", "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("content store of %s: %v", dataDir, err)
	}
	n := 0
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || info.Size() <= 64<<10 {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		off := info.Size() / 2
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
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

// clusterImages returns the images p lists, by reference.
func clusterImages(p *harness.Peer) map[string]api.Image {
	var out api.ImageList
	if err := p.GetJSON(api.PathChorusV1+"/images", &out); err != nil {
		return nil
	}
	m := map[string]api.Image{}
	for _, i := range out.Items {
		m[i.Reference] = i
	}
	return m
}

// dirSize returns the bytes of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // files come and go under a running containerd
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Image limits, removal, collection and reloading through real peers: a
// decompression bomb is refused by the peer it is loaded on and by a peer
// that would fetch it from another, leaving nothing behind; a tag loaded
// again with new content reaches the peer holding the old; `image rm` is
// refused while a pod uses the image; an unused copy is collected while
// the first holder keeps the cluster's last one.
func TestImageLimitsRemovalAndReload(t *testing.T) {
	ctx := context.Background()
	imgs, err := images.BuildAll(ctx, images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	const limit = 64 << 20
	bomb, err := images.ZeroBomb(2 * limit)
	if err != nil {
		t.Fatal(err)
	}
	bombTar := filepath.Join(t.TempDir(), "bomb.tar")
	f, err := os.Create(bombTar)
	if err != nil {
		t.Fatal(err)
	}
	if err := images.WriteDocker(f, bomb, "example/bomb:1"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	webOCI, err := images.Build(ctx, "web", t.TempDir(), []string{"example/web:1"}, images.FormatOCI)
	if err != nil {
		t.Fatal(err)
	}

	// k1 takes any expansion (it must hold the bomb for k2 to fetch it).
	k1 := harness.NewPeer(t, bin, "k1", "127.0.0.161", "--image-gc-after=3s", "--max-image-expansion=0")
	k2 := harness.NewPeer(t, bin, "k2", "127.0.0.162", "--join", "127.0.0.161", "--image-gc-after=3s", "--max-image-size=64Mi")
	k1.Start()
	k2.Start()
	waitNodes(t, k1, map[string]string{"k1": "Alive", "k2": "Alive"})
	waitNodes(t, k2, map[string]string{"k1": "Alive", "k2": "Alive"})

	// The bomb, loaded on k2: refused with the limit named, nothing kept,
	// and k2 serves on.
	before := dirSize(t, filepath.Join(k2.DataDir, "containerd"))
	start := time.Now()
	out, err := k2.CLI("image", "load", bombTar)
	want := fmt.Sprintf("Error from server (RequestEntityTooLarge): image docker.io/example/bomb:1: unpacked size exceeds the limit of %d bytes (--max-image-size)", limit)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("bomb load: %q, %v; want %q", out, err, want)
	}
	t.Logf("bomb (%d bytes of zeros) refused in %v", 2*limit, time.Since(start).Round(time.Millisecond))
	if grown := dirSize(t, filepath.Join(k2.DataDir, "containerd")) - before; grown > 4<<20 {
		t.Errorf("k2's containerd grew by %d bytes with the refused bomb", grown)
	}
	if out, err := k2.CLI("image", "ls"); err != nil || out != "" {
		t.Fatalf("image ls on k2 after the refused bomb: %q %v", out, err)
	}

	// example/web:1 on k1, run on both peers.
	if _, err := k1.CLI("image", "load", imgs["web"]); err != nil {
		t.Fatal(err)
	}
	if _, err := k1.CLI("apply", "-f", manifest(t, webDeployment("web", 2))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "web Ready on k1 and k2", func() (bool, string) {
		on := readyOnNodes(k1, "web")
		return on["k1"] == 1 && on["k2"] == 1, fmt.Sprint(on)
	})
	old := clusterImages(k1)["docker.io/example/web:1"]
	if old.Peers != 2 || old.Unpacked == 0 {
		harness.Eventually(t, 20*time.Second, "web held by both peers", func() (bool, string) {
			old = clusterImages(k1)["docker.io/example/web:1"]
			return old.Peers == 2 && old.Unpacked > 0, fmt.Sprintf("%+v", old)
		})
	}
	if out, _ := k1.CLI("image", "ls"); !regexp.MustCompile(`(?m)^NAME\s+DIGEST\s+SIZE\s+UNPACKED\s+PEERS$`).MatchString(out) {
		t.Errorf("image ls header:\n%s", out)
	}

	// New content under the same tag, loaded on k1, reaches k2.
	if _, err := k1.CLI("image", "load", webOCI); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "k2 holds the new content of example/web:1", func() (bool, string) {
		cur := clusterImages(k2)["docker.io/example/web:1"]
		return cur.Digest != old.Digest && cur.Peers == 2, fmt.Sprintf("was %s, now %+v", old.Digest, cur)
	})
	if !strings.Contains(k2.Log(), "image has newer content on other peers") {
		t.Errorf("k2 did not log the refresh:\n%s", grepLines(k2.Log(), "image"))
	}

	// Removal is refused while a pod uses the image; bad names are refused.
	if out, err := k2.CLI("image", "rm", "example/web:1"); err == nil || !strings.Contains(err.Error(), "is used by pod default/web-") {
		t.Fatalf("rm of an image in use: %q %v", out, err)
	}
	if out, err := k2.CLI("image", "rm", "Example/Web:1"); err == nil || !strings.Contains(err.Error(), "invalid reference format") {
		t.Fatalf("rm of a bad name: %q %v", out, err)
	}

	// Unused, k2's copy is collected; k1, the first holder by name, keeps
	// the cluster's last copy, and prune leaves it too.
	if _, err := k1.CLI("delete", "deployment", "web"); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "k2's unused copy collected", func() (bool, string) {
		cur := clusterImages(k1)["docker.io/example/web:1"]
		return cur.Peers == 1 && strings.Contains(k2.Log(), "image removed"), fmt.Sprintf("%+v", cur)
	})
	time.Sleep(8 * time.Second) // two more collection rounds on k1
	if out, err := k1.CLI("image", "prune"); err != nil || out != "no image to remove on peer k1\n" {
		t.Fatalf("prune of the last copy: %q %v", out, err)
	}
	if cur := clusterImages(k1)["docker.io/example/web:1"]; cur.Peers != 1 {
		t.Fatalf("the last copy is gone: %+v", cur)
	}

	// The same limit holds for an image fetched from another peer: k1
	// (default size limit, no expansion bound) holds the bomb; a replica
	// placed on k2 cannot fetch it.
	if _, err := k1.CLI("image", "load", bombTar); err != nil {
		t.Fatal(err)
	}
	bombDeploy := strings.ReplaceAll(webDeployment("bomb", 2), "image: example/web:1", "image: example/bomb:1")
	if _, err := k1.CLI("apply", "-f", manifest(t, bombDeploy)); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 60*time.Second, "the bomb refused by k2", func() (bool, string) {
		pods, _ := k1.Pods("default")
		for _, p := range pods {
			if p.Spec.NodeName != "k2" || !strings.HasPrefix(p.Metadata.Name, "bomb-") {
				continue
			}
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && strings.Contains(w.Message, fmt.Sprintf("unpacked size exceeds the limit of %d bytes (--max-image-size)", limit)) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", p.Status)
		}
		return false, "no bomb pod on k2"
	})
	if cur := clusterImages(k2)["docker.io/example/bomb:1"]; cur.Peers != 1 {
		t.Fatalf("the bomb is held by %d peers, want 1 (k1)", cur.Peers)
	}
	// k1 runs a bomb pod (it cannot start: no command): rm needs --force.
	if _, err := k1.CLI("image", "rm", "example/bomb:1"); err == nil {
		t.Fatal("rm of an image a pod uses: no error")
	}
	if out, err := k1.CLI("image", "rm", "--force", "example/bomb:1", "example/web:1"); err != nil ||
		out != "image docker.io/example/bomb:1 removed from peer k1\nimage docker.io/example/web:1 removed from peer k1\n" {
		t.Fatalf("rm --force: %q %v", out, err)
	}
	harness.Eventually(t, 20*time.Second, "no image left", func() (bool, string) {
		out, err := k2.CLI("image", "ls")
		return err == nil && out == "", out
	})
	for _, p := range []*harness.Peer{k1, k2} {
		if out, err := p.CLI("get", "nodes"); err != nil {
			t.Fatalf("%s after the bombs: %q %v", p.Name, out, err)
		}
	}
}

// TestBigImageRelayed: a 30 MB image loaded on one of three peers, wanted
// by the two others at once (a DaemonSet), reaches both, and its chunks
// went along a chain: the holder sent some askers on to the peer that got
// a chunk before them, which served it from the blob it was still
// fetching.
func TestBigImageRelayed(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	archive := bigImage(t, imgs["web"], 30<<20)
	peers := []*harness.Peer{harness.NewPeer(t, bin, "r1", "127.0.0.64")}
	for i := 2; i <= 3; i++ {
		peers = append(peers, harness.NewPeer(t, bin, fmt.Sprintf("r%d", i), fmt.Sprintf("127.0.0.%d", 63+i), "--join", "127.0.0.64"))
	}
	for _, p := range peers {
		p.Start()
	}
	waitNodes(t, peers[0], map[string]string{"r1": "Alive", "r2": "Alive", "r3": "Alive"})
	if _, err := peers[0].CLI("image", "load", archive); err != nil {
		t.Fatal(err)
	}
	if _, err := peers[0].CLI("apply", "-f", manifest(t, bigDaemonSet)); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 120*time.Second, "three peers hold example/big:1", func() (bool, string) {
		out, _ := peers[0].CLI("image", "ls")
		return imageHolders(out, "docker.io/example/big:1") == 3, out
	})
	metric := func(p *harness.Peer, name string) float64 {
		t.Helper()
		_, _, body := httpStatus(t, p, "/metrics", "Bearer "+p.Token)
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics of %s has no %s", p.Name, name)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	redirected := metric(peers[0], "chorus_image_chunks_redirected_total")
	// A peer sent on serves the chunk from the blob it is fetching, or
	// from its store if it already finished.
	relayed, served := 0.0, 0.0
	for _, p := range peers[1:] {
		relayed += metric(p, "chorus_image_chunks_relayed_total")
		served += metric(p, "chorus_image_blobs_served_total")
	}
	t.Logf("the holder sent %v chunk requests on; the two others relayed %v chunks being fetched and served %v", redirected, relayed, served)
	if redirected == 0 || relayed+served == 0 {
		t.Fatalf("no chunk went along a chain: %v redirected by the holder, %v relayed, %v served by the others", redirected, relayed, served)
	}
}
