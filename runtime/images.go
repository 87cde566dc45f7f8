package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes/docker"
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
	m := ImageManifest{Name: img.Name, Target: blobOf(img.Target)}
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

// CommitImage creates (or updates) the image record m.Name -> m.Target once
// every blob the image needs on this platform is held, sets the GC labels
// that make the record keep its children, unpacks it into the snapshotter
// and releases the blobs' transfer leases.
func (c *Containerd) CommitImage(ctx context.Context, m ImageManifest) error {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(m.Name)
	if err != nil {
		return err
	}
	target, err := m.Target.descriptor()
	if err != nil {
		return fmt.Errorf("image %s: target: %w", name, err)
	}
	ctx, done, err := c.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("image %s: lease: %w", name, err)
	}
	defer done(context.WithoutCancel(ctx)) //nolint:errcheck
	leaseID, _ := leases.FromContext(ctx)
	ls := c.client.LeasesService()
	cs := c.client.ContentStore()

	// Hold every blob named by the manifest for the duration of the commit.
	held := map[digest.Digest]bool{}
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

	// Walk the image as it is stored here, labelling each parent with its
	// children (containerd.io/gc.ref.content.*) as client.Import does.
	needed, err := walkImage(ctx, images.SetChildrenLabels(cs, c.imageHandler()), target)
	if err != nil {
		return fmt.Errorf("image %s: %w", name, err)
	}
	for _, d := range needed {
		info, err := cs.Info(ctx, d.Digest)
		if errdefs.IsNotFound(err) {
			return fmt.Errorf("image %s: blob %s (%s) is not held: %w", name, d.Digest, d.MediaType, err)
		}
		if err != nil {
			return fmt.Errorf("image %s: blob %s: %w", name, d.Digest, err)
		}
		if info.Size != d.Size {
			return fmt.Errorf("image %s: blob %s holds %d bytes, want %d", name, d.Digest, info.Size, d.Size)
		}
	}

	is := c.client.ImageService()
	rec := images.Image{Name: name, Target: target}
	img, err := is.Update(ctx, rec, "target")
	if errdefs.IsNotFound(err) {
		img, err = is.Create(ctx, rec)
	}
	if err != nil {
		return fmt.Errorf("image %s: record: %w", name, err)
	}
	if err := containerd.NewImage(c.client, img).Unpack(ctx, c.snapshotter); err != nil {
		return fmt.Errorf("unpack %s: %w", name, err)
	}

	// The record keeps the blobs now; the transfer leases can go.
	for d := range held {
		if err := ls.Delete(ctx, leases.Lease{ID: transferLeaseID(d)}); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("image %s: release transfer lease of %s: %w", name, d, err)
		}
	}
	return nil
}

// Pull fetches ref from its registry with containerd's resolver (plain HTTP
// for localhost and 127.0.0.1 registries), unpacks it and returns the image.
func (c *Containerd) Pull(ctx context.Context, ref string) (Image, error) {
	ctx = c.ctx(ctx)
	name, err := NormalizeImage(ref)
	if err != nil {
		return Image{}, err
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	img, err := c.client.Pull(ctx, name,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(c.snapshotter),
	)
	if err != nil {
		return Image{}, fmt.Errorf("pull %s: %w", name, err)
	}
	size, _ := img.Size(ctx)
	return Image{Name: img.Name(), Digest: img.Target().Digest.String(), Size: size}, nil
}
