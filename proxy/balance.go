package proxy

import (
	"math"
	"sync/atomic"
	"time"
)

// pool is the endpoint set of one service port. Its backends are swapped
// atomically by Update; a backend whose endpoint stays keeps its
// connection count across updates, and a removed backend lives on (and is
// counted down) as long as connections use it.
type pool struct {
	key      poolKey
	backends atomic.Pointer[[]*backend]
	rr       atomic.Uint64 // rotates the scan start: ties go round-robin
}

// backend is one endpoint with its load as seen from this peer.
type backend struct {
	ep       Endpoint
	active   atomic.Int64 // connections (and dials) in flight
	failedAt atomic.Int64 // unix nanoseconds of the last failed dial; 0 = none
}

func (b *backend) release() { b.active.Add(-1) }

func newPool(key poolKey) *pool {
	pl := &pool{key: key}
	pl.backends.Store(&[]*backend{})
	return pl
}

func (pl *pool) empty() bool { return len(*pl.backends.Load()) == 0 }

// setEndpoints swaps in eps (duplicates dropped). It allocates nothing when
// eps is the current list in the same order.
func (pl *pool) setEndpoints(eps []Endpoint) {
	cur := *pl.backends.Load()
	if len(cur) == len(eps) {
		same := true
		for i := range eps {
			if cur[i].ep != eps[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	old := make(map[Endpoint]*backend, len(cur))
	for _, b := range cur {
		old[b.ep] = b
	}
	next := make([]*backend, 0, len(eps))
	seen := make(map[Endpoint]bool, len(eps))
	for _, ep := range eps {
		if seen[ep] {
			continue
		}
		seen[ep] = true
		b := old[ep]
		if b == nil {
			b = &backend{ep: ep}
		}
		next = append(next, b)
	}
	pl.backends.Store(&next)
}

// pick chooses the endpoint with the fewest connections in flight among
// those not in tried, preferring endpoints whose last dial did not fail
// within coolDown. Ties go to the first in a scan whose start rotates at
// every pick, which is round-robin when loads are equal. The chosen
// backend is acquired (its count incremented); nil means none is left.
//
// Two concurrent picks can choose the same backend: the load is a hint,
// not a reservation, and it corrects itself at the next pick.
func (pl *pool) pick(tried []*backend, now time.Time) *backend {
	bs := *pl.backends.Load()
	n := len(bs)
	if n == 0 {
		return nil
	}
	start := int(pl.rr.Add(1) % uint64(n))
	cutoff := now.Add(-coolDown).UnixNano()
	var best *backend
	bestLoad, bestCool := int64(math.MaxInt64), true
	for i := range n {
		b := bs[(start+i)%n]
		if contains(tried, b) {
			continue
		}
		cool := b.failedAt.Load() > cutoff
		load := b.active.Load()
		if best == nil || (bestCool && !cool) || (cool == bestCool && load < bestLoad) {
			best, bestLoad, bestCool = b, load, cool
		}
	}
	if best != nil {
		best.active.Add(1)
	}
	return best
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
