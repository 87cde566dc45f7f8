package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// checkImage asserts the config and the layer of a built image and returns
// the bytes of its /app.
func checkImage(t *testing.T, img v1.Image) []byte {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/app"}) {
		t.Errorf("entrypoint = %q, want [/app]", cfg.Config.Entrypoint)
	}
	if !slices.Equal(cfg.Config.Env, []string{"PATH=/"}) {
		t.Errorf("env = %q, want [PATH=/]", cfg.Config.Env)
	}
	if cfg.OS != "linux" || cfg.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s, want linux/%s", cfg.OS, cfg.Architecture, runtime.GOARCH)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var app []byte
	var tmpMode int64
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "app":
			if h.Typeflag != tar.TypeReg || h.Mode != 0o755 {
				t.Errorf("app: type %c mode %o, want a regular file 755", h.Typeflag, h.Mode)
			}
			if app, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		case "tmp/":
			tmpMode = h.Mode
		}
	}
	if !bytes.HasPrefix(app, []byte("\x7fELF")) {
		t.Fatalf("layer has no /app executable (%d bytes)", len(app))
	}
	if tmpMode != 0o1777 {
		t.Errorf("tmp/ mode = %o, want 1777", tmpMode)
	}
	return app
}

// loadDocker reads the image tagged tag from a docker archive.
func loadDocker(t *testing.T, path, tag string) v1.Image {
	t.Helper()
	ref, err := gname.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("load %s from %s: %v", tag, path, err)
	}
	return img
}

func TestBuildDocker(t *testing.T) {
	for _, prog := range Programs {
		t.Run(prog, func(t *testing.T) {
			path, err := Build(context.Background(), prog, t.TempDir(), nil, FormatDocker)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(path) != prog+"-1.tar" {
				t.Errorf("path = %s, want %s-1.tar", path, prog)
			}
			m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
			if err != nil {
				t.Fatal(err)
			}
			if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{DefaultTag(prog)}) {
				t.Fatalf("manifest = %+v, want one image tagged %s", m, DefaultTag(prog))
			}
			checkImage(t, loadDocker(t, path, DefaultTag(prog)))
		})
	}
}

func TestBuildDockerTags(t *testing.T) {
	tags := []string{"example/web:2", "example/web:latest"}
	path, err := Build(context.Background(), "web", t.TempDir(), tags, FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "web-2.tar" {
		t.Errorf("path = %s, want web-2.tar", path)
	}
	for _, tag := range tags {
		checkImage(t, loadDocker(t, path, tag))
	}
}

func TestBuildOCI(t *testing.T) {
	tags := []string{"example/web:2", "localhost:5000/team/web:v3"}
	path, err := Build(context.Background(), "web", t.TempDir(), tags, FormatOCI)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "web-2.oci.tar" {
		t.Errorf("path = %s, want web-2.oci.tar", path)
	}
	dir := t.TempDir()
	untar(t, path, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"docker.io/example/web:2": "2", "localhost:5000/team/web:v3": "v3"}
	if len(im.Manifests) != len(want) {
		t.Fatalf("%d index entries, want %d", len(im.Manifests), len(want))
	}
	for _, desc := range im.Manifests {
		full := desc.Annotations[AnnotationImageName]
		if ref, ok := want[full]; !ok || desc.Annotations[AnnotationRefName] != ref {
			t.Errorf("index entry annotations %v, want one of %v", desc.Annotations, want)
		}
		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("media type %s, want %s", desc.MediaType, types.OCIManifestSchema1)
		}
		if desc.Platform == nil || desc.Platform.OS != "linux" || desc.Platform.Architecture != runtime.GOARCH {
			t.Errorf("platform = %v", desc.Platform)
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, img)
	}
}

func TestBuildAllCache(t *testing.T) {
	ctx, dir := context.Background(), t.TempDir()
	paths, err := BuildAll(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("BuildAll = %v, want 3 archives", paths)
	}
	for prog, path := range paths {
		loadDocker(t, path, "example/"+prog+":1")
	}

	// A fresh archive is kept; a stale one (older than its sources) is rebuilt.
	old := time.Unix(1000, 0)
	if err := os.Chtimes(paths["crash"], old, old); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(paths["web"])
	if _, err := BuildAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(paths["web"]); !after.ModTime().Equal(before.ModTime()) {
		t.Error("web archive was rebuilt although up to date")
	}
	if st, _ := os.Stat(paths["crash"]); !st.ModTime().After(old) {
		t.Error("stale crash archive was not rebuilt")
	}
}

func TestBuildErrors(t *testing.T) {
	ctx := context.Background()
	for _, prog := range []string{"nope", "cmd", "../images", ""} {
		if _, err := Build(ctx, prog, t.TempDir(), nil, FormatDocker); err == nil {
			t.Errorf("Build(%q) succeeded", prog)
		}
	}
	if _, err := Build(ctx, "crash", t.TempDir(), []string{"Bad Tag!"}, FormatDocker); err == nil {
		t.Error("Build with a bad tag succeeded")
	}
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			err = os.MkdirAll(p, 0o755)
		} else {
			var data []byte
			if data, err = io.ReadAll(tr); err == nil {
				err = os.WriteFile(p, data, 0o644)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// binary builds the image of prog and returns its /app, extracted to a file.
func binary(t *testing.T, prog string) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the images hold linux binaries")
	}
	path, err := Build(context.Background(), prog, t.TempDir(), nil, FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), prog)
	if err := os.WriteFile(bin, checkImage(t, loadDocker(t, path, DefaultTag(prog))), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for a process to write while a test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestWebBinary(t *testing.T) {
	bin := binary(t, "web")
	port := freePort(t)
	var out syncBuffer
	cmd := exec.Command(bin)
	cmd.Env = []string{fmt.Sprintf("PORT=%d", port), "POD_NAME=web-abc12"}
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	listening := fmt.Sprintf("listening on :%d\n", port)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), listening); {
		if time.Now().After(deadline) {
			t.Fatalf("no %q line; output:\n%s", listening, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string, wantCode int, wantBody string) {
		t.Helper()
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantCode || !strings.Contains(string(body), wantBody) {
			t.Errorf("GET %s = %d %q, want %d with %q", path, resp.StatusCode, body, wantCode, wantBody)
		}
	}
	get("/", 200, "hello from web-abc12\n")
	get("/nope", 404, "")
	get("/env", 200, "POD_NAME=web-abc12\n")
	get("/healthz", 200, "ok")
	get("/fail", 200, "")
	get("/healthz", 500, "")
	get("/healthz", 500, "")
	get("/ready", 200, "ready")
	get("/toggle-ready", 200, "ready=false")
	get("/ready", 503, "")
	get("/toggle-ready", 200, "ready=true")
	get("/ready", 200, "ready")
	for _, line := range []string{"GET / 200\n", "GET /healthz 500\n", "GET /ready 503\n"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("log has no %q line:\n%s", line, out.String())
		}
	}

	get("/exit?code=7", 200, "exiting with 7")
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 7 {
			t.Errorf("web exited with %v, want code 7", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("web did not exit after /exit?code=7")
	}
}

func TestCrashBinary(t *testing.T) {
	cmd := exec.Command(binary(t, "crash"))
	cmd.Env = []string{"CODE=3", "SLEEP=0.1"}
	start := time.Now()
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("crash exited with %v, want code 3", err)
	}
	if string(out) != "starting\nexiting with 3\n" {
		t.Errorf("output = %q", out)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("crash exited after %v, before its 0.1 s sleep", d)
	}
}

func TestBurnBinary(t *testing.T) {
	cmd := exec.Command(binary(t, "burn"))
	cmd.Env = []string{"THREADS=2", "SECONDS=1"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("burn: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "burning: 1s elapsed") || !strings.HasSuffix(string(out), "done\n") {
		t.Errorf("output = %q", out)
	}
}
