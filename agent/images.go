package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/crdt"
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
//
// A tag can be loaded again with new content. Every load is stamped with
// the loading peer's hybrid logical clock (its version, kept on the image
// record and carried by every copy), and the newest version of a name held
// by an alive peer is the name's current content. A peer whose copy is
// older fetches the current one: in the background as soon as it learns
// of it, and in any case before it starts a container from the name. Pods
// already running keep the content they started with (as in Kubernetes:
// `rollout restart` starts them again).
//
// Removal and garbage collection: `image rm` removes an image from this
// peer (refused while a pod here uses it, unless forced). Every minute
// (or every --image-gc-after if shorter), when --image-gc-after is set
// (24h by default), an image that no pod on this peer has used for that
// long (counted from the agent's start, the image's load or fetch, or the
// last pod using it) is removed if an alive peer whose name sorts before
// this one holds the same content: of the peers holding it, the first by
// name always keeps it, so peers collecting at the same time never remove
// the cluster's last copy. `image prune` removes at once every image no
// pod here uses that any other alive peer holds with the same content;
// `image prune --all` every image no pod here uses.
const (
	kindNodeImages = "NodeImages"

	msgManifest byte = 'M' // request: image name; reply: JSON runtime.ImageManifest
	msgBlob     byte = 'B' // request: offset, length, digest; reply: the bytes

	blobChunk      = 4 << 20 // bytes per chunk request (the sync protocol carries up to 8 MiB)
	chunkParallel  = 4       // chunk requests in flight per image
	fetchRetries   = 3       // attempts per blob, each from another holder when there is one
	inventoryEvery = 5 * time.Second
	gcEvery        = time.Minute
)

// errMalformed is a request no peer should send.
var errMalformed = errors.New("malformed image request")

func nodeImagesKey(node string) string { return kindNodeImages + "//" + node }

// imageEntry is what a peer publishes about an image it holds.
type imageEntry struct {
	Name     string `json:"name"`
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Unpacked int64  `json:"unpacked,omitempty"`
	Loaded   string `json:"loaded,omitempty"` // the load's version (loadVersion)
}

func entryOf(img runtime.Image) imageEntry {
	return imageEntry{Name: img.Name, Digest: img.Digest, Size: img.Size, Unpacked: img.Unpacked, Loaded: img.Loaded}
}

// loadVersion is a load's version: a stamp of this peer's hybrid logical
// clock, "wall.logical@node", so that a load made after another was seen
// orders after it whatever the peers' wall clocks say.
func (s *imageSharing) loadVersion() string { return s.replicated.Now().String() }

// version is a parsed load version; the zero version (no or a malformed
// label: an image loaded before versions were kept) orders first.
type version struct {
	wall    int64
	logical uint64
	node    string
}

func parseVersion(s string) version {
	num, node, ok := strings.Cut(s, "@")
	if !ok {
		return version{}
	}
	w, l, ok := strings.Cut(num, ".")
	if !ok {
		return version{}
	}
	wall, err1 := strconv.ParseInt(w, 10, 64)
	logical, err2 := strconv.ParseUint(l, 10, 32)
	if err1 != nil || err2 != nil || wall < 0 {
		return version{}
	}
	return version{wall: wall, logical: logical, node: node}
}

func (v version) compare(o version) int {
	if c := cmp.Compare(v.wall, o.wall); c != 0 {
		return c
	}
	if c := cmp.Compare(v.logical, o.logical); c != 0 {
		return c
	}
	return strings.Compare(v.node, o.node)
}

// newer reports whether a is newer content than b for the same name: a
// later load version, or for equal versions the larger digest (any fixed
// rule does: every peer picks the same).
func newer(a, b imageEntry) bool {
	if c := parseVersion(a.Loaded).compare(parseVersion(b.Loaded)); c != 0 {
		return c > 0
	}
	return a.Digest > b.Digest
}

// imageStore is what image sharing needs from the runtime; the containerd
// driver provides it.
type imageStore interface {
	Images(ctx context.Context) ([]runtime.Image, error)
	LocalImage(ctx context.Context, ref string) (runtime.Image, error)
	HasImage(ctx context.Context, ref string) (bool, error)
	LoadImages(ctx context.Context, r io.Reader, loaded string) ([]runtime.Image, error)
	RemoveImage(ctx context.Context, ref string) error
	ImageLimits() runtime.ImageLimits
	ExportManifest(ctx context.Context, ref string) (runtime.ImageManifest, error)
	ReadBlob(ctx context.Context, digest string, offset, length int64) ([]byte, error)
	HasBlob(ctx context.Context, digest string) (bool, error)
	WriteBlob(ctx context.Context, b runtime.Blob, r io.Reader) error
	CommitImage(ctx context.Context, m runtime.ImageManifest) error
	Pull(ctx context.Context, ref, loaded string) (runtime.Image, error)
}

// imageInventory is where peers publish the images they hold: the
// replicated state (*state.Store).
type imageInventory interface {
	RawFields(key string) map[string]json.RawMessage
	WriteFields(key string, fields map[string]json.RawMessage) error
	Now() crdt.Stamp // a load version: later loads order after earlier ones
}

// imagePeers is the cluster as image sharing sees it: the alive members
// (this peer included) and a request to one of them.
type imagePeers interface {
	Alive() []string
	Sync(ctx context.Context, member string, req []byte) ([]byte, error)
}

// imageDeps is what image sharing is given by the peer it runs in.
type imageDeps struct {
	self       string // this peer's name
	log        *slog.Logger
	gcAfter    time.Duration  // unused images are removed after this (0: never)
	replicated imageInventory // the replicated state, where inventories are published
	peers      imagePeers
	// inUse returns the images the pods of this peer use (name -> digest
	// or "").
	inUse func() map[string]string
}

// imageSharing fetches images from other peers and serves this peer's.
type imageSharing struct {
	imageDeps
	store imageStore

	mu       sync.Mutex
	inflight map[string]*fetch    // by image name
	refusals map[string]refusal   // by digest, or "pull <name>": images over the limits
	tried    map[string]time.Time // by name@digest: background refreshes started
	lastUsed map[string]time.Time // by image name: the last time a pod here used it (or it came)
	lastGC   time.Time

	kick chan struct{} // publish the inventory now

	relays   relayBook    // who got which chunk from here (imagerelay.go)
	partials partialBlobs // blobs being fetched, served to peers sent here

	blobsFetched, bytesFetched, badBlobs, blobsServed atomic.Int64
	chunksRedirected, chunksRelayed                   atomic.Int64
}

type fetch struct {
	done chan struct{}
	err  error
}

func newImageSharing(deps imageDeps, st imageStore) *imageSharing {
	return &imageSharing{imageDeps: deps, store: st, inflight: map[string]*fetch{}, lastUsed: map[string]time.Time{}, refusals: map[string]refusal{}, tried: map[string]time.Time{}, kick: make(chan struct{}, 1)}
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
		imgs, err := s.publishInventory(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("publish image inventory", "err", err)
		}
		if err == nil {
			s.refreshStale(ctx, imgs)
			if now := time.Now(); s.gcAfter > 0 && now.Sub(s.lastGC) >= min(gcEvery, s.gcAfter) {
				s.lastGC = now
				if _, err := s.collect(ctx, imgs, now, s.gcAfter); err != nil && ctx.Err() == nil {
					s.log.Warn("image garbage collection", "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// publishInventory publishes the images this peer holds and returns them.
func (s *imageSharing) publishInventory(ctx context.Context) ([]runtime.Image, error) {
	imgs, err := s.store.Images(ctx)
	if err != nil {
		return nil, err
	}
	key := nodeImagesKey(s.self)
	stored := s.replicated.RawFields(key)
	changes := map[string]json.RawMessage{}
	held := map[string]bool{}
	for _, img := range imgs {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue
		}
		f := "spec." + img.Name
		held[f] = true
		b, _ := json.Marshal(entryOf(img))
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
		return imgs, nil
	}
	if len(stored) == 0 {
		changes["apiVersion"] = json.RawMessage(`"chorus.io/v1"`)
		changes["kind"] = json.RawMessage(`"` + kindNodeImages + `"`)
	}
	return imgs, s.replicated.WriteFields(key, changes)
}

// publishedEntries returns the entries for ref that alive peers publish,
// by peer (this one included, as last published).
func (s *imageSharing) publishedEntries(ref string) map[string]imageEntry {
	out := map[string]imageEntry{}
	for _, m := range s.peers.Alive() {
		raw, ok := s.replicated.RawFields(nodeImagesKey(m))["spec."+ref]
		if !ok {
			continue
		}
		var e imageEntry
		if json.Unmarshal(raw, &e) != nil || e.Name != ref || e.Digest == "" {
			continue
		}
		out[m] = e
	}
	return out
}

// newest returns the current content of ref: the newest entry that an
// alive peer publishes, or local (this peer's copy as it is now, when it
// holds one) if it is newer still; and the other peers that publish that
// content.
func (s *imageSharing) newest(ref string, local *imageEntry) (cur imageEntry, holders []string, ok bool) {
	entries := s.publishedEntries(ref)
	if local != nil {
		entries[s.self] = *local
	} else {
		delete(entries, s.self)
	}
	for _, e := range entries {
		if !ok || newer(e, cur) {
			cur, ok = e, true
		}
	}
	for m, e := range entries {
		if m != s.self && e.Digest == cur.Digest {
			holders = append(holders, m)
		}
	}
	sort.Strings(holders)
	return cur, holders, ok
}

// stale reports whether this peer holds ref at older content than another
// alive peer does.
func (s *imageSharing) stale(ctx context.Context, ref string) bool {
	img, err := s.store.LocalImage(ctx, ref)
	if err != nil {
		return false
	}
	local := entryOf(img)
	cur, _, _ := s.newest(ref, &local)
	return cur.Digest != local.Digest
}

// refreshStale fetches, in the background, the current content of every
// image this peer holds at older content than another peer.
func (s *imageSharing) refreshStale(ctx context.Context, imgs []runtime.Image) {
	for _, img := range imgs {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue
		}
		local := entryOf(img)
		cur, holders, _ := s.newest(img.Name, &local)
		if cur.Digest == local.Digest || len(holders) == 0 {
			continue
		}
		key := img.Name + "@" + cur.Digest
		now := time.Now()
		s.mu.Lock()
		_, busy := s.inflight[img.Name]
		recent := now.Sub(s.tried[key]) < refreshBackoff
		if !busy && !recent {
			if len(s.tried) >= maxRemembered {
				clear(s.tried)
			}
			s.tried[key] = now
		}
		s.mu.Unlock()
		if !busy && !recent && s.refused(cur.Digest) == nil {
			s.log.Info("image has newer content on other peers; fetching it", "image", img.Name, "have", local.Digest, "current", cur.Digest)
			s.start(ctx, img.Name)
		}
	}
}

// inventory returns, for every image known in the cluster, its current
// entry (the newest content) and how many alive peers hold that content.
func (s *imageSharing) inventory() map[string]struct {
	imageEntry
	Peers int
} {
	out := map[string]struct {
		imageEntry
		Peers int
	}{}
	for _, m := range s.peers.Alive() {
		for f, raw := range s.replicated.RawFields(nodeImagesKey(m)) {
			if !strings.HasPrefix(f, "spec.") {
				continue
			}
			var e imageEntry
			if json.Unmarshal(raw, &e) != nil || e.Name == "" {
				continue
			}
			cur, ok := out[e.Name]
			switch {
			case !ok || newer(e, cur.imageEntry):
				cur.imageEntry, cur.Peers = e, 1
			case e.Digest == cur.Digest:
				cur.Peers++
			}
			out[e.Name] = cur
		}
	}
	return out
}

// ensure makes ref available on this peer at its current content: from
// other peers, or from its registry. Concurrent calls for the same image
// share one fetch.
func (s *imageSharing) ensure(ctx context.Context, ref string) error {
	if !s.stale(ctx, ref) {
		if ok, err := s.store.HasImage(ctx, ref); err == nil && ok {
			s.used(ref)
			return nil
		}
	}
	f := s.start(ctx, ref)
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start starts fetching ref, or joins the fetch under way.
func (s *imageSharing) start(ctx context.Context, ref string) *fetch {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.inflight[ref]
	if !ok {
		f = &fetch{done: make(chan struct{})}
		s.inflight[ref] = f
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			f.err = s.fetch(fctx, ref)
			cancel()
			if f.err == nil {
				s.used(ref)
			}
			s.mu.Lock()
			delete(s.inflight, ref)
			s.mu.Unlock()
			close(f.done)
		}()
	}
	return f
}

// refusal is a fetch refused for a limit: the same content is not fetched
// again (the limits do not change while the agent runs) before retryRefused.
type refusal struct {
	err error
	at  time.Time
}

const (
	retryRefused   = 10 * time.Minute // a pull: the registry's tag may have moved
	refreshBackoff = time.Minute      // between background refreshes of the same content
	maxRemembered  = 1000
)

// refuse remembers err for key if it is about a limit.
func (s *imageSharing) refuse(key string, err error) {
	if !errors.Is(err, runtime.ErrImageTooLarge) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.refusals) >= maxRemembered {
		clear(s.refusals)
	}
	s.refusals[key] = refusal{err: err, at: time.Now()}
}

// refused returns the error of an earlier refusal of key, if it still holds.
func (s *imageSharing) refused(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.refusals[key]
	if !ok {
		return nil
	}
	if strings.HasPrefix(key, "pull ") && time.Since(r.at) > retryRefused {
		delete(s.refusals, key)
		return nil
	}
	return r.err
}

// used records that ref was used (or came) now.
func (s *imageSharing) used(ref string) {
	s.mu.Lock()
	s.lastUsed[ref] = time.Now()
	s.mu.Unlock()
}

func (s *imageSharing) fetch(ctx context.Context, ref string) error {
	var local *imageEntry
	if img, err := s.store.LocalImage(ctx, ref); err == nil {
		e := entryOf(img)
		local = &e
	}
	cur, holders, _ := s.newest(ref, local)
	if local != nil && cur.Digest == local.Digest {
		return nil // fetched meanwhile, or the newest content is here
	}
	if len(holders) == 0 {
		if !strings.HasPrefix(ref, "docker.io/") {
			if err := s.refused("pull " + ref); err != nil {
				return err
			}
			s.log.Info("pulling image from its registry", "image", ref)
			if _, err := s.store.Pull(ctx, ref, s.loadVersion()); err != nil {
				err = fmt.Errorf("image %s is on no peer, and pulling it failed: %w", ref, withLimitFlag(err))
				s.refuse("pull "+ref, err)
				return err
			}
			s.published()
			return nil
		}
		return fmt.Errorf("image %q is on no peer of the cluster; load it with 'chorus image load'", ref)
	}
	if err := s.refused(cur.Digest); err != nil {
		return err
	}
	start := time.Now()
	var m runtime.ImageManifest
	var err error
	for _, h := range holders {
		if m, err = s.manifestFrom(ctx, h, ref); err == nil && m.Target.Digest != cur.Digest {
			err = fmt.Errorf("%s now holds %s, not %s", h, m.Target.Digest, cur.Digest)
		}
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("image %s: no holder gave its manifest: %w", ref, err)
	}
	// What cannot fit is refused before anything is fetched.
	lim := s.store.ImageLimits()
	var compressed int64
	for _, b := range m.Blobs {
		compressed += max(b.Size, 0)
	}
	if compressed > lim.MaxBytes {
		err := withLimitFlag(&runtime.LimitError{Image: "image " + ref, What: "compressed size", Limit: lim.MaxBytes})
		s.refuse(cur.Digest, err)
		return err
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
			s.log.Warn("blob transfer failed; retrying from another peer", "image", ref, "blob", b.Digest, "err", lastErr)
		}
		if lastErr != nil {
			return fmt.Errorf("image %s: blob %s: %w", ref, b.Digest, lastErr)
		}
		total += b.Size
	}
	if err := s.store.CommitImage(ctx, m); err != nil {
		err = fmt.Errorf("import %s: %w", ref, withLimitFlag(err))
		s.refuse(cur.Digest, err)
		return err
	}
	s.log.Info("image fetched from peers", "image", ref, "peers", len(holders), "bytes", total, "took", time.Since(start).Round(time.Millisecond))
	s.published()
	return nil
}

func (s *imageSharing) manifestFrom(ctx context.Context, peer, ref string) (runtime.ImageManifest, error) {
	var m runtime.ImageManifest
	resp, err := s.peers.Sync(ctx, peer, append([]byte{msgManifest}, ref...))
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
	relay := n > relayMinChunks
	var partial *partialBlob
	if relay {
		var done func()
		partial, done = s.partials.add(b.Digest, f, b.Size)
		defer done()
	}
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
			// A transient refusal (a peer that has not yet seen this one
			// join, a reset stream) is retried on the same peer.
			var data []byte
			var err error
			for try := 0; try < 3; try++ {
				if data, err = s.fetchChunk(ctx, peer, off, length, b.Digest, relay && try == 0); err == nil {
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
				return
			}
			if partial != nil {
				partial.written(i)
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
func (s *imageSharing) serve(ctx context.Context, from string, req []byte) ([]byte, error) {
	switch req[0] {
	case msgManifest:
		m, err := s.store.ExportManifest(ctx, string(req[1:]))
		if err != nil {
			return nil, err
		}
		return json.Marshal(m)
	case msgBlob:
		off, length, digest, err := parseChunkRequest(req[1:])
		if err != nil {
			return nil, err
		}
		data, err := s.store.ReadBlob(ctx, digest, off, length)
		if err != nil {
			return nil, err
		}
		s.blobsServed.Add(1)
		return data, nil
	case msgChunk:
		return s.serveChunk(ctx, from, req[1:])
	}
	return nil, fmt.Errorf("unknown image request %q", req[0])
}

// withLimitFlag names the agent flag that sets a byte limit in an error
// about an image over it.
func withLimitFlag(err error) error {
	var le *runtime.LimitError
	if errors.As(err, &le) && strings.HasSuffix(le.What, "size") {
		return fmt.Errorf("%w (--max-image-size)", err)
	}
	if errors.As(err, &le) && le.What == "expansion" {
		return fmt.Errorf("%w (--max-image-expansion)", err)
	}
	return err
}

// podRuntime is the runtime the pod manager drives: the containerd driver,
// except that an image this peer holds at older content than another peer
// does not count as held, so the pod manager asks for it (EnsureImage)
// before it starts a container from it.
type podRuntime struct {
	*runtime.Containerd
	a *Agent
}

// HasImage implements runtime.Runtime.
func (p podRuntime) HasImage(ctx context.Context, ref string) (bool, error) {
	if s := p.a.images; s != nil && s.stale(ctx, ref) {
		return false, nil
	}
	return p.Containerd.HasImage(ctx, ref)
}

// podImages returns the images (normalized) that the pods on this peer use,
// each with one of the pods.
func (a *Agent) podImages() map[string]string {
	out := map[string]string{}
	if a.pods == nil {
		return out
	}
	for _, p := range a.pods.Pods() {
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			name, err := runtime.NormalizeImage(c.Image)
			if err != nil {
				name = c.Image
			}
			out[name] = p.Metadata.Namespace + "/" + p.Metadata.Name
		}
	}
	return out
}

// gcCandidates returns the images to remove, by name: those no pod uses
// (inUse), unused since before now-after (lastUsed; an image with no entry
// counts as used now), that another peer keeps (keptElsewhere). With after
// <= 0 the age is not checked (prune); with all, neither is keptElsewhere
// (prune --all). Pure.
func gcCandidates(imgs []runtime.Image, inUse map[string]string, lastUsed map[string]time.Time, keptElsewhere func(runtime.Image) bool, now time.Time, after time.Duration, all bool) []string {
	var out []string
	for _, img := range imgs {
		if strings.HasPrefix(img.Name, "sha256:") {
			continue
		}
		if _, ok := inUse[img.Name]; ok {
			continue
		}
		if after > 0 {
			t, ok := lastUsed[img.Name]
			if !ok || now.Sub(t) < after {
				continue
			}
		}
		if !all && !keptElsewhere(img) {
			continue
		}
		out = append(out, img.Name)
	}
	sort.Strings(out)
	return out
}

// heldElsewhere reports whether another alive peer publishes img with the
// same content.
func (s *imageSharing) heldElsewhere(img runtime.Image) bool {
	for m, e := range s.publishedEntries(img.Name) {
		if m != s.self && e.Digest == img.Digest {
			return true
		}
	}
	return false
}

// heldBefore reports whether an alive peer whose name sorts before this
// one publishes img with the same content (the rule of automatic
// collection: the first holder by name keeps its copy).
func (s *imageSharing) heldBefore(img runtime.Image) bool {
	for m, e := range s.publishedEntries(img.Name) {
		if m < s.self && e.Digest == img.Digest {
			return true
		}
	}
	return false
}

// collect removes the images gcCandidates names (after > 0: automatic
// collection, after <= 0: prune) and returns them.
func (s *imageSharing) collect(ctx context.Context, imgs []runtime.Image, now time.Time, after time.Duration) ([]runtime.Image, error) {
	return s.remove(ctx, imgs, now, after, false)
}

func (s *imageSharing) remove(ctx context.Context, imgs []runtime.Image, now time.Time, after time.Duration, all bool) ([]runtime.Image, error) {
	inUse := s.inUse()
	s.mu.Lock()
	for name := range inUse {
		s.lastUsed[name] = now
	}
	for _, img := range imgs {
		if _, ok := s.lastUsed[img.Name]; !ok {
			s.lastUsed[img.Name] = now // first seen: the agent's start
		}
	}
	lastUsed := maps.Clone(s.lastUsed)
	s.mu.Unlock()
	byName := map[string]runtime.Image{}
	for _, img := range imgs {
		byName[img.Name] = img
	}
	kept := s.heldElsewhere
	if after > 0 {
		kept = s.heldBefore
	}
	var removed []runtime.Image
	for _, name := range gcCandidates(imgs, inUse, lastUsed, kept, now, after, all) {
		s.mu.Lock()
		_, busy := s.inflight[name]
		s.mu.Unlock()
		if busy {
			continue
		}
		if err := s.store.RemoveImage(ctx, name); err != nil {
			return removed, err
		}
		s.mu.Lock()
		delete(s.lastUsed, name)
		s.mu.Unlock()
		img := byName[name]
		removed = append(removed, img)
		s.log.Info("image removed", "image", name, "digest", img.Digest, "unpacked", img.Unpacked,
			"why", map[bool]string{true: "unused for " + after.String(), false: "pruned"}[after > 0])
	}
	if len(removed) > 0 {
		s.published()
	}
	return removed, nil
}
