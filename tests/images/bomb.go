package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"runtime"

	gname "github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ZeroBomb returns a single-layer image (no entrypoint: it is never run)
// whose layer is a tar holding one file, /zeros, of size zero bytes,
// gzip-compressed at the best ratio: about 1 KB per MB, a decompression
// bomb for the limits of an image load. The compressed layer is built once,
// in memory.
func ZeroBomb(size int64) (v1.Image, error) {
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return nil, err
	}
	if _, err := io.CopyN(tw, zeroReader{}, size); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
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
	return mutate.ConfigFile(img, cfg)
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// WriteDocker writes img as a docker-save archive tagged tag.
func WriteDocker(w io.Writer, img v1.Image, tag string) error {
	ref, err := gname.NewTag(tag)
	if err != nil {
		return err
	}
	return tarball.Write(ref, img, w)
}

// WriteOCINamed writes img as an OCI image layout in a tar whose index
// names it with the annotations given as they are, unchecked (empty values
// are left out): imageName as io.containerd.image.name, refName as
// org.opencontainers.image.ref.name. It makes archives with bad names.
func WriteOCINamed(w io.Writer, img v1.Image, imageName, refName, tmpDir string) error {
	ann := map[string]string{}
	if imageName != "" {
		ann[AnnotationImageName] = imageName
	}
	if refName != "" {
		ann[AnnotationRefName] = refName
	}
	if len(ann) == 0 {
		return fmt.Errorf("WriteOCINamed: no name given")
	}
	return writeOCILayout(w, img, []map[string]string{ann}, tmpDir)
}
