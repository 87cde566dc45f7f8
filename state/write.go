package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// Local writes: each is checked (checkWrite), saved and only then
// acknowledged, and its delta published.

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
	// On disk (the delta appended to the journal and synced) before it
	// is acknowledged: the cost of a write is its delta, not the state.
	s.saveMu.Lock()
	err := s.journal.Append(d, true)
	s.saveMu.Unlock()
	if err != nil {
		return fmt.Errorf("save desired state: %w", err)
	}
	s.st = next
	close(s.watch)
	s.watch = make(chan struct{})
	select {
	case s.local <- d:
	default:
		s.localDropped.Add(1)
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
