package state

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// Deletes, with what goes along: a namespace's objects, what an object
// owns and its bookkeeping (cascade), or, orphaning, only the owner.

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
