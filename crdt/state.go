package crdt

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultTombstoneHorizon is how long a deleted object's tombstone is kept
// before GC may drop it; see the package documentation.
const DefaultTombstoneHorizon = 7 * 24 * time.Hour

// ExistsField is the name of an object's existence register: JSON true while
// the object exists, false once deleted.
const ExistsField = ""

// Creation-only fields: Put writes them only when it creates the object.
const (
	FieldUID               = "metadata.uid"
	FieldCreationTimestamp = "metadata.creationTimestamp"
)

var (
	jsonTrue  = json.RawMessage("true")
	jsonFalse = json.RawMessage("false")
	jsonNull  = json.RawMessage("null")
)

// Register is a last-writer-wins register: a JSON value and the stamp of
// the write that set it.
type Register struct {
	Value json.RawMessage `json:"value"`
	Stamp Stamp           `json:"stamp"`
}

// wins reports whether r replaces cur when merged: a greater stamp wins,
// and of equal stamps the bytewise greater value.
func (r Register) wins(cur Register) bool {
	if c := r.Stamp.compare(cur.Stamp); c != 0 {
		return c > 0
	}
	return bytes.Compare(r.Value, cur.Value) > 0
}

// Entry is one register of one object in a Delta.
type Entry struct {
	Key   string   `json:"key"`
	Field string   `json:"field"`
	Reg   Register `json:"reg"`
}

// Delta is a set of registers: a local write to send to peers, the answer
// to an anti-entropy request, or what a merge changed. Its values share
// memory with the State that made it and must not be modified.
type Delta struct {
	Entries []Entry `json:"entries"`
}

// Len returns the number of registers in d.
func (d Delta) Len() int { return len(d.Entries) }

// reg is a register and its hash (see regHash), kept for the digest.
type reg struct {
	Register
	h uint64
}

// object is the registers of one key. An object belongs to the State
// whose owner token it carries; a State writes only to objects it owns
// and copies a shared one first (Clone shares them all).
type object struct {
	regs   map[string]reg
	h      uint64 // xor of the registers' hashes
	bucket int
	owner  *int
}

func (o *object) live() bool {
	r, ok := o.regs[ExistsField]
	return ok && bytes.Equal(r.Value, jsonTrue)
}

func (o *object) maxStamp() Stamp {
	var m Stamp
	for _, r := range o.regs {
		if m.Less(r.Stamp) {
			m = r.Stamp
		}
	}
	return m
}

// kindOf returns the kind of key: the text before its first '/', or the
// whole key if it has none.
func kindOf(key string) string {
	if i := strings.IndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return key
}

// kindSet is the set of live keys of one kind. Like an object, it belongs
// to the State whose owner token it carries: only that State holds it and
// changes it in place; Clone shares every set, and a State copies a shared
// one before changing it. A shared set is read, never changed, so that
// readers of several States may read it at once.
type kindSet struct {
	keys  map[string]struct{}
	owner *int

	// sorted caches the keys sorted, built at the first read that finds
	// it missing. Readers under a State's read lock may build it at the
	// same time, hence mu. A built slice is never modified: a change to
	// the set replaces it with an edited copy (edits counts those since
	// it was built; past maxSortedEdits the change drops it instead, for
	// the next read to rebuild), so that a caller may read it without mu.
	mu     sync.Mutex
	sorted []string
	ok     bool // sorted holds the keys
	edits  int
}

// maxSortedEdits is how many changes to a set its sorted cache follows,
// each costing a copy of it, before a change drops it: a rebuild costs a
// sort, about as much as this many copies.
const maxSortedEdits = 32

// sortedKeys returns the keys of k, sorted. The slice is shared: callers
// must not modify it.
func (k *kindSet) sortedKeys() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.ok {
		ks := make([]string, 0, len(k.keys))
		for key := range k.keys {
			ks = append(ks, key)
		}
		sort.Strings(ks)
		k.sorted, k.ok, k.edits = ks, true, 0
	}
	return k.sorted
}

// copyFor returns a copy of k owned by owner, sharing its sorted cache,
// which neither changes.
func (k *kindSet) copyFor(owner *int) *kindSet {
	keys := make(map[string]struct{}, len(k.keys)+1)
	for key := range k.keys {
		keys[key] = struct{}{}
	}
	k.mu.Lock() // other readers of k may be building the cache
	defer k.mu.Unlock()
	return &kindSet{keys: keys, owner: owner, sorted: k.sorted, ok: k.ok, edits: k.edits}
}

// change adds key to k (live) or removes it, and edits or drops the
// sorted cache. The caller owns k, so no other State reads it; callers of
// Keys may still hold the old cache, which is left as it is.
func (k *kindSet) change(key string, live bool) {
	if live {
		k.keys[key] = struct{}{}
	} else {
		delete(k.keys, key)
	}
	if !k.ok {
		return
	}
	if k.edits >= maxSortedEdits {
		k.sorted, k.ok = nil, false
		return
	}
	i := sort.SearchStrings(k.sorted, key)
	if found := i < len(k.sorted) && k.sorted[i] == key; live == found {
		return
	}
	ks := make([]string, 0, len(k.sorted)+1)
	ks = append(ks, k.sorted[:i]...)
	if live {
		ks = append(append(ks, key), k.sorted[i:]...)
	} else {
		ks = append(ks, k.sorted[i+1:]...)
	}
	k.sorted = ks
	k.edits++
}

// State is a replicated set of objects, each a map of field registers,
// tombstones included. The zero State is not usable: call New. A State is
// not safe for concurrent use, except by several readers at once.
type State struct {
	objs    map[string]*object
	kinds   map[string]*kindSet // the live keys of each kind; no empty sets
	buckets Digest              // xor of the hashes of the registers in each bucket
	owner   *int                // the token of the objects and sets this State may change in place
}

// New returns an empty state.
func New() *State {
	return &State{objs: map[string]*object{}, kinds: map[string]*kindSet{}, owner: new(int)}
}

// Clone returns a copy of s that later writes to either do not affect. It
// copies the index of objects, not the objects: both States then share
// every object and copy one only when they write to it, so a write to a
// clone costs the objects it changes, not the whole state. The sets of
// live keys of each kind are shared the same way, and one is copied when
// either State creates or deletes an object of its kind. Clone marks s's
// objects shared, so it is a write to s: call it as a writer would.
func (s *State) Clone() *State {
	c := &State{
		objs:    make(map[string]*object, len(s.objs)),
		kinds:   make(map[string]*kindSet, len(s.kinds)),
		buckets: s.buckets,
		owner:   new(int),
	}
	for k, o := range s.objs {
		c.objs[k] = o
	}
	for k, ks := range s.kinds {
		c.kinds[k] = ks
	}
	s.owner = new(int) // what s held is shared from now on
	return c
}

// setLive records whether key is live in the set of its kind, copying the
// set into s first if another State shares it.
func (s *State) setLive(key string, live bool) {
	kind := kindOf(key)
	ks := s.kinds[kind]
	switch {
	case ks == nil && !live:
		return
	case ks == nil:
		ks = &kindSet{keys: map[string]struct{}{}, owner: s.owner}
		s.kinds[kind] = ks
	case !live && len(ks.keys) == 1:
		if _, in := ks.keys[key]; in {
			delete(s.kinds, kind) // no empty sets, and nothing to copy
			return
		}
	}
	if ks.owner != s.owner {
		ks = ks.copyFor(s.owner)
		s.kinds[kind] = ks
	}
	ks.change(key, live)
}

// own returns the object of key, copied into s first if another State
// shares it.
func (s *State) own(key string, o *object) *object {
	if o.owner == s.owner {
		return o
	}
	regs := make(map[string]reg, len(o.regs)+1)
	for f, r := range o.regs {
		regs[f] = r // values are never modified in place
	}
	o = &object{regs: regs, h: o.h, bucket: o.bucket, owner: s.owner}
	s.objs[key] = o
	return o
}

// set merges r into the register key/field and reports whether it changed.
// The caller owns r.Value from then on.
func (s *State) set(key, field string, r Register) bool {
	return s.setReg(key, field, reg{Register: r, h: regHash(key, field, r)})
}

// setReg is set with the register's hash already computed.
func (s *State) setReg(key, field string, r reg) bool {
	o := s.objs[key]
	if o == nil {
		o = &object{regs: map[string]reg{}, bucket: bucketOf(key), owner: s.owner}
		s.objs[key] = o
	}
	cur, ok := o.regs[field]
	if ok && !r.wins(cur.Register) {
		return false
	}
	o = s.own(key, o)
	x := r.h
	if ok {
		x ^= cur.h
	}
	if field == ExistsField {
		// Only the existence register makes an object live or not.
		was := ok && bytes.Equal(cur.Value, jsonTrue)
		if is := bytes.Equal(r.Value, jsonTrue); is != was {
			s.setLive(key, is)
		}
	}
	o.regs[field] = r
	o.h ^= x
	s.buckets[o.bucket] ^= x
	return true
}

// write sets key/field to value at st, adding the register to d if it won.
func (s *State) write(d *Delta, key, field string, value json.RawMessage, st Stamp) {
	r := Register{Value: value, Stamp: st}
	if s.set(key, field, r) {
		d.Entries = append(d.Entries, Entry{Key: key, Field: field, Reg: r})
	}
}

// checkedValue returns a compacted copy of v (null if empty), and panics if
// v is not valid JSON.
func checkedValue(key, field string, v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return jsonNull
	}
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		panic("crdt: value of " + key + " field " + field + " is not valid JSON: " + err.Error())
	}
	return b.Bytes()
}

func checkWrite(key string, fields map[string]json.RawMessage) {
	if key == "" {
		panic("crdt: write with an empty key")
	}
	if _, ok := fields[ExistsField]; ok {
		panic("crdt: write of " + key + " names the existence field \"\"")
	}
}

// Put writes a whole object at stamp st, as an apply does: every field in
// fields, existence true, and JSON null in every other field the object
// has, so that fields the new document lacks disappear. The creation-only
// fields (FieldUID, FieldCreationTimestamp) are the exception: when the
// object exists and has them, Put leaves them as they are, whatever fields
// says; otherwise it writes them like any field. Put always writes, even a
// value equal to the current one, so that a later apply wins over a
// concurrent earlier one; a caller that wants to tell "unchanged" compares
// with Get first. Registers with a stamp greater than st are left alone.
//
// Put returns the registers that changed, to send to peers. Values must be
// valid JSON (as Split returns them; they are stored compacted, and empty
// means null); fields must not name the existence field "". Put panics
// otherwise, or if key is empty.
func (s *State) Put(key string, fields map[string]json.RawMessage, st Stamp) Delta {
	checkWrite(key, fields)
	var d Delta
	o := s.objs[key]
	live := o != nil && o.live()
	keep := func(f string) bool { // a creation-only field to keep
		if f != FieldUID && f != FieldCreationTimestamp || !live {
			return false
		}
		r, ok := o.regs[f]
		return ok && !bytes.Equal(r.Value, jsonNull)
	}
	for _, f := range sortedFields(fields) {
		if !keep(f) {
			s.write(&d, key, f, checkedValue(key, f, fields[f]), st)
		}
	}
	if o != nil {
		var absent []string
		for f := range o.regs {
			if _, ok := fields[f]; !ok && f != ExistsField && !keep(f) {
				absent = append(absent, f)
			}
		}
		sort.Strings(absent)
		for _, f := range absent {
			s.write(&d, key, f, jsonNull, st)
		}
	}
	s.write(&d, key, ExistsField, jsonTrue, st)
	return d
}

// PutFields writes only the given fields of an object and existence true,
// at stamp st, leaving its other fields as they are: `scale` writes
// spec.replicas alone, so that it merges with a concurrent change of
// spec.template. It returns the registers that changed, and panics like
// Put.
func (s *State) PutFields(key string, fields map[string]json.RawMessage, st Stamp) Delta {
	checkWrite(key, fields)
	var d Delta
	for _, f := range sortedFields(fields) {
		s.write(&d, key, f, checkedValue(key, f, fields[f]), st)
	}
	s.write(&d, key, ExistsField, jsonTrue, st)
	return d
}

// Delete marks the object deleted at stamp st (its existence register
// false), whether or not this state holds it, so that peers which do learn
// of the delete. It returns the registers that changed.
func (s *State) Delete(key string, st Stamp) Delta {
	if key == "" {
		panic("crdt: delete with an empty key")
	}
	var d Delta
	s.write(&d, key, ExistsField, jsonFalse, st)
	return d
}

// Get returns the fields of the object key, without those holding null and
// without the existence register. ok is false if the object is absent or
// deleted. The values are copies.
func (s *State) Get(key string) (fields map[string]json.RawMessage, ok bool) {
	o := s.objs[key]
	if o == nil || !o.live() {
		return nil, false
	}
	fields = make(map[string]json.RawMessage, len(o.regs))
	for f, r := range o.regs {
		if f == ExistsField || bytes.Equal(r.Value, jsonNull) {
			continue
		}
		fields[f] = bytes.Clone(r.Value)
	}
	return fields, true
}

// Keys returns the keys of the existing objects that start with prefix,
// sorted (nil if none). The caller may modify the slice.
//
// A prefix with a '/' (such as "Kind/" or "Kind/namespace/") costs the
// keys of its kind that it matches, found in the kind's set; one without
// costs the existing keys of the kinds it matches.
func (s *State) Keys(prefix string) []string {
	if i := strings.IndexByte(prefix, '/'); i >= 0 {
		ks := s.kinds[prefix[:i]]
		if ks == nil {
			return nil
		}
		sorted := ks.sortedKeys()
		lo, hi := sort.SearchStrings(sorted, prefix), len(sorted)
		if len(prefix) > i+1 { // "Kind/" matches every key of the kind from lo on
			hi = lo
			for hi < len(sorted) && strings.HasPrefix(sorted[hi], prefix) {
				hi++
			}
		}
		if lo == hi {
			return nil
		}
		return append([]string(nil), sorted[lo:hi]...)
	}
	// A key starts with a prefix without '/' if and only if its kind does.
	var keys []string
	for kind, ks := range s.kinds {
		if strings.HasPrefix(kind, prefix) {
			for k := range ks.keys {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// Len returns the number of existing objects (tombstones not counted).
func (s *State) Len() int {
	n := 0
	for _, ks := range s.kinds {
		n += len(ks.keys)
	}
	return n
}

// Meta returns the greatest stamp among the object's registers, its
// version, and the node that wrote it, its last writer. Both are zero if
// the state holds nothing of key. A tombstone has a version too.
func (s *State) Meta(key string) (version Stamp, writer string) {
	o := s.objs[key]
	if o == nil {
		return Stamp{}, ""
	}
	m := o.maxStamp()
	return m, m.Node
}

// Sum returns a checksum of the object key's registers (the xor of their
// hashes, tombstones' included; 0 for none): it changes whenever any of
// them does, even when a merge brings a register older than the object's
// version (Meta), so a reader that keeps something derived from the
// object compares it to know whether to derive again.
func (s *State) Sum(key string) uint64 {
	if o := s.objs[key]; o != nil {
		return o.h
	}
	return 0
}

// MaxStamp returns the greatest stamp in the state, tombstones included:
// the newest write this state has seen. The agent compares its Wall with
// DefaultTombstoneHorizon to decide whether a state loaded from disk is too
// old to merge; see the package documentation.
func (s *State) MaxStamp() Stamp {
	var m Stamp
	for _, o := range s.objs {
		if om := o.maxStamp(); m.Less(om) {
			m = om
		}
	}
	return m
}

// Merge applies the registers of d, keeping in each register the greater
// stamp (and of equal stamps the bytewise greater value), and returns the
// registers that changed. Entries with an empty key are ignored, an empty
// value is taken as null; d should come from DecodeDelta (which validates
// what peers send) or from another State. Merge copies the values it keeps.
func (s *State) Merge(d Delta) (changed Delta) {
	for _, e := range d.Entries {
		if e.Key == "" {
			continue
		}
		r := e.Reg
		if len(r.Value) == 0 {
			r.Value = jsonNull
		}
		if o := s.objs[e.Key]; o != nil {
			if cur, ok := o.regs[e.Field]; ok && !r.wins(cur.Register) {
				continue
			}
		}
		r.Value = bytes.Clone(r.Value)
		if s.set(e.Key, e.Field, r) {
			changed.Entries = append(changed.Entries, Entry{Key: e.Key, Field: e.Field, Reg: r})
		}
	}
	return changed
}

// MergeStates returns the merge of a and b, leaving both unchanged.
func MergeStates(a, b *State) *State {
	c := a.Clone()
	for k, o := range b.objs {
		for f, r := range o.regs {
			c.setReg(k, f, r) // values are shared, never modified
		}
	}
	return c
}

// GC drops the tombstones (objects whose existence register is false, or
// missing) whose newest stamp is older than now-horizon, and returns how
// many it dropped. See the package documentation for why horizon must
// exceed the longest time a peer may be offline and still merge its state.
// It drops no live object, so the sets of live keys of each kind stay as
// they are.
func (s *State) GC(now time.Time, horizon time.Duration) int {
	limit := now.Add(-horizon).UnixNano()
	n := 0
	for k, o := range s.objs {
		if !o.live() && o.maxStamp().Wall < limit {
			s.buckets[o.bucket] ^= o.h
			delete(s.objs, k)
			n++
		}
	}
	return n
}

// entries returns every register of the given keys, sorted by key and
// field, sharing values with s.
func (s *State) entries(keys []string) Delta {
	var d Delta
	for _, k := range keys {
		o := s.objs[k]
		if o == nil {
			continue
		}
		for _, f := range sortedFields(o.regs) {
			d.Entries = append(d.Entries, Entry{Key: k, Field: f, Reg: o.regs[f].Register})
		}
	}
	return d
}

// allKeys returns every key, tombstones included, sorted.
func (s *State) allKeys() []string {
	keys := make([]string, 0, len(s.objs))
	for k := range s.objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func sortedFields[V any](m map[string]V) []string {
	fs := make([]string, 0, len(m))
	for f := range m {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	return fs
}
