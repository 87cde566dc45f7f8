package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	testimages "github.com/chorus-sh/chorus/tests/images"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// newRigNet is newRig with a pod subnet of its own, so that two rigs can
// run pods at the same time.
func newRigNet(t *testing.T, name, subnet string) *rig {
	requireEnv(t)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "chorus-rt-")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.Default()
	}
	bridge := "chrt" + name
	d, err := StartDaemon(ctx, dir, log)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := NewCNINetwork(NetworkConfig{Name: "chorus-rt-" + name, Bridge: bridge, Subnet: subnet, StateDir: filepath.Join(dir, "network")})
	if err != nil {
		t.Fatal(err)
	}
	ctd, err := NewContainerd(ctx, d.Address, "rt-"+name, nw)
	if err != nil {
		t.Fatal(err)
	}
	pm := NewPodManager(ctd, Options{Node: "rt", HostIP: "127.0.0.1", StateDir: filepath.Join(dir, "pods"), Log: log, BackoffBase: 200 * time.Millisecond})
	if err := pm.Start(ctx); err != nil {
		t.Fatal(err)
	}
	r := &rig{ctd: ctd, pm: pm, dir: dir}
	t.Cleanup(func() {
		r.pm.Sync(nil)
		deadline := time.Now().Add(30 * time.Second)
		for len(r.pm.Pods()) > 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := len(r.pm.Pods()); n > 0 {
			t.Errorf("%d pods not removed after 30s", n)
		}
		r.pm.Close()
		ctd.Close()
		d.Stop()
		if err := Purge(context.Background(), dir, "", "rt-"+name, bridge, log); err != nil {
			t.Errorf("purge: %v", err)
		}
	})
	return r
}

// blobReader reads a blob from a Containerd in chunks through ReadBlob, as
// a peer serving it over the network would.
type blobReader struct {
	ctx   context.Context
	src   *Containerd
	blob  Blob
	off   int64
	chunk int64
	buf   []byte
	reads int
}

func (r *blobReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		if r.off >= r.blob.Size {
			return 0, io.EOF
		}
		b, err := r.src.ReadBlob(r.ctx, r.blob.Digest, r.off, r.chunk)
		if err != nil {
			return 0, err
		}
		if len(b) == 0 {
			return 0, io.ErrUnexpectedEOF
		}
		r.reads++
		r.off += int64(len(b))
		r.buf = b
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func TestImageTransfer(t *testing.T) {
	ctx := context.Background()
	a := newRig(t, "imga")
	a.loadImage(t, "web")

	m, err := a.ctd.ExportManifest(ctx, "example/web:1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "docker.io/example/web:1" {
		t.Fatalf("name %q", m.Name)
	}
	if len(m.Blobs) < 3 || m.Blobs[len(m.Blobs)-1] != m.Target {
		t.Fatalf("want the children then the target %+v, got %+v", m.Target, m.Blobs)
	}
	kinds := map[string]int{}
	var layer Blob
	for _, b := range m.Blobs {
		switch {
		case images.IsManifestType(b.MediaType):
			kinds["manifest"]++
		case images.IsConfigType(b.MediaType):
			kinds["config"]++
		case images.IsLayerType(b.MediaType):
			kinds["layer"]++
			if b.Size > layer.Size {
				layer = b
			}
		}
		data, err := a.ctd.ReadBlob(ctx, b.Digest, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != b.Size || digest.FromBytes(data).String() != b.Digest {
			t.Fatalf("blob %+v: read %d bytes with digest %s", b, len(data), digest.FromBytes(data))
		}
	}
	if kinds["manifest"] != 1 || kinds["config"] != 1 || kinds["layer"] < 1 {
		t.Fatalf("blob kinds %v in %+v", kinds, m.Blobs)
	}
	// Ranged reads.
	if part, err := a.ctd.ReadBlob(ctx, layer.Digest, 10, 5); err != nil || len(part) != 5 {
		t.Fatalf("ranged read: %d bytes, %v", len(part), err)
	}
	if _, err := a.ctd.ReadBlob(ctx, layer.Digest, layer.Size+1, 0); err == nil {
		t.Fatal("read past the end: no error")
	}
	if _, err := a.ctd.ReadBlob(ctx, digest.FromString("nope").String(), 0, 0); err == nil {
		t.Fatal("read of a missing blob: no error")
	}

	b := newRigNet(t, "imgb", "10.87.2.0/24")
	if ok, _ := b.ctd.HasImage(ctx, m.Name); ok {
		t.Fatal("B has the image before the transfer")
	}
	if err := b.ctd.CommitImage(ctx, m); err == nil {
		t.Fatal("commit without the blobs: no error")
	}

	// Corrupted, truncated and overlong data is refused and not stored.
	data, err := a.ctd.ReadBlob(ctx, layer.Digest, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0x40
	for what, bad := range map[string][]byte{
		"corrupted": flipped,
		"truncated": data[:len(data)-1],
		"overlong":  append(append([]byte(nil), data...), 0),
	} {
		err := b.ctd.WriteBlob(ctx, layer, bytes.NewReader(bad))
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("%s blob: err %v, want ErrDigestMismatch", what, err)
		}
		if ok, err := b.ctd.HasBlob(ctx, layer.Digest); ok || err != nil {
			t.Fatalf("%s blob: HasBlob %v %v", what, ok, err)
		}
	}
	readErr := errors.New("connection lost")
	if err := b.ctd.WriteBlob(ctx, layer, io.MultiReader(bytes.NewReader(data[:100]), errReader{readErr})); !errors.Is(err, readErr) {
		t.Fatalf("failing reader: err %v", err)
	}

	// Copy every blob in 1 MiB chunks.
	chunked := false
	for _, bl := range m.Blobs {
		if ok, err := b.ctd.HasBlob(ctx, bl.Digest); err != nil || ok {
			t.Fatalf("B holds %s before the copy: %v %v", bl.Digest, ok, err)
		}
		br := &blobReader{ctx: ctx, src: a.ctd, blob: bl, chunk: 1 << 20}
		if err := b.ctd.WriteBlob(ctx, bl, br); err != nil {
			t.Fatalf("write %+v: %v", bl, err)
		}
		chunked = chunked || br.reads > 1
		if ok, err := b.ctd.HasBlob(ctx, bl.Digest); !ok || err != nil {
			t.Fatalf("B lacks %s after writing it: %v", bl.Digest, err)
		}
	}
	if layer.Size > 1<<20 && !chunked {
		t.Fatal("no blob was read in more than one chunk")
	}
	// Writing a blob again is a no-op.
	if err := b.ctd.WriteBlob(ctx, layer, bytes.NewReader(nil)); err != nil {
		t.Fatalf("rewrite of a held blob: %v", err)
	}
	ls := b.ctd.client.LeasesService()
	xfer := func() int {
		all, err := ls.List(b.ctd.ctx(ctx))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range all {
			if strings.HasPrefix(l.ID, "chorus-xfer-") {
				n++
			}
		}
		return n
	}
	if n := xfer(); n != len(m.Blobs) {
		t.Fatalf("%d transfer leases before the commit, want one per blob (%d)", n, len(m.Blobs))
	}

	// Garbage collection spares the leased blobs (a blob written without a
	// lease shows that it ran).
	bctx := b.ctd.ctx(ctx)
	loose := []byte("unreferenced")
	looseDesc := ocispec.Descriptor{Digest: digest.FromBytes(loose), Size: int64(len(loose))}
	if err := content.WriteBlob(bctx, b.ctd.client.ContentStore(), "loose", bytes.NewReader(loose), looseDesc); err != nil {
		t.Fatal(err)
	}
	collect := func() {
		t.Helper()
		l, err := ls.Create(bctx, leases.WithRandomID())
		if err != nil {
			t.Fatal(err)
		}
		if err := ls.Delete(bctx, l, leases.SynchronousDelete); err != nil {
			t.Fatal(err)
		}
	}
	collect()
	if ok, _ := b.ctd.HasBlob(ctx, looseDesc.Digest.String()); ok {
		t.Fatal("garbage collection did not run: the unreferenced blob is still there")
	}
	for _, bl := range m.Blobs {
		if ok, err := b.ctd.HasBlob(ctx, bl.Digest); !ok || err != nil {
			t.Fatalf("garbage collection removed leased blob %s: %v", bl.Digest, err)
		}
	}

	if err := b.ctd.CommitImage(ctx, m); err != nil {
		t.Fatal(err)
	}
	collect()
	for _, bl := range m.Blobs {
		if ok, err := b.ctd.HasBlob(ctx, bl.Digest); !ok || err != nil {
			t.Fatalf("garbage collection removed blob %s of the committed image: %v", bl.Digest, err)
		}
	}
	if ok, err := b.ctd.HasImage(ctx, "docker.io/example/web:1"); !ok || err != nil {
		t.Fatalf("B HasImage: %v %v", ok, err)
	}
	if n := xfer(); n != 0 {
		t.Fatalf("%d transfer leases left after the commit", n)
	}
	info, err := b.ctd.client.ContentStore().Info(b.ctd.ctx(ctx), digest.Digest(m.Target.Digest))
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for k := range info.Labels {
		if strings.HasPrefix(k, "containerd.io/gc.ref.content.") {
			refs++
		}
	}
	if refs < 2 {
		t.Fatalf("target labels %v lack the GC child references", info.Labels)
	}
	// The image moved intact: B exports the same manifest.
	if mb, err := b.ctd.ExportManifest(ctx, m.Name); err != nil || fmt.Sprint(mb) != fmt.Sprint(m) {
		t.Fatalf("B exports %+v %v, want %+v", mb, err, m)
	}
	// Committing again is harmless.
	if err := b.ctd.CommitImage(ctx, m); err != nil {
		t.Fatal(err)
	}

	// A pod runs in B from the transferred image.
	b.pm.Sync([]api.Pod{webPod("web-t")})
	waitFor(t, 30*time.Second, "web-t ready", func() (bool, string) {
		p := b.pod(t, "web-t")
		ok := p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].Ready
		return ok, fmt.Sprintf("%+v", p.Status)
	})
	p := b.pod(t, "web-t")
	code, body, err := get("http://" + p.Status.PodIP + ":8080/")
	if err != nil || code != 200 || !strings.Contains(body, "web-t") {
		t.Fatalf("GET web-t: %d %q %v", code, body, err)
	}

	// An index with a manifest for another platform, absent here: only the
	// manifest for this platform is exported and needed.
	other := platforms.DefaultSpec()
	other.Architecture = map[bool]string{true: "amd64", false: "arm64"}[other.Architecture == "arm64"]
	here := platforms.DefaultSpec()
	mdesc, _ := m.Target.descriptor()
	mdesc.Platform = &here
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{
			{MediaType: mdesc.MediaType, Digest: digest.FromString("absent"), Size: 100, Platform: &other},
			mdesc,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ib := Blob{Digest: digest.FromBytes(idx).String(), Size: int64(len(idx)), MediaType: ocispec.MediaTypeImageIndex}
	if err := a.ctd.WriteBlob(ctx, ib, bytes.NewReader(idx)); err != nil {
		t.Fatal(err)
	}
	if err := a.ctd.CommitImage(ctx, ImageManifest{Name: "example/web:idx", Target: ib}); err != nil {
		t.Fatal(err)
	}
	mi, err := a.ctd.ExportManifest(ctx, "example/web:idx")
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append([]Blob{}, m.Blobs...), ib); fmt.Sprint(mi.Blobs) != fmt.Sprint(want) || mi.Target != ib {
		t.Fatalf("index export %+v, want blobs %+v", mi, want)
	}
	br := &blobReader{ctx: ctx, src: a.ctd, blob: ib, chunk: 1 << 20}
	if err := b.ctd.WriteBlob(ctx, ib, br); err != nil {
		t.Fatal(err)
	}
	if err := b.ctd.CommitImage(ctx, mi); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.ctd.HasImage(ctx, "docker.io/example/web:idx"); !ok || err != nil {
		t.Fatalf("B HasImage idx: %v %v", ok, err)
	}

	// An image beyond B's limit: its commit is refused, and its blobs are
	// released and collected.
	bomb, err := testimages.ZeroBomb(8 << 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadFile(ctx, a.ctd, dockerArchive(t, bomb, "example/bomb:1"), "s1"); err != nil {
		t.Fatal(err)
	}
	mb, err := a.ctd.ExportManifest(ctx, "example/bomb:1")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Loaded != "s1" {
		t.Fatalf("exported load version %q, want s1", mb.Loaded)
	}
	for _, bl := range mb.Blobs {
		if err := b.ctd.WriteBlob(ctx, bl, &blobReader{ctx: ctx, src: a.ctd, blob: bl, chunk: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	b.ctd.SetImageLimits(ImageLimits{MaxBytes: 4 << 20})
	if err := b.ctd.CommitImage(ctx, mb); !errors.Is(err, ErrImageTooLarge) {
		t.Fatalf("commit beyond the limit: %v", err)
	}
	if ok, _ := b.ctd.HasImage(ctx, "docker.io/example/bomb:1"); ok {
		t.Fatal("B holds the image refused")
	}
	for _, bl := range mb.Blobs {
		if ok, _ := b.ctd.HasBlob(ctx, bl.Digest); ok && bl.Digest != m.Target.Digest {
			t.Errorf("B keeps blob %s (%s) of the image refused", bl.Digest, bl.MediaType)
		}
	}
	if n := xfer(); n != 0 {
		t.Fatalf("%d transfer leases left after the refused commit", n)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// startRegistry runs Debian's docker-registry on a free localhost port and
// returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatal("docker-registry is not installed: run `make deps` (apt-get install docker-registry)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, 10*time.Second, "registry up", func() (bool, string) {
		code, _, err := get("http://" + addr + "/v2/")
		return err == nil && code == 200, fmt.Sprint(code, err, out.String())
	})
	return addr
}

func TestPull(t *testing.T) {
	ctx := context.Background()
	reg := startRegistry(t)
	a := newRig(t, "pulla")
	a.loadImage(t, "web")

	// Push example/web:1 from A to the registry.
	actx := a.ctd.ctx(ctx)
	img, err := a.ctd.client.GetImage(actx, "docker.io/example/web:1")
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/example/web:1"
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	if err := a.ctd.client.Push(actx, ref, img.Target(), containerd.WithResolver(resolver)); err != nil {
		t.Fatal(err)
	}

	b := newRigNet(t, "pullb", "10.87.2.0/24")
	got, err := b.ctd.Pull(ctx, ref, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != ref || got.Digest != img.Target().Digest.String() || got.Size == 0 || got.Unpacked < got.Size || got.Loaded != "v1" {
		t.Fatalf("pulled %+v, want %s at %s", got, ref, img.Target().Digest)
	}
	if ok, err := b.ctd.HasImage(ctx, ref); !ok || err != nil {
		t.Fatalf("HasImage after pull: %v %v", ok, err)
	}
	if _, err := b.ctd.Pull(ctx, reg+"/example/missing:1", ""); err == nil {
		t.Fatal("pull of a missing image: no error")
	}

	// A pull beyond the limit is refused before the layer is fetched and
	// leaves nothing behind.
	if err := b.ctd.RemoveImage(ctx, ref); err != nil {
		t.Fatal(err)
	}
	b.ctd.SetImageLimits(ImageLimits{MaxBytes: got.Size - 1})
	_, err = b.ctd.Pull(ctx, ref, "v2")
	if !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("compressed size exceeds the limit of %d bytes", got.Size-1)) {
		t.Fatalf("pull beyond the limit: %v", err)
	}
	b.requireClean(t)
}

// requireClean fails unless r's containerd holds no image, no lease, no
// snapshot and no content: what a failed load must leave.
func (r *rig) requireClean(t *testing.T) {
	t.Helper()
	ctx := r.ctd.ctx(context.Background())
	imgs, err := r.ctd.Images(ctx)
	if err != nil || len(imgs) != 0 {
		t.Errorf("images left: %+v %v", imgs, err)
	}
	ls, err := r.ctd.client.LeasesService().List(ctx)
	if err != nil || len(ls) != 0 {
		t.Errorf("leases left: %+v %v", ls, err)
	}
	var snaps []string
	err = r.ctd.client.SnapshotService(r.ctd.snapshotter).Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		snaps = append(snaps, i.Name)
		return nil
	})
	if err != nil || len(snaps) != 0 {
		t.Errorf("snapshots left: %v %v", snaps, err)
	}
	var blobs []string
	err = r.ctd.client.ContentStore().Walk(ctx, func(i content.Info) error {
		blobs = append(blobs, i.Digest.String())
		return nil
	})
	if err != nil || len(blobs) != 0 {
		t.Errorf("content left: %v %v", blobs, err)
	}
}

// dockerArchive writes img as a docker archive tagged tag and returns its path.
func dockerArchive(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "img.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := testimages.WriteDocker(f, img, tag); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadFile(ctx context.Context, c *Containerd, path, loaded string) ([]Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return c.LoadImages(ctx, f, loaded)
}

func TestImageLimits(t *testing.T) {
	ctx := context.Background()
	const limit = 32 << 20
	bomb, err := testimages.ZeroBomb(2 * limit)
	if err != nil {
		t.Fatal(err)
	}
	bombTar := dockerArchive(t, bomb, "example/bomb:1")
	fi, _ := os.Stat(bombTar)
	t.Logf("bomb archive: %d bytes for %d bytes of zeros", fi.Size(), 2*limit)
	if fi.Size() > limit/100 {
		t.Fatalf("the bomb archive is %d bytes: not a bomb", fi.Size())
	}

	r := newRig(t, "limits")
	r.ctd.SetImageLimits(ImageLimits{MaxBytes: limit})
	if got := r.ctd.ImageLimits(); got != (ImageLimits{MaxBytes: limit, MaxLayers: DefaultMaxImageLayers, MaxFiles: DefaultMaxImageFiles,
		MaxExpansion: DefaultMaxExpansion, MinExpansionBytes: DefaultMinExpansionBytes}) {
		t.Fatalf("limits %+v", got)
	}

	// The bomb is refused, and nothing of it is left.
	start := time.Now()
	_, err = loadFile(ctx, r.ctd, bombTar, "")
	want := fmt.Sprintf("image docker.io/example/bomb:1: unpacked size exceeds the limit of %d bytes", limit)
	if !errors.Is(err, ErrImageTooLarge) || err.Error() != want {
		t.Fatalf("bomb: err %v, want %q", err, want)
	}
	t.Logf("bomb refused in %v", time.Since(start))
	r.requireClean(t)

	// An archive larger than the limit is refused while it streams.
	paths, err := testimages.BuildAll(ctx, filepath.Join(os.TempDir(), "chorus-test-images"))
	if err != nil {
		t.Fatal(err)
	}
	web, _ := os.Stat(paths["web"])
	r.ctd.SetImageLimits(ImageLimits{MaxBytes: web.Size() / 2})
	_, err = loadFile(ctx, r.ctd, paths["web"], "")
	if want := fmt.Sprintf("image archive: archive size exceeds the limit of %d bytes", web.Size()/2); !errors.Is(err, ErrImageTooLarge) || err.Error() != want {
		t.Fatalf("archive over the limit: err %v, want %q", err, want)
	}
	r.requireClean(t)

	// Too many files (web holds app and tmp/).
	r.ctd.SetImageLimits(ImageLimits{MaxFiles: 1})
	if _, err = loadFile(ctx, r.ctd, paths["web"], ""); !errors.Is(err, ErrImageTooLarge) || !strings.Contains(err.Error(), "files exceeds the limit of 1") {
		t.Fatalf("files over the limit: %v", err)
	}
	r.requireClean(t)

	// Bad names: nothing is loaded.
	for _, c := range []struct{ image, ref, want string }{
		{"docker.io/Example/Web:1", "1", "repository name (Example/Web) must be lowercase"},
		{"docker.io/example/web:bad tag", "", "invalid reference format"},
		{"", "1", `named only by the tag "1"`},
	} {
		path := filepath.Join(t.TempDir(), "named.tar")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := testimages.WriteOCINamed(f, bomb, c.image, c.ref, t.TempDir()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, err := loadFile(ctx, r.ctd, path, ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("name %q/%q: err %v, want %q", c.image, c.ref, err, c.want)
		}
		r.requireClean(t)
	}

	// Within the limits: loaded, with its unpacked size and load version
	// (its layer expands about 1,000 times: allowed only without the
	// expansion bound).
	r.ctd.SetImageLimits(ImageLimits{MaxBytes: 4 * limit, MaxExpansion: -1})
	imgs, err := loadFile(ctx, r.ctd, bombTar, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "docker.io/example/bomb:1" || imgs[0].Unpacked < 2*limit || imgs[0].Unpacked > 2*limit+4096 || imgs[0].Loaded != "v1" {
		t.Fatalf("loaded %+v, want the bomb, unpacked about %d bytes", imgs, 2*limit)
	}
	if ok, err := r.ctd.HasImage(ctx, "docker.io/example/bomb:1"); !ok || err != nil {
		t.Fatalf("HasImage: %v %v", ok, err)
	}
	r.loadImage(t, "web")
	listed, err := r.ctd.Images(ctx)
	if err != nil || len(listed) != 2 {
		t.Fatalf("images %+v %v", listed, err)
	}
	for _, im := range listed {
		if im.Unpacked <= im.Size/2 {
			t.Errorf("%s: unpacked %d for %d bytes of content", im.Name, im.Unpacked, im.Size)
		}
	}

	// Reloading a tag with new content moves it; the old content goes.
	crash, err := testimages.Build(ctx, "crash", t.TempDir(), []string{"example/bomb:1"}, testimages.FormatDocker)
	if err != nil {
		t.Fatal(err)
	}
	re, err := loadFile(ctx, r.ctd, crash, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if len(re) != 1 || re[0].Digest == imgs[0].Digest || re[0].Loaded != "v2" || re[0].Unpacked > limit {
		t.Fatalf("reloaded %+v, was %+v", re, imgs[0])
	}

	// Removal: the records go, and with them every blob and snapshot.
	for _, name := range []string{"example/bomb:1", "docker.io/example/web:1"} {
		if err := r.ctd.RemoveImage(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.ctd.RemoveImage(ctx, "example/web:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("second removal: %v", err)
	}
	if err := r.ctd.RemoveImage(ctx, "Bad:Name"); err == nil || !strings.Contains(err.Error(), "invalid reference format") {
		t.Fatalf("removal of a bad name: %v", err)
	}
	r.requireClean(t)
}

// TestImageExpansionLimit: with the default limits, a gzip bomb far below
// MaxBytes is refused by its expansion ratio and leaves nothing behind; a
// layer under the floor and an ordinary image load.
func TestImageExpansionLimit(t *testing.T) {
	ctx := context.Background()
	const size = 256 << 20 // 1/16 of DefaultMaxImageBytes
	bomb, err := testimages.ZeroBomb(size)
	if err != nil {
		t.Fatal(err)
	}
	bombTar := dockerArchive(t, bomb, "example/bomb:2")
	fi, _ := os.Stat(bombTar)
	t.Logf("bomb archive: %d bytes for %d bytes of zeros", fi.Size(), size)

	r := newRig(t, "ratio")
	if got := r.ctd.ImageLimits(); got.MaxBytes != DefaultMaxImageBytes || got.MaxExpansion != DefaultMaxExpansion {
		t.Fatalf("default limits %+v", got)
	}
	start := time.Now()
	_, err = loadFile(ctx, r.ctd, bombTar, "")
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrImageTooLarge) || le.What != "expansion" || le.Limit != DefaultMaxExpansion ||
		!strings.HasPrefix(le.Layer, "sha256:") || le.Compressed <= 0 || le.Compressed > size/500 ||
		le.Unpacked != max(DefaultMinExpansionBytes, DefaultMaxExpansion*le.Compressed) {
		t.Fatalf("bomb with the default limits: %v (%+v), want an expansion LimitError", err, le)
	}
	if want := fmt.Sprintf("image docker.io/example/bomb:2: layer %s expands more than %d times its compressed size (%d bytes compressed, more than %d bytes unpacked): over the limit of 100 times",
		le.Layer, le.Unpacked/le.Compressed, le.Compressed, le.Unpacked); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	t.Logf("bomb refused in %v: %v", time.Since(start), err)
	r.requireClean(t)

	// A layer that expands as much but unpacks to less than the floor loads.
	small, err := testimages.ZeroBomb(DefaultMinExpansionBytes / 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadFile(ctx, r.ctd, dockerArchive(t, small, "example/bomb:3"), ""); err != nil {
		t.Fatalf("a bomb under the floor: %v", err)
	}
	if err := r.ctd.RemoveImage(ctx, "example/bomb:3"); err != nil {
		t.Fatal(err)
	}
	// A higher bound lets the big one in (it expands about 1,000 times).
	r.ctd.SetImageLimits(ImageLimits{MaxExpansion: 2000})
	if _, err := loadFile(ctx, r.ctd, bombTar, ""); err != nil {
		t.Fatalf("bomb with MaxExpansion 2000: %v", err)
	}
	if err := r.ctd.RemoveImage(ctx, "example/bomb:2"); err != nil {
		t.Fatal(err)
	}
	// An ordinary image loads with the default limits.
	r.ctd.SetImageLimits(ImageLimits{})
	r.loadImage(t, "web")
	if err := r.ctd.RemoveImage(ctx, "example/web:1"); err != nil {
		t.Fatal(err)
	}
	r.requireClean(t)
}
