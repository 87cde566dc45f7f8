package state

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/crdt"
)

// The state on disk and against the other peers: merges of their deltas,
// the save loop, tombstone GC, and the staleness of a peer long cut off.

// Merge applies a delta from another peer; it reports whether anything
// changed.
func (s *Store) Merge(d crdt.Delta) (bool, error) {
	for _, e := range d.Entries {
		if err := s.clock.Observe(e.Reg.Stamp); err != nil {
			s.rejected.Add(1)
			return false, fmt.Errorf("delta from %s: %w", e.Reg.Stamp.Node, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Merged in place: a delta holds a few registers, and a copy of the
	// whole state for each (as a local write makes, to check it first)
	// made every merge cost as much as the state, on every peer, for every
	// delta of every peer (tests/scale). Nothing reads s.st without mu:
	// SaveLoop saves holding it for reading.
	changed := s.st.Merge(d)
	if changed.Len() == 0 {
		return false, nil
	}
	s.merged.Add(1)
	// Visible at once; saved by SaveLoop soon after (a remote change needs
	// no local acknowledgement, and anti-entropy repairs what a crash
	// loses). Not re-published: gossip already spreads it.
	close(s.watch)
	s.watch = make(chan struct{})
	select {
	case s.dirty <- struct{}{}:
	default:
	}
	return true, nil
}

// SaveLoop saves merged changes, at most every 100ms, and once more when
// ctx ends.
func (s *Store) SaveLoop(ctx context.Context, log interface{ Error(string, ...any) }) {
	save := func() {
		// Locks in commit's order (mu, then saveMu), so that no older state
		// is written over a newer one; mu is held for reading throughout,
		// since merge changes the state in place.
		s.mu.RLock()
		defer s.mu.RUnlock()
		s.saveMu.Lock()
		defer s.saveMu.Unlock()
		if err := s.st.Save(s.path); err != nil {
			log.Error("save desired state", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			select {
			case <-s.dirty:
				save()
			default:
			}
			return
		case <-s.dirty:
			save()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// GC drops tombstones older than the horizon.
func (s *Store) GC(now time.Time, horizon time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st.Clone()
	n := next.GC(now, horizon)
	s.checked.forget(next)
	if n == 0 {
		return 0, nil
	}
	s.saveMu.Lock()
	err := next.Save(s.path)
	s.saveMu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("save desired state: %w", err)
	}
	s.st = next
	return n, nil
}

// SyncFile is the file that records when this peer last exchanged state
// with another.
func (s *Store) SyncFile() string { return s.path + ".last-sync" }

// CheckStale marks the state stale when the last exchange with another
// peer is older than horizon.
func (s *Store) CheckStale(now time.Time, horizon time.Duration) bool {
	b, err := os.ReadFile(s.SyncFile())
	if err != nil {
		return false
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return false
	}
	s.lastSync.Store(sec)
	if now.Sub(time.Unix(sec, 0)) > horizon {
		s.stale.Store(true)
	}
	return s.stale.Load()
}

// Synced records a successful exchange (at most once a minute on disk),
// discarding a stale state first.
func (s *Store) Synced(now time.Time) error {
	if s.exchanged != nil {
		s.exchangedOnce.Do(func() { close(s.exchanged) })
	}
	if now.Unix()-s.lastSync.Load() < 60 {
		return nil
	}
	s.lastSync.Store(now.Unix())
	if err := os.WriteFile(s.SyncFile(), []byte(strconv.FormatInt(now.Unix(), 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("record the last exchange with a peer: %w", err)
	}
	return nil
}

// ResetIfStale drops a stale state before the first exchange with a live
// peer; it reports whether it did.
func (s *Store) ResetIfStale() bool {
	if !s.stale.CompareAndSwap(true, false) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st = crdt.New()
	close(s.watch)
	s.watch = make(chan struct{})
	return true
}
