// Package images builds the test container images of chorus from the small
// Go programs in its subfolders (web, crash, burn; grpchealth, a gRPC
// health server, is built on demand with Build), without a Docker engine
// or a registry.
//
// Build compiles one program as a static linux binary (CGO_ENABLED=0,
// -trimpath, -ldflags "-s -w", GOARCH of the host so tests can also run it
// directly) and packs it into a single-layer image holding /app (0755) and an
// empty /tmp (1777), with Entrypoint ["/app"] and Env ["PATH=/"]. The image
// is written as a docker-save tarball (FormatDocker) or as an OCI image
// layout in a tar (FormatOCI), ready for "docker load" or "ctr images import".
//
// The sources are found by walking up from the working directory to the
// go.mod of module github.com/chorus-sh/chorus and using its tests/images
// folder; when the working directory is outside the module, the directory of
// this file as recorded by the compiler (runtime.Caller) is used instead.
// The go command must be on PATH.
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Format is the kind of archive Build writes.
type Format int

const (
	// FormatDocker is a "docker save" tarball (manifest.json, RepoTags).
	FormatDocker Format = iota
	// FormatOCI is an OCI image layout packed in one tar file.
	FormatOCI
)

func (f Format) String() string {
	if f == FormatOCI {
		return "oci"
	}
	return "docker"
}

// ParseFormat turns "docker" or "oci" into a Format.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "docker":
		return FormatDocker, nil
	case "oci":
		return FormatOCI, nil
	}
	return 0, fmt.Errorf("unknown image format %q (want docker or oci)", s)
}

// Programs lists the test programs, in the order BuildAll builds them.
var Programs = []string{"web", "crash", "burn"}

// Annotation keys set on each manifest of an OCI archive's index.
const (
	// AnnotationRefName holds the tag alone ("1"), as the OCI spec says.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName holds the full normalized name
	// ("docker.io/example/web:1"); containerd's import names the image so.
	AnnotationImageName = "io.containerd.image.name"
)

// DefaultTag is the tag Build uses for program name when given no tags:
// "example/<name>:1".
func DefaultTag(name string) string { return "example/" + name + ":1" }

// Build compiles the program tests/images/<name> and writes it as an image
// archive in outDir, tagged with each of tags (DefaultTag(name) if none).
// The file is <name>-<tag>.tar (FormatDocker) or <name>-<tag>.oci.tar
// (FormatOCI), after the first tag, e.g. web-1.tar for example/web:1; it is
// written to a temporary file first and renamed, so it is never partial.
func Build(ctx context.Context, name string, outDir string, tags []string, format Format) (path string, err error) {
	if len(tags) == 0 {
		tags = []string{DefaultTag(name)}
	}
	refs, err := parseTags(tags)
	if err != nil {
		return "", err
	}
	src, err := SourceDir(name)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "chorus-image-"+name+"-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "app")
	if err := compile(ctx, src, bin); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	img, err := newImage(bin, name, format)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", name, err)
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	ext := ".tar"
	if format == FormatOCI {
		ext = ".oci.tar"
	}
	path = filepath.Join(outDir, name+"-"+refs[0].TagStr()+ext)
	f, err := os.CreateTemp(outDir, ".tmp-"+name+"-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // fails harmlessly after the rename
	if format == FormatOCI {
		err = writeOCI(f, img, refs, filepath.Join(tmp, "layout"))
	} else {
		m := make(map[gname.Reference]v1.Image, len(refs))
		for _, r := range refs {
			m[r] = img
		}
		err = tarball.MultiRefWrite(m, f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// BuildAll builds web, crash and burn as docker archives tagged
// example/<name>:1 in outDir and returns their paths by program name.
// An archive that is newer than every file of its program and of this
// package is kept as is.
func BuildAll(ctx context.Context, outDir string) (map[string]string, error) {
	paths := make(map[string]string, len(Programs))
	for _, prog := range Programs {
		path := filepath.Join(outDir, prog+"-1.tar")
		if fresh, err := upToDate(path, prog); err != nil {
			return nil, err
		} else if !fresh {
			if path, err = Build(ctx, prog, outDir, nil, FormatDocker); err != nil {
				return nil, err
			}
		}
		paths[prog] = path
	}
	return paths, nil
}

// SourceDir returns the directory of the program name (see the package
// documentation for how it is found).
func SourceDir(name string) (string, error) {
	if name == "" || name == "cmd" || strings.ContainsAny(name, `/\.`) {
		return "", fmt.Errorf("bad program name %q", name)
	}
	base, err := packageDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, name)
	if _, err := os.Stat(filepath.Join(dir, "main.go")); err != nil {
		return "", fmt.Errorf("no program %q: %w", name, err)
	}
	return dir, nil
}

const modulePath = "github.com/chorus-sh/chorus"

// packageDir returns the directory of this package's sources.
func packageDir() (string, error) {
	dir, err := os.Getwd()
	if err == nil {
		for {
			if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
				if first, _, _ := strings.Cut(string(data), "\n"); strings.TrimSpace(first) == "module "+modulePath {
					return filepath.Join(dir, "tests", "images"), nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		if _, err := os.Stat(file); err == nil {
			return filepath.Dir(file), nil
		}
	}
	return "", fmt.Errorf("cannot find the sources of %s/tests/images: run inside the module", modulePath)
}

// compile builds the main package in dir as a static linux binary at out.
func compile(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if outb, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w\n%s", err, outb)
	}
	return nil
}

// epoch is the time stamp of every file and of the image, so that builds
// of the same binary give the same image.
var epoch = time.Unix(0, 0).UTC()

// newImage makes the single-layer image around the binary bin.
func newImage(bin, prog string, format Format) (v1.Image, error) {
	app, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "app", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(app))},
		{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	} {
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(app); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerTar := buf.Bytes()

	base := empty.Image
	var opts []tarball.LayerOption
	if format == FormatOCI {
		base = mutate.MediaType(base, types.OCIManifestSchema1)
		base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
		opts = append(opts, tarball.WithMediaType(types.OCILayer))
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, opts...)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "chorus tests/images: go build ./" + prog},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.Entrypoint = []string{"/app"}
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.WorkingDir = "/"
	return mutate.ConfigFile(img, cfg)
}

// parseTags parses image tags such as "example/web:1" (":latest" if none).
func parseTags(tags []string) ([]gname.Tag, error) {
	refs := make([]gname.Tag, len(tags))
	for i, t := range tags {
		r, err := gname.NewTag(t)
		if err != nil {
			return nil, err
		}
		refs[i] = r
	}
	return refs, nil
}

// NormalizedName returns the full name of tag as containerd spells it,
// e.g. "docker.io/example/web:1" for "example/web:1".
func NormalizedName(tag gname.Tag) string {
	reg := tag.RegistryStr()
	if reg == gname.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + tag.RepositoryStr() + ":" + tag.TagStr()
}

// writeOCI writes img as an OCI layout in dir, with one index entry per
// tag, and tars that layout into w.
func writeOCI(w io.Writer, img v1.Image, refs []gname.Tag, dir string) error {
	anns := make([]map[string]string, len(refs))
	for i, r := range refs {
		anns[i] = map[string]string{
			AnnotationRefName:   r.TagStr(),
			AnnotationImageName: NormalizedName(r),
		}
	}
	return writeOCILayout(w, img, anns, dir)
}

// writeOCILayout writes img as an OCI layout in dir, with one index entry
// per annotation set, and tars that layout into w.
func writeOCILayout(w io.Writer, img v1.Image, anns []map[string]string, dir string) error {
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, a := range anns {
		if err := lp.AppendImage(img, layout.WithPlatform(platform), layout.WithAnnotations(a)); err != nil {
			return err
		}
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch, Mode: 0o644, Typeflag: tar.TypeReg}
		if d.IsDir() {
			h.Name, h.Mode, h.Typeflag = h.Name+"/", 0o755, tar.TypeDir
			return tw.WriteHeader(h)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// upToDate reports whether the archive at path exists and is newer than
// the sources of program prog and of this package.
func upToDate(path, prog string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, nil
	}
	src, err := SourceDir(prog)
	if err != nil {
		return false, err
	}
	for _, dir := range []string{src, filepath.Dir(src)} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return false, err
			}
			if !st.ModTime().After(info.ModTime()) {
				return false, nil
			}
		}
	}
	return true, nil
}

// CacheDir is where tests keep the images they build between runs: one
// directory per checkout (named after the hash of this package's source
// directory), so that two checkouts tested at once on one machine never
// load each other's images.
func CacheDir() string {
	_, file, _, _ := runtime.Caller(0)
	sum := sha256.Sum256([]byte(filepath.Dir(file)))
	return filepath.Join(os.TempDir(), "chorus-test-images-"+hex.EncodeToString(sum[:4]))
}
