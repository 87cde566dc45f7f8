// Package state is a peer's replica of the cluster's desired state: the
// API objects as typed values (api.Object) over a crdt.State, in memory
// and on disk. A local write is validated as apply validates, stamped by
// the peer's clock, appended to the journal (synced) and only then
// acknowledged; its delta waits in Local for the replicator. Deltas of
// other peers are merged (Merge), appended at once and synced soon after
// (SaveLoop). What no write
// path accepts (an invalid object from an older peer or a damaged disk)
// is left out of every read and reported, never returned.
//
// Refusals are domain errors (ErrNotFound, ErrExists, ErrInvalid,
// ErrConflict, ErrCannotOrphan); the package knows nothing of HTTP.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// Annotations the store adds to objects it returns: the object's version
// (its newest HLC stamp) and the peer that wrote it last.
const (
	annotationVersion    = "chorus.io/version"
	annotationLastWriter = "chorus.io/last-writer"
)

// Result is what happened to one object in an apply or a delete.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    string `json:"action"` // created, configured, unchanged, deleted, notfound, scaled
}

// Store is this peer's replica of the desired state: a crdt.State in memory
// and on disk (a crdt.Journal). A local write is stamped by the peer's
// clock, appended to the journal (synced) and only then acknowledged; its
// delta waits in Local for the replicator, which hands it to gossip.
type Store struct {
	path  string
	clock *crdt.Clock
	// local holds the deltas of local writes until the replicator takes
	// them (Local); localDropped counts those dropped when it was full.
	local        chan crdt.Delta
	localDropped atomic.Int64

	mu    sync.RWMutex
	st    *crdt.State
	watch chan struct{} // closed and replaced at every change
	dirty chan struct{} // a merged change waits to be saved

	// saveMu serializes the journal's use: a local write's append, a
	// merge's, SaveLoop's sync and compaction, GC's compaction.
	saveMu  sync.Mutex
	journal *crdt.Journal
	// compact asks SaveLoop for a new snapshot whatever the log's size
	// (an append failed, so the log lacks a change the state holds).
	compact atomic.Bool
	// cut is how many bytes of a damaged log's end Open dropped.
	cut int64

	merged, rejected atomic.Int64 // remote deltas merged / dropped

	// stale is set when this peer was cut off from the others for longer
	// than the tombstone horizon: its state may hold objects whose
	// tombstones the others have since dropped, so it is discarded at the
	// first contact with a live peer and rebuilt from it (and kept if no
	// peer ever answers: then it is the only copy there is).
	stale    atomic.Bool
	lastSync atomic.Int64 // unix seconds of the last successful exchange, as saved
	// exchanged is closed at the first successful exchange with another
	// peer of this run (nil in tests that build a store by hand).
	exchanged     chan struct{}
	exchangedOnce sync.Once

	// setAside is what Open did with a state file it could not read
	// (moved aside, started empty); "" when the file was read.
	setAside string
	// checked remembers the objects that decoded and validated, and those
	// that did not (see object): a value no write path accepts may still
	// arrive from disk or from another peer (one of an older version), and
	// must neither crash this peer nor reach the reconcile loop.
	checked checkedObjects

	// shared holds what ListShared decoded, by key (sharedMu guards it:
	// ListShared runs under mu held for reading, by several readers).
	sharedMu sync.Mutex
	shared   map[string]sharedObject

	// sealer encrypts Secrets in the state (sealing.go); nil stores them
	// in clear (an --insecure peer without a gossip key). A rotation of
	// the cluster secret replaces it while the peer serves.
	sealer atomic.Pointer[sealerBox]
}

// Open loads the state saved at path (a snapshot, and the journal's log
// of the deltas since, path.log), for the peer node. A snapshot that is
// not a valid state file (corrupt, truncated, of another format) does not
// stop the peer: it is renamed aside (path.corrupt-<unix time>), the peer
// starts with the log's deltas alone, which anti-entropy completes from
// the other peers, and SetAside says what happened. A log damaged at its
// end (a crash in the middle of a write) is cut there (Cut). Only an I/O
// error fails.
func Open(path, node string) (*Store, error) {
	j, st, err := crdt.OpenJournal(path)
	setAside := ""
	if errors.Is(err, crdt.ErrMalformed) {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("desired state: %w (and it could not be moved aside: %v)", err, rerr)
		}
		setAside = fmt.Sprintf("%v; moved to %s, starting with an empty state to be filled from the other peers", err, aside)
		j, st, err = crdt.OpenJournal(path)
	}
	if err != nil {
		return nil, fmt.Errorf("desired state: %w", err)
	}
	s := &Store{path: path, clock: crdt.NewClock(node, time.Now), st: st, watch: make(chan struct{}), dirty: make(chan struct{}, 1), setAside: setAside,
		exchanged: make(chan struct{}), journal: j, cut: j.Dropped(), local: make(chan crdt.Delta, localQueue)}
	// Never issue a stamp below what this peer already wrote or saw.
	_ = s.clock.Observe(st.MaxStamp())
	return s, nil
}

// Cut returns how many bytes of the journal's damaged end Open dropped (0:
// none); the changes in them come back from the other peers.
func (s *Store) Cut() int64 { return s.cut }

// Close closes the journal; call it once nothing writes any more.
func (s *Store) Close() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	return s.journal.Close()
}

// localQueue is how many local deltas wait for the replicator at most.
const localQueue = 256

// Local returns the deltas of this peer's writes, in the order they were
// acknowledged, for the replicator to spread. A write never waits for
// it: with localQueue deltas waiting, later ones are dropped and counted
// (LocalDropped), and anti-entropy carries them.
func (s *Store) Local() <-chan crdt.Delta { return s.local }

// LocalDropped returns how many local deltas Local's queue dropped.
func (s *Store) LocalDropped() int64 { return s.localDropped.Load() }

// Path is the file the state is saved to.
func (s *Store) Path() string { return s.path }

// SetAside says what Open did with a state file it could not read ("" when
// it was read).
func (s *Store) SetAside() string { return s.setAside }

// Now returns a new stamp of this peer's clock.
func (s *Store) Now() crdt.Stamp { return s.clock.Now() }

// Deltas returns how many deltas of other peers were merged and how many
// were refused (a stamp too far ahead of this peer's clock).
func (s *Store) Deltas() (merged, rejected int64) { return s.merged.Load(), s.rejected.Load() }

// Exchanged returns a channel closed at the first successful exchange with
// another peer (Synced).
func (s *Store) Exchanged() <-chan struct{} { return s.exchanged }

// Decode decodes a stored object's document and validates it as every
// write path does; it is how the store reads what the disk or another peer
// gives it.
func Decode(raw []byte) (api.Object, error) {
	o, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	if err := validateStored(o); err != nil {
		return nil, err
	}
	return o, nil
}

func decodeStored(raw []byte) (api.Object, error) {
	var tm api.TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, err
	}
	o := api.NewObject(tm.Kind)
	if o == nil {
		return nil, fmt.Errorf("unknown kind %q", tm.Kind)
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, err
	}
	return o, nil
}

// object rebuilds the object key from st; the caller holds mu. An object
// that does not decode, or that fails the validation every write path
// applies (a value written by an older version, read from a damaged disk
// or sent by a faulty peer), is left out and reported (checkedObjects),
// never returned: nothing downstream may see, say, 2^31 replicas.
func (s *Store) object(key string) (api.Object, bool) {
	fields, ok := s.st.Get(key)
	if !ok {
		return nil, false
	}
	version, writer := s.st.Meta(key)
	ver := version.String()
	o, err := s.objectOf(key, fields)
	if err == nil && !s.checked.isGood(key, ver) {
		if err = validateStored(o); err == nil {
			s.checked.markGood(key, ver)
		}
	}
	if err != nil {
		s.checked.markBad(api.InvalidObject{Key: key, Version: ver, Writer: writer, Reason: err.Error()})
		return nil, false
	}
	m := o.Meta()
	m.ResourceVersion = fmt.Sprintf("%d.%d", version.Wall, version.Logical)
	m.Generation = generationOf(fields)
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[annotationVersion] = version.String()
	m.Annotations[annotationLastWriter] = writer
	return o, true
}

// Read runs f with the state held for reading (for anti-entropy).
func (s *Store) Read(f func(st *crdt.State)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f(s.st)
}

// Changed returns a channel closed at the next change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.watch
}

// List returns the objects of kind in namespace ns ("" for all), sorted by
// namespace and name.
func (s *Store) List(kind, ns string) []api.Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []api.Object
	for _, key := range s.st.Keys(kind + "/") {
		_, kns, _ := SplitKey(key)
		if ns != "" && api.Namespaced(kind) && kns != ns {
			continue
		}
		if o, ok := s.object(key); ok {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return api.ObjectKey(out[i]) < api.ObjectKey(out[j]) })
	return out
}

// ListShared is List for readers that change nothing they get (a reconcile
// pass: reconcile.Plan changes none of its inputs): each object is decoded
// and checked once per change of its registers (Sum) and then handed out
// as is, to every caller, until it changes; List decodes every object of
// the kind at every call (8 % of all CPU in a 40-peer run of tests/scale
// with pods, for the passes alone). Secrets, whose decoding depends on the
// sealer, are listed as List does.
func (s *Store) ListShared(kind string) []api.Object {
	if kind == api.KindSecret {
		return s.List(kind, "")
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	keys := s.st.Keys(kind + "/")
	out := make([]api.Object, 0, len(keys))
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if s.shared == nil {
		s.shared = map[string]sharedObject{}
	}
	listed := make(map[string]bool, len(keys))
	for _, key := range keys {
		listed[key] = true
		sum := s.st.Sum(key)
		if c, ok := s.shared[key]; ok && c.sum == sum {
			out = append(out, c.obj)
			continue
		}
		o, ok := s.object(key)
		if !ok {
			delete(s.shared, key)
			continue
		}
		s.shared[key] = sharedObject{sum: sum, obj: o}
		out = append(out, o)
	}
	for key := range s.shared {
		if strings.HasPrefix(key, kind+"/") && !listed[key] {
			delete(s.shared, key)
		}
	}
	return out // in key order: "Kind/namespace/name", so as List sorts
}

// sharedObject is an object ListShared decoded, at its registers' Sum.
type sharedObject struct {
	sum uint64
	obj api.Object
}

// Get returns the object at key, as List returns it (an invalid one is
// not found).
func (s *Store) Get(key string) (api.Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.object(key)
}

// Sum returns a checksum of key's registers (crdt.State.Sum): it changes
// whenever any of them does, so a reader that keeps something derived from
// key's fields compares it to know whether they changed. (The version,
// the newest stamp, does not do for that: a merge may bring an older
// register of a field after a newer one of another.)
func (s *Store) Sum(key string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.Sum(key)
}

// RawFields returns the fields of key as stored.
func (s *Store) RawFields(key string) map[string]json.RawMessage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f, _ := s.st.Get(key)
	return f
}

// AnnotationEndpoints lists a service's Ready endpoints, as read.
const AnnotationEndpoints = "chorus.io/endpoints"
