package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Chunk relaying: a big blob wanted by several peers at once (a DaemonSet
// of a new image) travels along a chain rather than from its one holder to
// each of them, which would share the holder's link among them all.
//
// A fetcher asks for each chunk with msgChunk. The holder that gave a
// chunk remembers who got it (relayBook); the next peer asking it for that
// chunk is sent to the last one that did (the reply names it), which
// answers from the blob it is still fetching (partialBlobs: it waits for
// that chunk if it is on its way) or from its store. Every link then
// carries each chunk once: holder -> A -> B -> C. A redirect that fails,
// or a peer that does not know msgChunk (an older version), makes the
// fetcher take the chunk from the holder with msgBlob, which never
// redirects. Only blobs of more than relayMinChunks chunks are relayed:
// for small ones a redirect costs more than it saves.
const (
	msgChunk byte = 'C' // request: as msgBlob; reply: chunkData and the bytes, or chunkRedirect and a peer name

	chunkData     byte = 'D'
	chunkRedirect byte = 'R'

	relayMinChunks = 4
	relayWait      = 20 * time.Second // how long a relay waits for a chunk it is fetching
	relayForget    = 10 * time.Minute // a blob's chains are forgotten when unused this long
	relayHops      = 3                // redirects a fetcher follows before asking the holder
)

// errNotHeld answers a chunk request for a blob this peer neither holds nor
// is fetching.
var errNotHeld = errors.New("blob not held here")

// relayBook remembers, per blob and chunk, the peers that got the chunk
// from this peer or were sent on for it, in order.
type relayBook struct {
	mu    sync.Mutex
	blobs map[string]*relayChains
}

type relayChains struct {
	got  map[int64][]string // chunk offset -> peers
	used time.Time
}

// route returns the peer that from, asking for chunk off of blob digest,
// should be sent to ("": serve it from here) and records from as the
// chunk's newest holder. A peer asking again for a chunk it was already
// given or sent on for (a retry: something went wrong) is served here.
func (r *relayBook) route(digest string, off int64, from string, now time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blobs == nil {
		r.blobs = map[string]*relayChains{}
	}
	for d, c := range r.blobs {
		if now.Sub(c.used) > relayForget {
			delete(r.blobs, d)
		}
	}
	c := r.blobs[digest]
	if c == nil {
		c = &relayChains{got: map[int64][]string{}}
		r.blobs[digest] = c
	}
	c.used = now
	peers := c.got[off]
	for _, p := range peers {
		if p == from {
			return ""
		}
	}
	c.got[off] = append(peers, from)
	if len(peers) == 0 {
		return ""
	}
	return peers[len(peers)-1]
}

// partialBlobs are the blobs this peer is fetching, whose chunks it serves
// to peers sent to it as soon as they are written.
type partialBlobs struct {
	mu sync.Mutex
	m  map[string]*partialBlob // by digest
}

type partialBlob struct {
	f     *os.File
	size  int64
	ready []chan struct{} // per chunk: closed once written
}

// add registers a blob being fetched into f; the returned function
// unregisters it.
func (p *partialBlobs) add(digest string, f *os.File, size int64) (*partialBlob, func()) {
	n := int((size + blobChunk - 1) / blobChunk)
	b := &partialBlob{f: f, size: size, ready: make([]chan struct{}, n)}
	for i := range b.ready {
		b.ready[i] = make(chan struct{})
	}
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]*partialBlob{}
	}
	p.m[digest] = b
	p.mu.Unlock()
	return b, func() {
		p.mu.Lock()
		if p.m[digest] == b {
			delete(p.m, digest)
		}
		p.mu.Unlock()
	}
}

// written marks chunk i as written.
func (b *partialBlob) written(i int) { close(b.ready[i]) }

// read returns chunk off..off+length of a blob being fetched, waiting for
// it (relayWait at most) if it is on its way.
func (p *partialBlobs) read(ctx context.Context, digest string, off, length int64) ([]byte, error) {
	p.mu.Lock()
	b := p.m[digest]
	p.mu.Unlock()
	if b == nil {
		return nil, errNotHeld
	}
	if off%blobChunk != 0 || off < 0 || off >= b.size || length != min(int64(blobChunk), b.size-off) {
		return nil, errMalformed
	}
	t := time.NewTimer(relayWait)
	defer t.Stop()
	select {
	case <-b.ready[off/blobChunk]:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("chunk at %d not fetched here within %v", off, relayWait)
	}
	data := make([]byte, length)
	if _, err := b.f.ReadAt(data, off); err != nil {
		return nil, fmt.Errorf("read fetched chunk: %w", err)
	}
	return data, nil
}

// chunkRequest encodes a msgBlob or msgChunk request.
func chunkRequest(kind byte, off, length int64, digest string) []byte {
	req := binary.AppendUvarint([]byte{kind}, uint64(off))
	req = binary.AppendUvarint(req, uint64(length))
	return append(req, digest...)
}

// parseChunkRequest decodes the body of a msgBlob or msgChunk request.
func parseChunkRequest(r []byte) (off, length int64, digest string, err error) {
	o, k := binary.Uvarint(r)
	if k <= 0 || o > 1<<62 {
		return 0, 0, "", errMalformed
	}
	r = r[k:]
	l, k := binary.Uvarint(r)
	if k <= 0 || l > blobChunk {
		return 0, 0, "", errMalformed
	}
	return int64(o), int64(l), string(r[k:]), nil
}

// serveChunk answers msgChunk from peer from: the bytes, from this peer's
// store (or sent on along the chunk's chain) or from a blob it is
// fetching.
func (s *imageSharing) serveChunk(ctx context.Context, from string, body []byte) ([]byte, error) {
	off, length, digest, err := parseChunkRequest(body)
	if err != nil {
		return nil, err
	}
	if held, _ := s.store.HasBlob(ctx, digest); held {
		if to := s.relays.route(digest, off, from, time.Now()); to != "" {
			s.chunksRedirected.Add(1)
			return append([]byte{chunkRedirect}, to...), nil
		}
		data, err := s.store.ReadBlob(ctx, digest, off, length)
		if err != nil {
			return nil, err
		}
		s.blobsServed.Add(1)
		return append([]byte{chunkData}, data...), nil
	}
	data, err := s.partials.read(ctx, digest, off, length)
	if err != nil {
		return nil, err
	}
	s.chunksRelayed.Add(1)
	return append([]byte{chunkData}, data...), nil
}

// fetchChunk fetches one chunk from holder: along the chunk's chain when
// relay is set, else (and whenever the chain fails) from the holder
// itself.
func (s *imageSharing) fetchChunk(ctx context.Context, holder string, off, length int64, digest string, relay bool) ([]byte, error) {
	if relay {
		peer := holder
		for hop := 0; hop <= relayHops; hop++ {
			resp, err := s.peers.Sync(ctx, peer, chunkRequest(msgChunk, off, length, digest))
			if err != nil || len(resp) == 0 {
				break
			}
			if resp[0] == chunkData {
				return resp[1:], nil
			}
			if resp[0] != chunkRedirect || len(resp) == 1 {
				break
			}
			peer = string(resp[1:])
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return s.peers.Sync(ctx, holder, chunkRequest(msgBlob, off, length, digest))
}
