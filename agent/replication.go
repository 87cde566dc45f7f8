package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/state"
)

// Anti-entropy messages on the sync protocol. A round is two exchanges:
//
//	A -> B  msgDigest  A's digest
//	B -> A             B's digest, and the key hashes of B's keys in the
//	                   buckets where the digests differ (nothing if equal)
//	A -> B  msgExchange the keys that differ, and A's registers of them
//	B -> A             B's registers of those keys
//
// Peers that agree exchange one digest each way and nothing else.
const (
	msgDigest   byte = 'D'
	msgExchange byte = 'X'
)

// syncTransport is what replication needs from the data plane; gossip.Node
// provides it.
type syncTransport interface {
	Publish(ctx context.Context, data []byte) error
	Sync(ctx context.Context, member string, req []byte) ([]byte, error)
}

// replicator spreads local writes and merges remote ones: deltas by
// publish/subscribe, and a periodic anti-entropy round with a random live
// peer that repairs whatever gossip lost.
type replicator struct {
	store *state.Store
	tr    syncTransport
	log   *slog.Logger

	malformed atomic.Int64 // undecodable messages dropped
	rounds    atomic.Int64 // anti-entropy rounds that transferred registers
	bytesOut  atomic.Int64 // bytes this peer sent for replication
	bytesIn   atomic.Int64
}

func newReplicator(st *state.Store, tr syncTransport, log *slog.Logger) *replicator {
	return &replicator{store: st, tr: tr, log: log}
}

// publishLoop publishes the store's local deltas until ctx is done.
func (r *replicator) publishLoop(ctx context.Context) {
	var dropped int64
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-r.store.Local():
			if n := r.store.LocalDropped(); n > dropped {
				r.log.Warn("publish queue was full: anti-entropy carries the changes dropped", "dropped", n-dropped)
				dropped = n
			}
			b, err := crdt.EncodeDelta(d)
			if err != nil {
				r.log.Error("encode delta", "err", err)
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := r.tr.Publish(pctx, b); err != nil && ctx.Err() == nil {
				r.log.Warn("publish delta", "err", err)
			}
			cancel()
			r.bytesOut.Add(int64(len(b)))
		}
	}
}

// receive merges one delta published by another peer. A malformed one is
// dropped and counted.
func (r *replicator) receive(from string, data []byte) {
	r.bytesIn.Add(int64(len(data)))
	d, err := crdt.DecodeDelta(data)
	if err != nil {
		r.malformed.Add(1)
		r.log.Warn("dropped malformed delta", "from", from, "err", err)
		return
	}
	if _, err := r.store.Merge(d); err != nil {
		r.log.Warn("dropped delta", "from", from, "err", err)
	}
}

// handleSync answers another peer's anti-entropy requests.
func (r *replicator) handleSync(ctx context.Context, from string, req []byte) ([]byte, error) {
	r.bytesIn.Add(int64(len(req)))
	if len(req) == 0 {
		r.malformed.Add(1)
		return nil, errors.New("empty sync request")
	}
	resp, err := r.answer(req)
	if err != nil {
		r.malformed.Add(1)
		return nil, err
	}
	r.bytesOut.Add(int64(len(resp)))
	return resp, nil
}

func (r *replicator) answer(req []byte) ([]byte, error) {
	switch req[0] {
	case msgDigest:
		theirs, err := crdt.DecodeDigest(req[1:])
		if err != nil {
			return nil, err
		}
		var mine crdt.Digest
		var kh map[string]uint64
		r.store.Read(func(st *crdt.State) {
			mine = st.Digest()
			if diff := crdt.DiffDigest(mine, theirs); len(diff) > 0 {
				kh = st.BucketKeys(diff)
			}
		})
		db, err := crdt.EncodeDigest(mine)
		if err != nil {
			return nil, err
		}
		if kh == nil {
			return frame(db), nil
		}
		khb, err := crdt.EncodeKeyHashes(kh)
		if err != nil {
			return nil, err
		}
		return frame(db, khb), nil
	case msgExchange:
		parts, err := unframe(req[1:], 2)
		if err != nil {
			return nil, err
		}
		keysMap, err := crdt.DecodeKeyHashes(parts[0])
		if err != nil {
			return nil, err
		}
		d, err := crdt.DecodeDelta(parts[1])
		if err != nil {
			return nil, err
		}
		if _, err := r.store.Merge(d); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(keysMap))
		for k := range keysMap {
			keys = append(keys, k)
		}
		var mine crdt.Delta
		r.store.Read(func(st *crdt.State) { mine = st.DeltaFor(keys) })
		return crdt.EncodeDelta(mine)
	}
	return nil, fmt.Errorf("unknown sync message type %q", req[0])
}

// round runs one anti-entropy round with peer; it returns how many keys
// differed.
func (r *replicator) round(ctx context.Context, peer string) (int, error) {
	if r.store.ResetIfStale() {
		r.log.Warn("this peer was away longer than the tombstone horizon: its state is discarded and rebuilt from " + peer)
	}
	var digest crdt.Digest
	r.store.Read(func(st *crdt.State) { digest = st.Digest() })
	db, err := crdt.EncodeDigest(digest)
	if err != nil {
		return 0, err
	}
	req := append([]byte{msgDigest}, db...)
	r.bytesOut.Add(int64(len(req)))
	resp, err := r.tr.Sync(ctx, peer, req)
	if err != nil {
		return 0, err
	}
	r.bytesIn.Add(int64(len(resp)))
	parts, err := unframe(resp, -1)
	if err != nil || len(parts) == 0 {
		r.malformed.Add(1)
		return 0, fmt.Errorf("digest reply from %s: %v", peer, err)
	}
	theirDigest, err := crdt.DecodeDigest(parts[0])
	if err != nil {
		r.malformed.Add(1)
		return 0, fmt.Errorf("digest reply from %s: %w", peer, err)
	}
	diff := crdt.DiffDigest(digest, theirDigest)
	if len(diff) == 0 {
		r.recordSync()
		return 0, nil
	}
	theirs := map[string]uint64{}
	if len(parts) > 1 {
		if theirs, err = crdt.DecodeKeyHashes(parts[1]); err != nil {
			r.malformed.Add(1)
			return 0, fmt.Errorf("key hashes from %s: %w", peer, err)
		}
	}
	var mineD crdt.Delta
	keys := map[string]uint64{}
	r.store.Read(func(st *crdt.State) {
		mine := st.BucketKeys(diff)
		for _, k := range crdt.DiffKeys(mine, theirs) {
			keys[k] = 0
		}
		for _, k := range crdt.DiffKeys(theirs, mine) {
			keys[k] = 0
		}
		list := make([]string, 0, len(keys))
		for k := range keys {
			list = append(list, k)
		}
		mineD = st.DeltaFor(list)
	})
	if len(keys) == 0 {
		return 0, nil
	}
	kb, err := crdt.EncodeKeyHashes(keys)
	if err != nil {
		return 0, err
	}
	dbytes, err := crdt.EncodeDelta(mineD)
	if err != nil {
		return 0, err
	}
	req = append([]byte{msgExchange}, frame(kb, dbytes)...)
	r.bytesOut.Add(int64(len(req)))
	resp, err = r.tr.Sync(ctx, peer, req)
	if err != nil {
		return 0, err
	}
	r.bytesIn.Add(int64(len(resp)))
	d, err := crdt.DecodeDelta(resp)
	if err != nil {
		r.malformed.Add(1)
		return 0, fmt.Errorf("registers from %s: %w", peer, err)
	}
	if _, err := r.store.Merge(d); err != nil {
		return 0, err
	}
	r.rounds.Add(1)
	r.recordSync()
	return len(keys), nil
}

// recordSync notes an exchange with a peer; a failure to record it is
// logged (a restart would then take the state for older than it is).
func (r *replicator) recordSync() {
	if err := r.store.Synced(time.Now()); err != nil {
		r.log.Warn("anti-entropy", "err", err)
	}
}

// catchUp runs an anti-entropy round with each of peers at once (at most
// limit of them, chosen at random), so that what they hold is here
// when it returns, or when ctx ends; it returns how many keys differed
// and how many peers answered. A read or write that finds nothing to act on calls
// it before answering "not found": the object may have been written on
// another peer a moment ago, and its delta lost or not yet arrived.
func (r *replicator) catchUp(ctx context.Context, peers []string, limit int) (keys, answered int) {
	if len(peers) > limit {
		peers = append([]string(nil), peers...)
		rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		peers = peers[:limit]
	}
	var wg sync.WaitGroup
	var n, ok atomic.Int64
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := r.round(ctx, p)
			if err != nil {
				r.log.Debug("catch-up round failed", "peer", p, "err", err)
				return
			}
			ok.Add(1)
			n.Add(int64(k))
		}()
	}
	wg.Wait()
	return int(n.Load()), int(ok.Load())
}

// maxCatchUp bounds the peers a catch-up before an answer asks.
const maxCatchUp = 16

// antiEntropyLoop runs a round with a random live peer every interval
// (jittered), at once when kicked (a peer joined), and again soon after a
// round that repaired keys: gossip lost something, and what it lost with
// it is likely held by others too (a round between peers that agree is
// two digests, so this costs little once they do). Three rounds in four
// go to a peer connected already (connected; none: any), the fourth to
// any peer: in a large cluster, where a peer connects to its neighbours
// only, every round with a stranger cost a new connection (tests/scale:
// its handshakes were a fifth of all CPU at 160 peers), and repairs
// spread over the neighbours' links as well.
func (r *replicator) antiEntropyLoop(ctx context.Context, interval time.Duration, peers, connected func() []string, kick <-chan struct{}) {
	repaired := false
	for {
		wait := interval/2 + rand.N(interval)
		if repaired {
			wait = interval / 10
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		case <-kick:
		}
		var ps []string
		if rand.N(4) != 0 {
			ps = connected()
		}
		if len(ps) == 0 {
			ps = peers()
		}
		if len(ps) == 0 {
			continue
		}
		peer := ps[rand.N(len(ps))]
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := r.round(rctx, peer)
		cancel()
		repaired = err == nil && n > 0
		if err != nil && ctx.Err() == nil {
			r.log.Debug("anti-entropy round failed", "peer", peer, "err", err)
		} else if n > 0 {
			r.log.Info("anti-entropy repaired keys", "peer", peer, "keys", n)
		}
	}
}

// frame joins parts, each prefixed by its length as a uvarint.
func frame(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = binary.AppendUvarint(out, uint64(len(p)))
		out = append(out, p...)
	}
	return out
}

// unframe splits what frame joined; want is the exact number of parts, or
// -1 for any.
func unframe(b []byte, want int) ([][]byte, error) {
	var parts [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("malformed frame")
		}
		parts = append(parts, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	if want >= 0 && len(parts) != want {
		return nil, fmt.Errorf("want %d parts, got %d", want, len(parts))
	}
	return parts, nil
}
