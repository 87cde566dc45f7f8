// Package state is a peer's replica of the cluster's desired state: the
// API objects as typed values (api.Object) over a crdt.State, in memory
// and on disk. A local write is validated as apply validates, stamped by
// the peer's clock, saved (synced to disk) and only then acknowledged; its
// delta goes to the publish function the replicator gives. Deltas of other
// peers are merged (Merge) and saved soon after (SaveLoop). What no write
// path accepts (an invalid object from an older peer or a damaged disk)
// is left out of every read and reported, never returned.
//
// Refusals are domain errors (ErrNotFound, ErrExists, ErrInvalid,
// ErrConflict, ErrCannotOrphan); the package knows nothing of HTTP.
package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
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
// and on disk. A local write is stamped by the peer's clock, saved (synced
// to disk) and only then acknowledged; its delta goes to publish, which
// hands it to gossip. Remote deltas are merged and saved the same way.
type Store struct {
	path    string
	clock   *crdt.Clock
	publish func(crdt.Delta) // set (SetPublish) before the first write; may be nil

	mu    sync.RWMutex
	st    *crdt.State
	watch chan struct{} // closed and replaced at every change
	dirty chan struct{} // a merged change waits to be saved

	saveMu sync.Mutex // one snapshot write at a time

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

	// sealer encrypts Secrets in the state (sealing.go); nil stores them
	// in clear (an --insecure peer without a gossip key). A rotation of
	// the cluster secret replaces it while the peer serves.
	sealer atomic.Pointer[sealerBox]
}

// checkedObjects is the outcome of checking each stored object at its
// current version. report, when set, is told once of every object version
// found invalid.
type checkedObjects struct {
	mu     sync.Mutex
	good   map[string]string // key -> version that decoded and validated
	bad    map[string]api.InvalidObject
	report func(api.InvalidObject)
}

func (c *checkedObjects) isGood(key, version string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.good[key] == version
}

func (c *checkedObjects) markGood(key, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.good == nil {
		c.good = map[string]string{}
	}
	c.good[key] = version
	delete(c.bad, key)
}

func (c *checkedObjects) markBad(b api.InvalidObject) {
	c.mu.Lock()
	if c.bad == nil {
		c.bad = map[string]api.InvalidObject{}
	}
	prev, seen := c.bad[b.Key]
	c.bad[b.Key] = b
	delete(c.good, b.Key)
	report := c.report
	c.mu.Unlock()
	if report != nil && (!seen || prev.Version != b.Version) {
		report(b)
	}
}

// list returns the invalid objects, by key.
func (c *checkedObjects) list() []api.InvalidObject {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]api.InvalidObject, 0, len(c.bad))
	for _, b := range c.bad {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Invalid returns the objects of the state that do not decode or
// validate, as last read.
func (s *Store) Invalid() []api.InvalidObject {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.checked.forget(s.st)
	return s.checked.list()
}

// forget drops what is remembered of keys no longer in st.
func (c *checkedObjects) forget(st *crdt.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.good {
		if _, ok := st.Get(k); !ok {
			delete(c.good, k)
		}
	}
	for k := range c.bad {
		if _, ok := st.Get(k); !ok {
			delete(c.bad, k)
		}
	}
}

// Open loads the state saved at path, for the peer node. A file that is not a valid
// state file (corrupt, truncated, of another format) does not stop the
// peer: it is renamed aside (path.corrupt-<unix time>), the peer starts
// with an empty state that anti-entropy fills from the other peers, and
// setAside says what happened. Only an I/O error fails.
func Open(path, node string) (*Store, error) {
	st, err := crdt.Load(path)
	setAside := ""
	if errors.Is(err, crdt.ErrMalformed) {
		aside := fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("desired state: %w (and it could not be moved aside: %v)", err, rerr)
		}
		setAside = fmt.Sprintf("%v; moved to %s, starting with an empty state to be filled from the other peers", err, aside)
		st, err = crdt.New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("desired state: %w", err)
	}
	s := &Store{path: path, clock: crdt.NewClock(node, time.Now), st: st, watch: make(chan struct{}), dirty: make(chan struct{}, 1), setAside: setAside,
		exchanged: make(chan struct{})}
	// Never issue a stamp below what this peer already wrote or saw.
	_ = s.clock.Observe(st.MaxStamp())
	return s, nil
}

// SetPublish gives the function each local write's delta is handed to
// (the replicator's queue); call it before the first write.
func (s *Store) SetPublish(publish func(crdt.Delta)) { s.publish = publish }

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

// ReportInvalid makes report be told once of every object version found
// invalid from now on.
func (s *Store) ReportInvalid(report func(api.InvalidObject)) {
	s.checked.mu.Lock()
	defer s.checked.mu.Unlock()
	s.checked.report = report
}

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

// docOf encodes an object for the CRDT: its JSON without status.
func docOf(o api.Object) ([]byte, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	return json.Marshal(m)
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

// validateStored runs on a stored object the validation every write path
// applies (api.Validate, as apply's decoding does), and returns a
// *api.ManifestError naming each field at fault.
func validateStored(o api.Object) error {
	if errs := api.Validate(o); len(errs) > 0 {
		return &api.ManifestError{Errors: errs}
	}
	return nil
}

// checkWrite validates, in next, every API object d writes (whatever the
// write path: apply, create, scale, rollout, ...), so that no write can
// store an object that apply would refuse.
func (s *Store) checkWrite(next *crdt.State, d crdt.Delta) error {
	seen := map[string]bool{}
	var errs []api.FieldError
	for _, e := range d.Entries {
		if seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		kind, _, name := SplitKey(e.Key)
		switch kind {
		case api.KindNamespace, api.KindDeployment, api.KindService, api.KindDaemonSet, api.KindConfigMap, api.KindSecret, api.KindPod,
			api.KindJob, api.KindCronJob, api.KindStatefulSet, api.KindPersistentVolumeClaim, api.KindServiceAccount,
			api.KindIngress, api.KindIngressClass, api.KindHorizontalPodAutoscaler:
		default:
			continue // histories, node marks: not API objects
		}
		fields, ok := next.Get(e.Key)
		if !ok {
			continue // deleted
		}
		o, err := s.objectOf(e.Key, fields)
		if err != nil {
			errs = append(errs, api.FieldError{Kind: kind, Name: name, Reason: "does not decode: " + err.Error()})
			continue
		}
		var me *api.ManifestError
		if err := validateStored(o); errors.As(err, &me) {
			errs = append(errs, me.Errors...)
		}
	}
	if len(errs) > 0 {
		return newInvalid(errs)
	}
	return nil
}

// sameFields reports whether an apply of fields would change nothing.
func sameFields(cur, next map[string]json.RawMessage) bool {
	for _, f := range []string{crdt.FieldUID, crdt.FieldCreationTimestamp, fieldGeneration} {
		delete(next, f)
	}
	n := 0
	for f, v := range cur {
		if f == crdt.FieldUID || f == crdt.FieldCreationTimestamp || f == fieldGeneration {
			continue
		}
		n++
		if nv, ok := next[f]; !ok || !bytes.Equal(nv, v) {
			return false
		}
	}
	return n == len(next)
}

// commit saves next as the new state, swaps it in and spreads d; the caller
// holds mu.
func (s *Store) commit(next *crdt.State, d crdt.Delta) error {
	if d.Len() == 0 {
		return nil
	}
	if err := s.checkWrite(next, d); err != nil {
		return err
	}
	s.saveMu.Lock()
	err := next.Save(s.path)
	s.saveMu.Unlock()
	if err != nil {
		return fmt.Errorf("save desired state: %w", err)
	}
	s.st = next
	close(s.watch)
	s.watch = make(chan struct{})
	if s.publish != nil {
		s.publish(d)
	}
	return nil
}

// Apply stores objs all together or not at all. With create, it fails
// with an *ExistsError (ErrExists) if any of them exists, and stores
// nothing. An object whose namespace does not exist (and is not in objs)
// is ErrNotFound; one that does not validate, ErrInvalid.
func (s *Store) Apply(objs []api.Object, now time.Time, create bool) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkNamespaces(objs); err != nil {
		return nil, err
	}
	if create {
		for _, o := range objs {
			// An invalid stored object (left out of every list) does not
			// exist for a client: creating one replaces it.
			if _, ok := s.object(api.ObjectKey(o)); ok {
				return nil, &ExistsError{Resource: GroupResource(o.GetKind()), Name: o.Meta().Name}
			}
		}
	}
	next := s.st.Clone()
	var all crdt.Delta
	var results []Result
	for _, o := range objs {
		o = copyObject(o)
		o.SetTypeMeta()
		key := api.ObjectKey(o)
		m := o.Meta()
		r := Result{Kind: o.GetKind(), Namespace: m.Namespace, Name: m.Name}
		if !api.Namespaced(o.GetKind()) {
			r.Namespace = ""
		}
		cur, exists := next.Get(key)
		t := now.UTC().Truncate(time.Second)
		m.CreationTimestamp, m.UID = &t, newUID()
		m.ResourceVersion, m.Generation = "", 0
		if m.Annotations != nil {
			delete(m.Annotations, annotationVersion)
			delete(m.Annotations, annotationLastWriter)
			if len(m.Annotations) == 0 {
				m.Annotations = nil
			}
		}
		doc, err := docOf(o)
		if err != nil {
			return nil, err
		}
		fields, err := crdt.Split(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		var clear map[string]json.RawMessage // cur with its sealed fields opened
		if exists {
			if clear, err = s.unseal(key, cur); err != nil {
				clear = cur // an object this peer cannot read: replaced whole
			} else if old, err := s.objectOf(key, cur); err == nil {
				if errs := api.ValidateUpdate(old, o); len(errs) > 0 {
					return nil, newInvalid(errs)
				}
			}
		}
		unchanged := exists && sameFields(clear, withGeneration(cloneFields(fields), cur))
		fields[fieldGeneration] = nextGeneration(cur, fields, exists, true)
		if err := s.seal(key, fields, false); err != nil {
			return nil, err
		}
		// Written even when unchanged here: this peer may not have seen a
		// concurrent delete or change yet, and the apply acknowledged now
		// must win over those (last writer wins), not vanish under them.
		d := next.Put(key, fields, s.clock.Now())
		all.Entries = append(all.Entries, d.Entries...)
		if _, ok := templatedOf(o); ok && (!exists || !bytes.Equal(cur["spec.template"], fields["spec.template"])) {
			all.Entries = append(all.Entries, s.recordRevision(next, o, "", !exists, now).Entries...)
		}
		switch {
		case unchanged:
			r.Action = "unchanged"
		case exists:
			r.Action = "configured"
		default:
			r.Action = "created"
		}
		results = append(results, r)
	}
	if err := s.commit(next, all); err != nil {
		return nil, err
	}
	return results, nil
}

func cloneFields(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkNamespaces: the namespace of every object must exist, or be created
// by the same apply; the caller holds mu.
func (s *Store) checkNamespaces(objs []api.Object) error {
	for _, o := range objs {
		if !api.Namespaced(o.GetKind()) {
			continue
		}
		ns := o.Meta().Namespace
		if ns == api.DefaultNamespace || ns == "" {
			continue
		}
		if _, ok := s.st.Get(Key(api.KindNamespace, "", ns)); ok {
			continue
		}
		found := false
		for _, p := range objs {
			if p.GetKind() == api.KindNamespace && p.Meta().Name == ns {
				found = true
			}
		}
		if !found {
			return &NotFoundError{Msg: fmt.Sprintf("%s %q: namespaces %q not found (create it first, or add a Namespace to the manifest)", o.GetKind(), o.Meta().Name, ns)}
		}
	}
	return nil
}

// Scale writes only spec.replicas of a deployment, so that it merges with a
// concurrent change of its template on another peer.
func (s *Store) Scale(key string, replicas int32) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kind, ns, name := SplitKey(key)
	r := Result{Kind: kind, Namespace: ns, Name: name, Action: "notfound"}
	if _, ok := s.st.Get(key); !ok {
		return r, nil
	}
	v, _ := json.Marshal(replicas)
	cur, _ := s.st.Get(key)
	changes := map[string]json.RawMessage{"spec.replicas": v}
	if !bytes.Equal(cur["spec.replicas"], v) {
		changes[fieldGeneration] = nextGeneration(cur, changes, true, false)
	}
	next := s.st.Clone()
	d := next.PutFields(key, changes, s.clock.Now())
	if err := s.commit(next, d); err != nil {
		return r, err
	}
	r.Action = "scaled"
	return r, nil
}

// Remove deletes the objects with the given keys; deleting a namespace
// deletes what it holds.
func (s *Store) Remove(keys []string) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st.Clone()
	var all crdt.Delta
	var results []Result
	for _, key := range keys {
		kind, ns, name := SplitKey(key)
		r := Result{Kind: kind, Namespace: ns, Name: name, Action: "notfound"}
		if _, ok := next.Get(key); ok {
			all.Entries = append(all.Entries, next.Delete(key, s.clock.Now()).Entries...)
			r.Action = "deleted"
			for _, k := range s.cascade(s.st, key) {
				all.Entries = append(all.Entries, next.Delete(k, s.clock.Now()).Entries...)
			}
			if kind == api.KindNamespace {
				for _, k := range next.Keys("") {
					if _, kns, _ := SplitKey(k); kns == name && !strings.HasPrefix(k, api.KindNamespace+"/") {
						all.Entries = append(all.Entries, next.Delete(k, s.clock.Now()).Entries...)
					}
				}
			}
		}
		results = append(results, r)
	}
	if err := s.commit(next, all); err != nil {
		return nil, err
	}
	return results, nil
}

// cascade returns the keys deleted with the object at key in st, as
// Kubernetes' garbage collector deletes what an object owns (background
// propagation): a job's pods and progress; a cron job's jobs, theirs, and
// its progress; a stateful set's pods and the claims it owns; an
// autoscaler's progress. The caller holds s.mu.
func (s *Store) cascade(st *crdt.State, key string) []string {
	owned, books := s.dependents(st, key)
	out := append(owned, books...)
	if kind, _, _ := SplitKey(key); kind == api.KindCronJob {
		for _, j := range owned {
			out = append(out, s.cascade(st, j)...)
		}
	}
	return out
}

// dependents returns the objects the object at key in st owns directly
// (ownerReferences with its uid) and the bookkeeping keys kept for it.
// The caller holds s.mu.
func (s *Store) dependents(st *crdt.State, key string) (owned, books []string) {
	kind, ns, name := SplitKey(key)
	fields, ok := st.Get(key)
	if !ok {
		return nil, nil
	}
	var uid string
	_ = json.Unmarshal(fields[crdt.FieldUID], &uid)
	ownedOf := func(childKind string) []string {
		var keys []string
		for _, k := range st.Keys(childKind + "/" + ns + "/") {
			f, _ := st.Get(k)
			m := api.ObjectMeta{OwnerReferences: storedRefs(f)}
			if OwnedBy(&m, kind, uid) {
				keys = append(keys, k)
			}
		}
		return keys
	}
	switch kind {
	case api.KindJob:
		return ownedOf(api.KindPod), []string{JobProgressKey(ns, name)}
	case api.KindStatefulSet:
		return append(ownedOf(api.KindPod), ownedOf(api.KindPersistentVolumeClaim)...), []string{historyKeyOf(key)} // claims: whenDeleted Delete
	case api.KindDaemonSet:
		return nil, []string{historyKeyOf(key)}
	case api.KindCronJob:
		return ownedOf(api.KindJob), []string{CronProgressKey(ns, name)}
	case api.KindHorizontalPodAutoscaler:
		return nil, []string{HPAProgressKey(ns, name)}
	case api.KindDeployment:
		return nil, []string{historyKey(ns, name)}
	}
	return nil, nil
}

// storedRefs decodes the ownerReferences of stored fields.
func storedRefs(f map[string]json.RawMessage) []api.OwnerReference {
	var refs []api.OwnerReference
	if json.Unmarshal(f[fieldOwnerRefs], &refs) != nil {
		return nil
	}
	return refs
}

const fieldOwnerRefs = "metadata.ownerReferences"

// RemoveOrphaning deletes the object at key and keeps what it owns, as
// Kubernetes' Orphan propagation: its reference is taken off the objects it
// owns (a job's pods, a cron job's jobs, a stateful set's pods and claims),
// which then stay as they are; its bookkeeping goes with it. A deployment's
// or daemon set's pods are not objects of their own here (each peer
// derives them from their owner), so they cannot be orphaned.
func (s *Store) RemoveOrphaning(key string) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kind, ns, name := SplitKey(key)
	r := Result{Kind: kind, Namespace: ns, Name: name, Action: "notfound"}
	fields, ok := s.st.Get(key)
	if !ok {
		return r, nil
	}
	if kind == api.KindDeployment || kind == api.KindDaemonSet {
		return r, fmt.Errorf("%w: the pods of a %s are derived from it by every peer, not objects of their own, so they cannot outlive it (delete with propagationPolicy Background or Foreground)", ErrCannotOrphan, kind)
	}
	var uid string
	_ = json.Unmarshal(fields[crdt.FieldUID], &uid)
	next := s.st.Clone()
	owned, books := s.dependents(next, key)
	var all crdt.Delta
	for _, k := range owned {
		f, _ := next.Get(k)
		var keep []api.OwnerReference
		for _, ref := range storedRefs(f) {
			if ref.UID != uid {
				keep = append(keep, ref)
			}
		}
		v := json.RawMessage("null")
		if len(keep) > 0 {
			b, err := json.Marshal(keep)
			if err != nil {
				return r, err
			}
			v = b
		}
		all.Entries = append(all.Entries, next.PutFields(k, map[string]json.RawMessage{fieldOwnerRefs: v}, s.clock.Now()).Entries...)
	}
	for _, k := range append(books, key) {
		all.Entries = append(all.Entries, next.Delete(k, s.clock.Now()).Entries...)
	}
	if err := s.commit(next, all); err != nil {
		return r, err
	}
	r.Action = "deleted"
	return r, nil
}

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

// Get returns the object at key, as List returns it (an invalid one is
// not found).
func (s *Store) Get(key string) (api.Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.object(key)
}

// copyObject deep-copies an object of any stored kind.
func copyObject(o api.Object) api.Object {
	c := api.NewObject(o.GetKind())
	if c == nil {
		panic(fmt.Sprintf("copyObject: unexpected type %T", o))
	}
	b, err := json.Marshal(o)
	if err == nil {
		err = json.Unmarshal(b, c)
	}
	if err != nil {
		panic("copyObject: " + err.Error())
	}
	return c
}

// WriteFields writes only the given fields of key (null removes one), at a
// new stamp: for objects only this peer writes, such as its pod statuses.
func (s *Store) WriteFields(key string, fields map[string]json.RawMessage) error {
	if len(fields) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st.Clone()
	d := next.PutFields(key, fields, s.clock.Now())
	return s.commit(next, d)
}

// RawFields returns the fields of key as stored.
func (s *Store) RawFields(key string) map[string]json.RawMessage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f, _ := s.st.Get(key)
	return f
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

// AnnotationEndpoints lists a service's Ready endpoints, as read.
const AnnotationEndpoints = "chorus.io/endpoints"

// fieldGeneration holds metadata.generation in the replicated state: a
// register that every write changing the spec sets one above what the
// writer saw, so it only grows, whichever write wins.
const fieldGeneration = "generation"

func generationOf(fields map[string]json.RawMessage) int64 {
	g, err := strconv.ParseInt(string(fields[fieldGeneration]), 10, 64)
	if err != nil || g < 1 {
		return 1
	}
	return g
}

// nextGeneration is the generation after writing next over cur: one more
// when a spec field changes, 1 for a new object. With full, next replaces
// the whole object (a spec field it lacks is removed); otherwise next
// holds only the fields written.
func nextGeneration(cur, next map[string]json.RawMessage, exists, full bool) json.RawMessage {
	if !exists {
		return json.RawMessage("1")
	}
	g := generationOf(cur)
	for f, v := range next {
		if strings.HasPrefix(f, "spec.") && !bytes.Equal(cur[f], v) {
			return json.RawMessage(strconv.FormatInt(g+1, 10))
		}
	}
	for f := range cur {
		if _, ok := next[f]; full && strings.HasPrefix(f, "spec.") && !ok {
			return json.RawMessage(strconv.FormatInt(g+1, 10))
		}
	}
	return json.RawMessage(strconv.FormatInt(g, 10))
}

func withGeneration(fields, cur map[string]json.RawMessage) map[string]json.RawMessage {
	if g, ok := cur[fieldGeneration]; ok {
		fields[fieldGeneration] = g
	}
	return fields
}

// serverAnnotations are set on objects as they are read; a client that
// writes an object back (kubectl edit, replace) must not store them.
var serverAnnotations = []string{annotationVersion, annotationLastWriter, api.AnnotationRevision, AnnotationEndpoints}

// userFields returns the replicated fields of o, without what the server
// sets (uid, creation time, generation, versions, annotations added as read).
func userFields(o api.Object) (map[string]json.RawMessage, error) {
	o = copyObject(o)
	o.SetTypeMeta()
	m := o.Meta()
	for _, a := range serverAnnotations {
		delete(m.Annotations, a)
	}
	if len(m.Annotations) == 0 {
		m.Annotations = nil
	}
	m.ResourceVersion, m.Generation, m.UID, m.CreationTimestamp = "", 0, "", nil
	doc, err := docOf(o)
	if err != nil {
		return nil, err
	}
	fields, err := crdt.Split(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", api.ObjectKey(o), err)
	}
	for _, f := range []string{crdt.FieldUID, crdt.FieldCreationTimestamp, fieldGeneration} {
		delete(fields, f)
	}
	return fields, nil
}

// Update changes an existing object from base (as the client read it) to
// o, writing only the fields that differ between the two (null for fields
// o no longer has): a concurrent change of other fields, through this peer
// or another, survives.
func (s *Store) Update(base, o api.Object, now time.Time) (Result, error) {
	key := api.ObjectKey(o)
	m := o.Meta()
	r := Result{Kind: o.GetKind(), Namespace: m.Namespace, Name: m.Name, Action: "unchanged"}
	fields, err := userFields(o)
	if err != nil {
		return r, err
	}
	was, err := userFields(base)
	if err != nil {
		return r, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.st.Get(key)
	if !ok {
		return r, &NotFoundError{Msg: fmt.Sprintf("%s %q not found", GroupResource(o.GetKind()), m.Name)}
	}
	if err := s.checkNamespaces([]api.Object{o}); err != nil {
		return r, err
	}
	changes := map[string]json.RawMessage{}
	for f, v := range fields {
		if !bytes.Equal(was[f], v) {
			changes[f] = v
		}
	}
	for f := range was {
		if _, ok := fields[f]; !ok {
			changes[f] = json.RawMessage("null")
		}
	}
	if len(changes) == 0 {
		return r, nil
	}
	if old, err := s.objectOf(key, cur); err == nil {
		if errs := api.ValidateUpdate(old, o); len(errs) > 0 {
			return r, newInvalid(errs)
		}
	}
	changes[fieldGeneration] = nextGeneration(cur, changes, true, false)
	if err := s.seal(key, changes, true); err != nil {
		return r, err
	}
	next := s.st.Clone()
	d := next.PutFields(key, changes, s.clock.Now())
	if _, ok := templatedOf(o); ok {
		if _, changed := changes["spec.template"]; changed {
			c := copyObject(o)
			d.Entries = append(d.Entries, s.recordRevision(next, c, c.Meta().Annotations[api.AnnotationChangeCause], false, now).Entries...)
		}
	}
	if err := s.commit(next, d); err != nil {
		return r, err
	}
	r.Action = "configured"
	return r, nil
}
