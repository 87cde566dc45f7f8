package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// startRegistry runs Debian's docker-registry on addr with its storage in
// a temp dir, until stopped.
func startRegistry(t *testing.T, addr string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry is not installed: run `make deps`")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	conf := fmt.Sprintf("version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: %s}\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfg)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	harness.Eventually(t, 20*time.Second, "registry answers", func() (bool, string) {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false, err.Error() + out.String()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return stop
}

func TestPullFromRegistryThenShare(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	const reg = "127.0.0.1:5055"
	stop := startRegistry(t, reg)
	img, err := tarball.ImageFromPath(imgs["web"], nil)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg+"/example/web:1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push to the test registry: %v", err)
	}

	r1 := harness.NewPeer(t, bin, "r1", "127.0.0.88")
	r2 := harness.NewPeer(t, bin, "r2", "127.0.0.89", "--join", "127.0.0.88")
	r1.Start()
	r2.Start()
	waitNodes(t, r1, map[string]string{"r1": "Alive", "r2": "Alive"})
	app := func(node string) string {
		d := strings.Replace(webDeployment("reg", 1), "image: example/web:1", "image: "+reg+"/example/web:1", 1)
		return strings.Replace(d, "    spec:\n      containers:", "    spec:\n      nodeSelector: {kubernetes.io/hostname: "+node+"}\n      containers:", 1)
	}
	if _, err := r1.CLI("apply", "-f", manifest(t, app("r1"))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "the replica pulled from the registry and Ready on r1", func() (bool, string) {
		on := readyOnNodes(r1, "reg")
		return on["r1"] == 1, fmt.Sprint(on)
	})
	// The registry goes away; a replica on r2 gets the image from r1.
	stop()
	if _, err := r1.CLI("apply", "-f", manifest(t, app("r2"))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 90*time.Second, "the replica Ready on r2 without the registry", func() (bool, string) {
		on := readyOnNodes(r1, "reg")
		return on["r2"] == 1, fmt.Sprint(on)
	})
	if !strings.Contains(r2.Log(), "image fetched from peers") {
		t.Fatalf("r2 did not get the image from r1:\n%s", r2.Log())
	}
}
