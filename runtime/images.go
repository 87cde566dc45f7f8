package runtime

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Peer-to-peer image transfer, without a registry.
//
// The sender calls ExportManifest and serves ReadBlob; the receiver asks
// HasBlob for each blob of the manifest, copies the missing ones with
// WriteBlob (children first, as listed) and ends with CommitImage.
//
// Garbage collection: a blob written by WriteBlob is referenced by nothing
// until CommitImage creates the image record, so containerd's GC would
// remove it. WriteBlob therefore puts every blob it writes (or finds
// already present) into a transfer lease of its own, "chorus-xfer-<hex>",
// which expires after TransferLeaseTTL: a transfer abandoned half way
// leaves nothing behind for longer than that. CommitImage first adds all
// blobs of the manifest to a lease of its own (so none can vanish while it
// works), sets the GC child labels on the index/manifest blobs as
// client.Import does, creates the image record and unpacks it, and then
// releases the transfer leases of the blobs: from then on the image record
// keeps them. If the caller's context already carries a lease
// (leases.WithLease), WriteBlob uses that lease instead.

// TransferLeaseTTL is how long a blob written by WriteBlob is kept without
// an image referencing it.
const TransferLeaseTTL = time.Hour

// ErrDigestMismatch is returned (wrapped) by WriteBlob when the data read
// does not have the announced size or digest.
var ErrDigestMismatch = errors.New("digest mismatch")

// Blob is one content-addressed piece of an image.
type Blob struct {
	Digest    string // "sha256:..."
	Size      int64
	MediaType string
}

// ImageManifest describes an image for transfer: its name, the descriptor
// of its top object (index or manifest, as stored) and every blob needed to
// run it on this platform (the top object itself, manifests, config,
// layers), children first, so writing them in order never leaves a
// manifest whose children are missing.
type ImageManifest struct {
	Name   string
	Target Blob
	Blobs  []Blob
	// Loaded is the version of the load that put this content under Name
	// on the peer where it was loaded (the agent orders them); the copy
	// keeps it.
	Loaded string `json:",omitempty"`
}

func blobOf(d ocispec.Descriptor) Blob {
	return Blob{Digest: d.Digest.String(), Size: d.Size, MediaType: d.MediaType}
}

func (b Blob) descriptor() (ocispec.Descriptor, error) {
	d, err := digest.Parse(b.Digest)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("blob digest %q: %w", b.Digest, err)
	}
	if b.Size < 0 {
		return ocispec.Descriptor{}, fmt.Errorf("blob %s: negative size %d", b.Digest, b.Size)
	}
	return ocispec.Descriptor{MediaType: b.MediaType, Digest: d, Size: b.Size}, nil
}

// platform is the platform the client unpacks for (its default).
func (c *Containerd) platform() platforms.MatchComparer {
	return containerd.NewImage(c.client, images.Image{}).Platform()
}

// imageHandler returns the children of an index or manifest needed to run
// the image here: one manifest of an index (the best platform match), the
// config and layers of a manifest.
func (c *Containerd) imageHandler() images.HandlerFunc {
	p := c.platform()
	return images.LimitManifests(images.FilterPlatforms(images.ChildrenHandler(c.client.ContentStore()), p), p, 1)
}

// walkImage returns the descriptors reachable from target through h,
// children before parents, each digest once.
func walkImage(ctx context.Context, h images.HandlerFunc, target ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	var visit func(d ocispec.Descriptor) error
	visit = func(d ocispec.Descriptor) error {
		if seen[d.Digest] {
			return nil
		}
		seen[d.Digest] = true
		children, err := h(ctx, d)
		if err != nil {
			return fmt.Errorf("read %s (%s): %w", d.Digest, d.MediaType, err)
		}
		for _, ch := range children {
			if err := visit(ch); err != nil {
				return err
			}
		}
		out = append(out, d)
		return nil
	}
	return out, visit(target)
}

// ExportManifest describes the image ref (short or full name) for transfer
// to another peer. Every blob listed is held here.
func (c *Containerd) ExportManifest(ctx context.Context, ref string) (ImageManifest, error) {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return ImageManifest{}, err
	}
	img, err := c.client.ImageService().Get(ctx, name)
	if err != nil {
		return ImageManifest{}, fmt.Errorf("image %s: %w", name, err)
	}
	descs, err := walkImage(ctx, c.imageHandler(), img.Target)
	if err != nil {
		return ImageManifest{}, fmt.Errorf("image %s: %w", name, err)
	}
	cs := c.client.ContentStore()
	m := ImageManifest{Name: img.Name, Target: blobOf(img.Target), Loaded: img.Labels[LabelLoaded]}
	for _, d := range descs {
		info, err := cs.Info(ctx, d.Digest)
		if err != nil {
			return ImageManifest{}, fmt.Errorf("image %s: blob %s: %w", name, d.Digest, err)
		}
		if info.Size != d.Size {
			return ImageManifest{}, fmt.Errorf("image %s: blob %s holds %d bytes, its descriptor says %d", name, d.Digest, info.Size, d.Size)
		}
		m.Blobs = append(m.Blobs, blobOf(d))
	}
	return m, nil
}

// ReadBlob returns length bytes of a blob from offset (length <= 0: to the
// end); an error if the blob is not held here or offset is beyond its end.
func (c *Containerd) ReadBlob(ctx context.Context, dgst string, offset, length int64) ([]byte, error) {
	ctx = c.ctx(ctx)
	d, err := digest.Parse(dgst)
	if err != nil {
		return nil, fmt.Errorf("blob digest %q: %w", dgst, err)
	}
	cs := c.client.ContentStore()
	info, err := cs.Info(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	if offset < 0 || offset > info.Size {
		return nil, fmt.Errorf("blob %s: offset %d outside 0..%d: %w", d, offset, info.Size, errdefs.ErrInvalidArgument)
	}
	n := info.Size - offset
	if length > 0 && length < n {
		n = length
	}
	if n == 0 {
		return []byte{}, nil
	}
	ra, err := cs.ReaderAt(ctx, ocispec.Descriptor{Digest: d, Size: info.Size})
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	defer ra.Close()
	buf := make([]byte, n)
	got, err := ra.ReadAt(buf, offset)
	if int64(got) == n {
		return buf, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("read blob %s at %d: %w", d, offset, err)
}

// HasBlob reports whether the content store holds the blob.
func (c *Containerd) HasBlob(ctx context.Context, dgst string) (bool, error) {
	ctx = c.ctx(ctx)
	d, err := digest.Parse(dgst)
	if err != nil {
		return false, fmt.Errorf("blob digest %q: %w", dgst, err)
	}
	_, err = c.client.ContentStore().Info(ctx, d)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", d, err)
	}
	return true, nil
}

func transferLeaseID(d digest.Digest) string { return "chorus-xfer-" + d.Encoded() }

// transferLease returns ctx carrying the lease that keeps blob d until an
// image references it: the caller's lease if ctx has one, else the
// blob's own transfer lease, created if needed.
func (c *Containerd) transferLease(ctx context.Context, d digest.Digest) (context.Context, string, error) {
	if id, ok := leases.FromContext(ctx); ok {
		return ctx, id, nil
	}
	id := transferLeaseID(d)
	_, err := c.client.LeasesService().Create(ctx, leases.WithID(id), leases.WithExpiration(TransferLeaseTTL),
		leases.WithLabel("chorus.sh/transfer", d.String()))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, "", fmt.Errorf("create transfer lease for %s: %w", d, err)
	}
	return leases.WithLease(ctx, id), id, nil
}

// WriteBlob stores a blob read from r after checking its size and digest; a
// mismatch is an error wrapping ErrDigestMismatch and nothing is committed.
// A blob already held is not read again. The blob is kept by a transfer
// lease until CommitImage (see above).
func (c *Containerd) WriteBlob(ctx context.Context, b Blob, r io.Reader) (err error) {
	ctx = c.ctx(ctx)
	desc, err := b.descriptor()
	if err != nil {
		return err
	}
	ctx, leaseID, err := c.transferLease(ctx, desc.Digest)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			return
		}
		// The ingest under the lease references the blob on commit; a blob
		// that was already present is added here (idempotent).
		err = c.client.LeasesService().AddResource(ctx, leases.Lease{ID: leaseID},
			leases.Resource{ID: desc.Digest.String(), Type: "content"})
		if err != nil {
			err = fmt.Errorf("lease blob %s: %w", desc.Digest, err)
		}
	}()

	cs := c.client.ContentStore()
	ref := "chorus-xfer-" + desc.Digest.Encoded()
	w, err := content.OpenWriter(ctx, cs, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	committed := false
	defer func() {
		if !committed {
			w.Close()
			_ = cs.Abort(context.WithoutCancel(ctx), ref)
		}
	}()
	// An ingest left by an earlier, interrupted write is started over.
	if st, err := w.Status(); err == nil && st.Offset > 0 {
		if err := w.Truncate(0); err != nil {
			return fmt.Errorf("write blob %s: reset ingest: %w", desc.Digest, err)
		}
	}
	dg := desc.Digest.Algorithm().Digester()
	n, err := io.Copy(io.MultiWriter(w, dg.Hash()), io.LimitReader(r, desc.Size+1))
	if err != nil {
		return fmt.Errorf("write blob %s: %w", desc.Digest, err)
	}
	if n != desc.Size {
		return fmt.Errorf("blob %s: got %d bytes, want %d: %w", desc.Digest, n, desc.Size, ErrDigestMismatch)
	}
	if got := dg.Digest(); got != desc.Digest {
		return fmt.Errorf("blob %s: data has digest %s: %w", desc.Digest, got, ErrDigestMismatch)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("commit blob %s: %w", desc.Digest, err)
	}
	committed = true
	return nil
}

// Limits on images.
//
// What an image may take on this peer's disk is bounded before it is
// unpacked: every load (an archive sent by a client, an image fetched from
// another peer, an image pulled from a registry) first stores the
// compressed content under a lease of its own, then decompresses each
// layer in the agent, counting the bytes as they stream and the tar
// entries, and stops at the first byte or entry over the limit. Only an
// image within the limits is unpacked by containerd and then named (its
// image record created or moved to the new content). A load that fails,
// for any reason, deletes its lease with a synchronous garbage collection:
// it leaves no image record, no content and no snapshot behind.
//
// Each layer is also bounded relative to its own compressed size: a layer
// that unpacks to more than both MinExpansionBytes and MaxExpansion times
// its compressed size is refused (real layers compress 2-10 times; a
// gzip bomb of zeros about 1,000 times), so that a small archive cannot
// make a peer write gigabytes even within MaxBytes. The check runs on the
// same stream, at the first byte (or tar header) over the bound.
//
// The unpacked size counted is the larger of the decompressed tar streams
// and the sum, over every tar entry, of its logical size plus 512 bytes
// (so a sparse file counts at its full size, and an archive of millions of
// empty files is not free). It is kept on the image record
// (chorus.sh/unpacked-size) and shown by `chorus image ls`.

// Image record labels chorus sets.
const (
	LabelUnpacked = "chorus.sh/unpacked-size" // decimal bytes
	LabelLoaded   = "chorus.sh/loaded"        // the load's version, ImageManifest.Loaded
)

// Default image limits.
const (
	DefaultMaxImageBytes  = 4 << 30 // 4 GiB
	DefaultMaxImageLayers = 128
	DefaultMaxImageFiles  = 1 << 20
	// DefaultMaxExpansion and DefaultMinExpansionBytes: a layer may unpack
	// to at most max(64 MiB, 100 x its compressed size).
	DefaultMaxExpansion      = 100
	DefaultMinExpansionBytes = 64 << 20
	maxLoadedLen             = 300
)

// loadLeaseTTL bounds how long what an interrupted load stored (the agent
// died mid-way) is kept.
const loadLeaseTTL = time.Hour

// ImageLimits bound what one image may hold. A zero field takes its
// default.
type ImageLimits struct {
	// MaxBytes bounds both the compressed bytes of a load (an archive, the
	// blobs of a pull) and the unpacked size of each image.
	MaxBytes int64
	// MaxLayers bounds the layers of an image.
	MaxLayers int
	// MaxFiles bounds the tar entries in all layers of an image.
	MaxFiles int64
	// MaxExpansion bounds how many times its compressed size a layer may
	// unpack to, once it unpacks to more than MinExpansionBytes; negative:
	// no bound.
	MaxExpansion int64
	// MinExpansionBytes is what any layer may unpack to, whatever its
	// compression ratio.
	MinExpansionBytes int64
}

// layerMax is the most a layer of compressed bytes may unpack to.
func (l ImageLimits) layerMax(compressed int64) int64 {
	if l.MaxExpansion < 0 || compressed > math.MaxInt64/l.MaxExpansion {
		return math.MaxInt64
	}
	return max(l.MinExpansionBytes, l.MaxExpansion*compressed)
}

func (l ImageLimits) withDefaults() ImageLimits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxImageBytes
	}
	if l.MaxLayers <= 0 {
		l.MaxLayers = DefaultMaxImageLayers
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = DefaultMaxImageFiles
	}
	if l.MaxExpansion == 0 {
		l.MaxExpansion = DefaultMaxExpansion
	}
	if l.MinExpansionBytes <= 0 {
		l.MinExpansionBytes = DefaultMinExpansionBytes
	}
	return l
}

// ErrImageTooLarge is wrapped by every error about an image over a limit.
var ErrImageTooLarge = errors.New("image exceeds a limit")

// LimitError is an image over one of its limits.
type LimitError struct {
	Image string // the image name, or "image archive"
	What  string // "unpacked size", "archive size", "compressed size", "number of layers", "number of files", "expansion"
	Limit int64
	// For "expansion": the layer, its compressed size, and the most it may
	// unpack to (it was stopped at the first byte beyond).
	Layer      string
	Compressed int64
	Unpacked   int64
}

func (e *LimitError) Error() string {
	if e.What == "expansion" {
		return fmt.Sprintf("%s: layer %s expands more than %d times its compressed size (%d bytes compressed, more than %d bytes unpacked): over the limit of %d times",
			e.Image, e.Layer, e.Unpacked/max(e.Compressed, 1), e.Compressed, e.Unpacked, e.Limit)
	}
	unit := ""
	switch e.What {
	case "unpacked size", "archive size", "compressed size":
		unit = " bytes"
	}
	return fmt.Sprintf("%s: %s exceeds the limit of %d%s", e.Image, e.What, e.Limit, unit)
}

// Unwrap makes errors.Is(err, ErrImageTooLarge) hold.
func (e *LimitError) Unwrap() error { return ErrImageTooLarge }

// SetImageLimits sets the limits on images; call it before any load.
func (c *Containerd) SetImageLimits(l ImageLimits) { c.limits = l }

// ImageLimits returns the limits in force.
func (c *Containerd) ImageLimits() ImageLimits { return c.limits.withDefaults() }

// withLoadLease returns ctx carrying a new lease that holds everything a
// load stores until an image record does, and end, which deletes the lease:
// after a failure synchronously, so that garbage collection has removed
// what the load stored when end returns. A lease already on ctx is used as
// is and left to its owner.
func (c *Containerd) withLoadLease(ctx context.Context) (context.Context, func(failed bool), error) {
	if _, ok := leases.FromContext(ctx); ok {
		return ctx, func(bool) {}, nil
	}
	ls := c.client.LeasesService()
	l, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(loadLeaseTTL),
		leases.WithLabel("chorus.sh/load", "true"))
	if err != nil {
		return nil, nil, fmt.Errorf("create load lease: %w", err)
	}
	return leases.WithLease(ctx, l.ID), func(failed bool) {
		var opts []leases.DeleteOpt
		if failed {
			opts = append(opts, leases.SynchronousDelete)
		}
		_ = ls.Delete(context.WithoutCancel(ctx), l, opts...)
	}, nil
}

// limitedReader counts bytes read and fails once more than max were read.
type limitedReader struct {
	r    io.Reader
	n    int64
	max  int64
	over bool
}

var errOverLimit = errors.New("over the limit")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.over {
		return 0, errOverLimit
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		l.over = true
		return n, errOverLimit
	}
	return n, err
}

// ImportImage implements Runtime: LoadImages with no load version.
func (c *Containerd) ImportImage(ctx context.Context, r io.Reader) ([]Image, error) {
	return c.LoadImages(ctx, r, "")
}

// namedImage is an image of an archive: its validated name and manifest.
type namedImage struct {
	name   string
	target ocispec.Descriptor
}

// LoadImages loads an OCI or docker archive and returns the images in it,
// each recorded with the load version loaded. All or nothing: the archive
// (at most MaxBytes), the image names (valid references) and every image's
// limits are checked and every image unpacked before any image record is
// created or changed; a failure leaves nothing behind.
func (c *Containerd) LoadImages(ctx context.Context, r io.Reader, loaded string) (_ []Image, err error) {
	ctx = c.ctx(ctx)
	if len(loaded) > maxLoadedLen {
		return nil, fmt.Errorf("load version of %d bytes, more than %d", len(loaded), maxLoadedLen)
	}
	lim := c.ImageLimits()
	ctx, end, err := c.withLoadLease(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { end(err != nil) }()

	cs := c.client.ContentStore()
	lr := &limitedReader{r: r, max: lim.MaxBytes}
	index, err := archive.ImportIndex(ctx, cs, lr)
	if lr.over {
		return nil, &LimitError{Image: "image archive", What: "archive size", Limit: lim.MaxBytes}
	}
	if err != nil {
		return nil, fmt.Errorf("import archive: %w", err)
	}
	named, err := archiveImages(ctx, cs, index)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(named))
	for i, n := range named {
		if sizes[i], err = c.prepare(ctx, n.name, n.target, lim); err != nil {
			return nil, err
		}
	}
	out := make([]Image, 0, len(named))
	for i, n := range named {
		img, err := c.record(ctx, n.name, n.target, sizes[i], loaded)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// archiveImages returns the named images of an imported archive's index,
// their names validated and normalized.
func archiveImages(ctx context.Context, cs content.Provider, index ocispec.Descriptor) ([]namedImage, error) {
	data, err := content.ReadBlob(ctx, cs, index)
	if err != nil {
		return nil, fmt.Errorf("import archive: read its index: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("import archive: its index: %w", err)
	}
	var out []namedImage
	seen := map[string]int{}
	for i, m := range idx.Manifests {
		if _, ok := m.Annotations[images.AnnotationManifestSubject]; ok {
			continue // a referrer (signature, attestation), not an image
		}
		raw := m.Annotations[images.AnnotationImageName]
		if raw == "" {
			raw = m.Annotations[ocispec.AnnotationRefName]
			if raw != "" && !strings.ContainsAny(raw, "/:@") {
				return nil, fmt.Errorf("import archive: manifests[%d] is named only by the tag %q (%s): give it a full name such as example/app:%s (%s)",
					i, raw, ocispec.AnnotationRefName, raw, images.AnnotationImageName)
			}
		}
		if raw == "" {
			continue
		}
		name, err := NormalizeImage(raw)
		if err != nil {
			return nil, fmt.Errorf("import archive: manifests[%d]: %w", i, err)
		}
		if j, ok := seen[name]; ok {
			out[j].target = m
			continue
		}
		seen[name] = len(out)
		out = append(out, namedImage{name: name, target: m})
	}
	if len(out) == 0 {
		return nil, errors.New("import archive: it holds no named image (give it a tag)")
	}
	return out, nil
}

// prepare checks the image name -> target, whose content ctx's lease
// holds: every blob it needs here is present, it is within lim, and it is
// unpacked into the snapshotter (under the lease). It sets the GC labels
// that make the index/manifest keep their children, and returns the
// unpacked size.
func (c *Containerd) prepare(ctx context.Context, name string, target ocispec.Descriptor, lim ImageLimits) (int64, error) {
	cs := c.client.ContentStore()
	needed, err := walkImage(ctx, images.SetChildrenLabels(cs, c.imageHandler()), target)
	if err != nil {
		return 0, fmt.Errorf("image %s: %w", name, err)
	}
	var layers []ocispec.Descriptor
	for _, d := range needed {
		info, err := cs.Info(ctx, d.Digest)
		if errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("image %s: blob %s (%s) is not held: %w", name, d.Digest, d.MediaType, err)
		}
		if err != nil {
			return 0, fmt.Errorf("image %s: blob %s: %w", name, d.Digest, err)
		}
		if info.Size != d.Size {
			return 0, fmt.Errorf("image %s: blob %s holds %d bytes, want %d", name, d.Digest, info.Size, d.Size)
		}
		if images.IsLayerType(d.MediaType) {
			layers = append(layers, d)
		}
	}
	if len(layers) > lim.MaxLayers {
		return 0, &LimitError{Image: "image " + name, What: "number of layers", Limit: int64(lim.MaxLayers)}
	}
	size, err := c.unpackedSize(ctx, name, layers, lim)
	if err != nil {
		return 0, err
	}
	if err := containerd.NewImage(c.client, images.Image{Name: name, Target: target}).Unpack(ctx, c.snapshotter); err != nil {
		return 0, fmt.Errorf("unpack %s: %w", name, err)
	}
	return size, nil
}

// unpackedSize decompresses the layers and counts what they would unpack
// to, stopping at the first byte or tar entry beyond lim.
func (c *Containerd) unpackedSize(ctx context.Context, name string, layers []ocispec.Descriptor, lim ImageLimits) (int64, error) {
	cs := c.client.ContentStore()
	tooLarge := &LimitError{Image: "image " + name, What: "unpacked size", Limit: lim.MaxBytes}
	var logical, files int64
	stream := &limitedReader{max: lim.MaxBytes}
	for _, l := range layers {
		layerMax := lim.layerMax(l.Size)
		tooExpanded := &LimitError{Image: "image " + name, What: "expansion", Limit: lim.MaxExpansion,
			Layer: l.Digest.String(), Compressed: l.Size, Unpacked: layerMax}
		err := func() error {
			ra, err := cs.ReaderAt(ctx, l)
			if err != nil {
				return fmt.Errorf("image %s: open layer %s: %w", name, l.Digest, err)
			}
			defer ra.Close()
			dr, err := compression.DecompressStream(content.NewReader(ra))
			if err != nil {
				return fmt.Errorf("image %s: layer %s: %w", name, l.Digest, err)
			}
			defer dr.Close()
			layer := &limitedReader{r: dr, max: layerMax}
			stream.r = layer
			tr := tar.NewReader(stream)
			var layerLogical int64
			for {
				h, err := tr.Next()
				if stream.over {
					return tooLarge
				}
				if layer.over {
					return tooExpanded
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("image %s: layer %s is not a valid tar: %w", name, l.Digest, err)
				}
				if files++; files > lim.MaxFiles {
					return &LimitError{Image: "image " + name, What: "number of files", Limit: lim.MaxFiles}
				}
				if h.Size < 0 || h.Size > lim.MaxBytes {
					return tooLarge
				}
				if logical += 512 + h.Size; logical > lim.MaxBytes {
					return tooLarge
				}
				if layerLogical += 512 + h.Size; layerLogical > layerMax {
					return tooExpanded
				}
			}
			// What follows the end of the archive (padding) unpacks to
			// nothing but is decompressed all the same.
			if _, err := io.Copy(io.Discard, stream); err != nil {
				if stream.over {
					return tooLarge
				}
				if layer.over {
					return tooExpanded
				}
				return fmt.Errorf("image %s: layer %s: %w", name, l.Digest, err)
			}
			return nil
		}()
		if err != nil {
			return 0, err
		}
	}
	return max(stream.n, logical), nil
}

// record creates the image record name -> target, or moves an existing one
// to target, with its unpacked size and load version.
func (c *Containerd) record(ctx context.Context, name string, target ocispec.Descriptor, unpacked int64, loaded string) (Image, error) {
	is := c.client.ImageService()
	rec := images.Image{Name: name, Target: target, Labels: map[string]string{LabelUnpacked: strconv.FormatInt(unpacked, 10)}}
	fields := []string{"target", "labels." + LabelUnpacked, "labels." + LabelLoaded}
	if loaded != "" {
		rec.Labels[LabelLoaded] = loaded
	}
	img, err := is.Update(ctx, rec, fields...)
	if errdefs.IsNotFound(err) {
		img, err = is.Create(ctx, rec)
	}
	if err != nil {
		return Image{}, fmt.Errorf("image %s: record: %w", name, err)
	}
	return c.imageOf(ctx, img), nil
}

func (c *Containerd) imageOf(ctx context.Context, rec images.Image) Image {
	size, _ := containerd.NewImage(c.client, rec).Size(ctx)
	unpacked, _ := strconv.ParseInt(rec.Labels[LabelUnpacked], 10, 64)
	return Image{Name: rec.Name, Digest: rec.Target.Digest.String(), Size: size, Unpacked: unpacked, Loaded: rec.Labels[LabelLoaded]}
}

// Images implements Runtime.
func (c *Containerd) Images(ctx context.Context) ([]Image, error) {
	ctx = c.ctx(ctx)
	recs, err := c.client.ImageService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Image, 0, len(recs))
	for _, rec := range recs {
		out = append(out, c.imageOf(ctx, rec))
	}
	return out, nil
}

// RemoveImage deletes the image record ref and, by a synchronous garbage
// collection, the content and snapshots no other image or container uses.
// A container created from the image keeps its own snapshot and runs on.
// An image not held is an error wrapping errdefs.ErrNotFound.
func (c *Containerd) RemoveImage(ctx context.Context, ref string) error {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return err
	}
	err = c.client.ImageService().Delete(ctx, name, images.SynchronousDelete())
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("image %s is not on this peer: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", name, err)
	}
	return nil
}

// CommitImage creates (or updates) the image record m.Name -> m.Target once
// every blob the image needs on this platform is held and the image is
// within the limits, unpacks it and releases the blobs' transfer leases.
// On failure nothing is recorded and the blobs of the transfer are
// released too (garbage collected unless another image uses them).
func (c *Containerd) CommitImage(ctx context.Context, m ImageManifest) (err error) {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(m.Name)
	if err != nil {
		return err
	}
	if len(m.Loaded) > maxLoadedLen {
		return fmt.Errorf("image %s: load version of %d bytes, more than %d", name, len(m.Loaded), maxLoadedLen)
	}
	target, err := m.Target.descriptor()
	if err != nil {
		return fmt.Errorf("image %s: target: %w", name, err)
	}
	ls := c.client.LeasesService()
	held := map[digest.Digest]bool{}
	releaseTransfers := func() error {
		for d := range held {
			if err := ls.Delete(ctx, leases.Lease{ID: transferLeaseID(d)}); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("image %s: release transfer lease of %s: %w", name, d, err)
			}
		}
		return nil
	}
	ctx, end, err := c.withLoadLease(ctx)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			_ = releaseTransfers()
		}
		end(err != nil)
	}()
	leaseID, _ := leases.FromContext(ctx)

	// Hold every blob named by the manifest for the duration of the commit.
	for _, b := range append([]Blob{m.Target}, m.Blobs...) {
		desc, err := b.descriptor()
		if err != nil {
			return fmt.Errorf("image %s: %w", name, err)
		}
		if held[desc.Digest] {
			continue
		}
		held[desc.Digest] = true
		if err := ls.AddResource(ctx, leases.Lease{ID: leaseID}, leases.Resource{ID: desc.Digest.String(), Type: "content"}); err != nil {
			return fmt.Errorf("image %s: lease blob %s: %w", name, desc.Digest, err)
		}
	}
	unpacked, err := c.prepare(ctx, name, target, c.ImageLimits())
	if err != nil {
		return err
	}
	if _, err := c.record(ctx, name, target, unpacked, m.Loaded); err != nil {
		return err
	}
	// The record keeps the blobs now; the transfer leases can go.
	return releaseTransfers()
}

// Pull fetches ref from its registry with containerd's resolver (plain HTTP
// for localhost and 127.0.0.1 registries), within the limits (the blobs'
// sizes are checked before each is fetched), unpacks it and records it with
// the load version loaded. A failed pull leaves nothing behind.
func (c *Containerd) Pull(ctx context.Context, ref, loaded string) (_ Image, err error) {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	if len(loaded) > maxLoadedLen {
		return Image{}, fmt.Errorf("pull %s: load version of %d bytes, more than %d", name, len(loaded), maxLoadedLen)
	}
	lim := c.ImageLimits()
	ctx, end, err := c.withLoadLease(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	defer func() { end(err != nil) }()
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	rname, target, err := resolver.Resolve(ctx, name)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	fetcher, err := resolver.Fetcher(ctx, rname)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	var mu sync.Mutex
	var total int64
	layers := 0
	budget := images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		mu.Lock()
		defer mu.Unlock()
		if d.Size < 0 {
			return nil, fmt.Errorf("pull %s: blob %s of negative size", name, d.Digest)
		}
		if total += d.Size; total > lim.MaxBytes {
			return nil, &LimitError{Image: "image " + name, What: "compressed size", Limit: lim.MaxBytes}
		}
		if images.IsLayerType(d.MediaType) {
			if layers++; layers > lim.MaxLayers {
				return nil, &LimitError{Image: "image " + name, What: "number of layers", Limit: int64(lim.MaxLayers)}
			}
		}
		return nil, nil
	})
	cs := c.client.ContentStore()
	if err := images.Dispatch(ctx, images.Handlers(budget, remotes.FetchHandler(cs, fetcher), c.imageHandler()), nil, target); err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	unpacked, err := c.prepare(ctx, name, target, lim)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	return c.record(ctx, name, target, unpacked, loaded)
}

// LocalImage returns the image ref as held here; an error wrapping
// errdefs.ErrNotFound if it is not.
func (c *Containerd) LocalImage(ctx context.Context, ref string) (Image, error) {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	rec, err := c.client.ImageService().Get(ctx, name)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", name, err)
	}
	return c.imageOf(ctx, rec), nil
}
