package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/runtime"
)

// Images move between peers over the data plane's request/response
// protocol: every peer publishes the images it holds in the replicated
// state (NodeImages//<peer>, a field per image), so a peer that needs one
// knows who has it without asking everyone. It asks one holder for the
// image's manifest (its blobs), then fetches the blobs it lacks in chunks,
// spread over every holder at once, verifies each blob's digest, and only
// then writes it to its containerd; a corrupt or truncated blob is fetched
// again from another holder and never imported.
const (
	kindNodeImages = "NodeImages"

	msgManifest byte = 'M' // request: image name; reply: JSON runtime.ImageManifest
	msgBlob     byte = 'B' // request: offset, length, digest; reply: the bytes

	blobChunk      = 4 << 20 // bytes per chunk request (the sync protocol carries up to 8 MiB)
	chunkParallel  = 4       // chunk requests in flight per image
	fetchRetries   = 3       // attempts per blob, each from another holder when there is one
	inventoryEvery = 5 * time.Second
)

// errMalformed is a request no peer should send.
var errMalformed = errors.New("malformed image request")

func nodeImagesKey(node string) string { return kindNodeImages + "//" + node }

// imageEntry is what a peer publishes about an image it holds.
type imageEntry struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// imageStore is what image sharing needs from the runtime; the containerd
// driver provides it.
type imageStore interface {
	Images(ctx context.Context) ([]runtime.Image, error)
	HasImage(ctx context.Context, ref string) (bool, error)
	ExportManifest(ctx context.Context, ref string) (runtime.ImageManifest, error)
	ReadBlob(ctx context.Context, digest string, offset, length int64) ([]byte, error)
	HasBlob(ctx context.Context, digest string) (bool, error)
	WriteBlob(ctx context.Context, b runtime.Blob, r io.Reader) error
	CommitImage(ctx context.Context, m runtime.ImageManifest) error
	Pull(ctx context.Context, ref string) (runtime.Image, error)
}

// imageSharing fetches images from other peers and serves this peer's.
type imageSharing struct {
	a       *Agent
	store   imageStore
	corrupt bool // fault injection: serve corrupted blobs (tests)

	mu       sync.Mutex
	inflight map[string]*fetch // by image name

	kick chan struct{} // publish the inventory now

	blobsFetched, bytesFetched, badBlobs, blobsServed atomic.Int64
}

type fetch struct {
	done chan struct{}
	err  error
}

func newImageSharing(a *Agent, st imageStore, corrupt bool) *imageSharing {
	return &imageSharing{a: a, store: st, corrupt: corrupt, inflight: map[string]*fetch{}, kick: make(chan struct{}, 1)}
}

func (s *imageSharing) published() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// inventoryLoop publishes the images this peer holds when they change.
func (s *imageSharing) inventoryLoop(ctx context.Context) {
	t := time.NewTicker(inventoryEvery)
	defer t.Stop()
	for {
		if err := s.publishInventory(ctx); err != nil && ctx.Err() == nil {
			s.a.log.Warn("publish image inventory", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *imageSharing) publishInventory(ctx context.Context) error {
	imgs, err := s.store.Images(ctx)
	if err != nil {
		return err
	}
	key := nodeImagesKey(s.a.cfg.Name)
	stored := s.a.store.rawFields(key)
	changes := map[string]json.RawMessage{}
	held := map[string]bool{}
	for _, img := range imgs {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue
		}
		f := "spec." + img.Name
		held[f] = true
		b, _ := json.Marshal(imageEntry{Name: img.Name, Digest: img.Digest, Size: img.Size})
		if !bytes.Equal(stored[f], b) {
			changes[f] = b
		}
	}
	for f := range stored {
		if strings.HasPrefix(f, "spec.") && !held[f] {
			changes[f] = json.RawMessage("null")
		}
	}
	if len(changes) == 0 {
		return nil
	}
	if len(stored) == 0 {
		changes["apiVersion"] = json.RawMessage(`"chorus.io/v1"`)
		changes["kind"] = json.RawMessage(`"` + kindNodeImages + `"`)
	}
	return s.a.store.writeFields(key, changes)
}

// holders returns the alive peers (not this one) that publish ref.
func (s *imageSharing) holders(ref string) []string {
	var out []string
	for _, m := range s.a.aliveMembers() {
		if m == s.a.cfg.Name {
			continue
		}
		if _, ok := s.a.store.rawFields(nodeImagesKey(m))["spec."+ref]; ok {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out
}

// inventory returns, for every image known in the cluster, its entry and
// how many alive peers hold it.
func (s *imageSharing) inventory() map[string]struct {
	imageEntry
	Peers int
} {
	out := map[string]struct {
		imageEntry
		Peers int
	}{}
	for _, m := range s.a.aliveMembers() {
		for f, raw := range s.a.store.rawFields(nodeImagesKey(m)) {
			if !strings.HasPrefix(f, "spec.") {
				continue
			}
			var e imageEntry
			if json.Unmarshal(raw, &e) != nil || e.Name == "" {
				continue
			}
			cur := out[e.Name]
			cur.imageEntry = e
			cur.Peers++
			out[e.Name] = cur
		}
	}
	return out
}

// ensure makes ref available on this peer: from other peers, or from its
// registry. Concurrent calls for the same image share one fetch.
func (s *imageSharing) ensure(ctx context.Context, ref string) error {
	if ok, err := s.store.HasImage(ctx, ref); err == nil && ok {
		return nil
	}
	s.mu.Lock()
	f, ok := s.inflight[ref]
	if !ok {
		f = &fetch{done: make(chan struct{})}
		s.inflight[ref] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			f.err = s.fetch(fctx, ref)
			cancel()
			s.mu.Lock()
			delete(s.inflight, ref)
			s.mu.Unlock()
			close(f.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *imageSharing) fetch(ctx context.Context, ref string) error {
	holders := s.holders(ref)
	if len(holders) == 0 {
		if !strings.HasPrefix(ref, "docker.io/") {
			s.a.log.Info("pulling image from its registry", "image", ref)
			if _, err := s.store.Pull(ctx, ref); err != nil {
				return fmt.Errorf("image %s is on no peer, and pulling it failed: %w", ref, err)
			}
			s.published()
			return nil
		}
		return fmt.Errorf("image %q is on no peer of the cluster; load it with 'chorus image load'", ref)
	}
	start := time.Now()
	var m runtime.ImageManifest
	var err error
	for _, h := range holders {
		if m, err = s.manifestFrom(ctx, h, ref); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("image %s: no holder gave its manifest: %w", ref, err)
	}
	var total int64
	for i, b := range m.Blobs {
		if ok, _ := s.store.HasBlob(ctx, b.Digest); ok {
			continue
		}
		var lastErr error
		for attempt := 0; attempt < fetchRetries; attempt++ {
			// The first attempt spreads the chunks over every holder; after a
			// failure (a corrupt or truncated transfer: which holder sent the
			// bad chunk is unknown), each attempt takes the whole blob from
			// one holder, another each time.
			rot := append(append([]string{}, holders[(i+attempt)%len(holders):]...), holders[:(i+attempt)%len(holders)]...)
			if attempt > 0 {
				rot = rot[:1]
			}
			lastErr = s.fetchBlob(ctx, rot, b)
			if lastErr == nil {
				break
			}
			s.a.log.Warn("blob transfer failed; retrying from another peer", "image", ref, "blob", b.Digest, "err", lastErr)
		}
		if lastErr != nil {
			return fmt.Errorf("image %s: blob %s: %w", ref, b.Digest, lastErr)
		}
		total += b.Size
	}
	if err := s.store.CommitImage(ctx, m); err != nil {
		return fmt.Errorf("import %s: %w", ref, err)
	}
	s.a.log.Info("image fetched from peers", "image", ref, "peers", len(holders), "bytes", total, "took", time.Since(start).Round(time.Millisecond))
	s.published()
	return nil
}

func (s *imageSharing) manifestFrom(ctx context.Context, peer, ref string) (runtime.ImageManifest, error) {
	var m runtime.ImageManifest
	resp, err := s.a.gossip.Sync(ctx, peer, append([]byte{msgManifest}, ref...))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(resp, &m); err != nil {
		return m, fmt.Errorf("manifest from %s: %w", peer, err)
	}
	if m.Target.Digest == "" || len(m.Blobs) == 0 {
		return m, fmt.Errorf("manifest from %s is empty", peer)
	}
	return m, nil
}

// fetchBlob fetches one blob in chunks spread over holders, into a temp
// file, and writes it to the runtime, which checks its digest.
func (s *imageSharing) fetchBlob(ctx context.Context, holders []string, b runtime.Blob) error {
	f, err := os.CreateTemp("", "chorus-blob-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n := int((b.Size + blobChunk - 1) / blobChunk)
	sem := make(chan struct{}, chunkParallel)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		off := int64(i) * blobChunk
		length := min(int64(blobChunk), b.Size-off)
		peer := holders[i%len(holders)]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req := binary.AppendUvarint([]byte{msgBlob}, uint64(off))
			req = binary.AppendUvarint(req, uint64(length))
			req = append(req, b.Digest...)
			// A transient refusal (a peer that has not yet seen this one
			// join, a reset stream) is retried on the same peer.
			var data []byte
			var err error
			for try := 0; try < 3; try++ {
				if data, err = s.a.gossip.Sync(ctx, peer, req); err == nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
			}
			if err != nil {
				errs <- fmt.Errorf("chunk %d from %s: %w", i, peer, err)
				return
			}
			if int64(len(data)) != length {
				errs <- fmt.Errorf("chunk %d from %s: %d bytes, want %d (truncated)", i, peer, len(data), length)
				return
			}
			if _, err := f.WriteAt(data, off); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := s.store.WriteBlob(ctx, b, f); err != nil {
		if errors.Is(err, runtime.ErrDigestMismatch) {
			s.badBlobs.Add(1)
		}
		return err
	}
	s.blobsFetched.Add(1)
	s.bytesFetched.Add(b.Size)
	return nil
}

// serve answers image requests from other peers.
func (s *imageSharing) serve(ctx context.Context, req []byte) ([]byte, error) {
	switch req[0] {
	case msgManifest:
		m, err := s.store.ExportManifest(ctx, string(req[1:]))
		if err != nil {
			return nil, err
		}
		return json.Marshal(m)
	case msgBlob:
		r := req[1:]
		off, k := binary.Uvarint(r)
		if k <= 0 {
			return nil, errMalformed
		}
		r = r[k:]
		length, k := binary.Uvarint(r)
		if k <= 0 || length > blobChunk {
			return nil, errMalformed
		}
		data, err := s.store.ReadBlob(ctx, string(r[k:]), int64(off), int64(length))
		if err != nil {
			return nil, err
		}
		if s.corrupt && len(data) > 0 {
			data = append([]byte(nil), data...)
			data[len(data)/2] ^= 0xff
		}
		s.blobsServed.Add(1)
		return data, nil
	}
	return nil, fmt.Errorf("unknown image request %q", req[0])
}
