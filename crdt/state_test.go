package crdt

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genState(t, "a"), genState(t, "b"), genState(t, "c")
		ab := MergeStates(a, b)
		checkInvariants(t, ab)
		requireEqual(t, "commutative", ab, MergeStates(b, a))
		requireEqual(t, "associative", MergeStates(ab, c), MergeStates(a, MergeStates(b, c)))
		requireEqual(t, "idempotent", MergeStates(a, a), a)
		requireEqual(t, "absorbing", MergeStates(ab, b), ab)

		// Merging b's registers as a delta is the same as MergeStates.
		viaDelta := a.Clone()
		viaDelta.Merge(all(b))
		checkInvariants(t, viaDelta)
		requireEqual(t, "Merge(delta)", viaDelta, ab)
		other := b.Clone()
		other.Merge(all(a))
		requireEqual(t, "Merge(delta) commutative", viaDelta, other)
		if again := viaDelta.Merge(all(b)); again.Len() != 0 {
			t.Fatalf("merging a delta twice changed %d registers", again.Len())
		}
		// Inputs are unchanged.
		a2 := a.Clone()
		MergeStates(a, b)
		requireEqual(t, "MergeStates leaves a alone", a, a2)
	})
}

// Replaying the deltas of any set of writes, in any order and any number of
// times, gives one state; and the changed deltas Merge reports, replayed
// on another replica, bring it to the same state.
func TestDeliveryOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var deltas []Delta
		writers := []*State{New(), New(), New()}
		n := rapid.IntRange(1, 10).Draw(t, "n")
		for i := 0; i < n; i++ {
			w := rapid.IntRange(0, len(writers)-1).Draw(t, fmt.Sprintf("writer%d", i))
			if rapid.Bool().Draw(t, fmt.Sprintf("raw%d", i)) {
				d := genDelta(t, fmt.Sprintf("d%d", i))
				writers[w].Merge(d)
				deltas = append(deltas, d)
			} else {
				deltas = append(deltas, genOp(t, writers[w], fmt.Sprintf("op%d", i)))
			}
		}
		ref := New()
		for _, d := range deltas {
			ref.Merge(d)
		}
		checkInvariants(t, ref)
		requireEqual(t, "merge of writers", ref, MergeStates(MergeStates(writers[0], writers[1]), writers[2]))

		order := rapid.SliceOfN(rapid.IntRange(0, len(deltas)-1), 0, 3*len(deltas)).Draw(t, "order")
		perm := rapid.Permutation(deltas).Draw(t, "perm")
		got, relay := New(), New()
		for _, d := range append(perm, pick(deltas, order)...) {
			relay.Merge(got.Merge(d))
		}
		checkInvariants(t, got)
		requireEqual(t, "permuted and duplicated", got, ref)
		requireEqual(t, "relayed changes", relay, ref)
	})
}

func pick(ds []Delta, idx []int) []Delta {
	var out []Delta
	for _, i := range idx {
		out = append(out, ds[i])
	}
	return out
}

func deployment(replicas int, image string) map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"apiVersion":      raw(`"apps/v1"`),
		"kind":            raw(`"Deployment"`),
		"metadata.labels": raw(`{"app":"web"}`),
		"spec.replicas":   raw(fmt.Sprint(replicas)),
		"spec.selector":   raw(`{"matchLabels":{"app":"web"}}`),
		"spec.template":   raw(`{"spec":{"containers":[{"name":"web","image":"` + image + `"}]}}`),
		"spec.strategy":   raw(`{"type":"Recreate"}`),
	}
}

type fakeTime struct{ t time.Time }

func (f *fakeTime) now() time.Time { return f.t }

func TestConcurrentFieldWrites(t *testing.T) {
	ft := &fakeTime{time.Unix(1000, 0)}
	ca, cb := NewClock("a", ft.now), NewClock("b", ft.now)
	const key = "Deployment/default/web"
	base := New()
	base.Put(key, deployment(1, "web:1"), ca.Now())
	for _, bFirst := range []bool{false, true} {
		a, b := base.Clone(), base.Clone()
		// Issue b's stamp first or second: either may be greater.
		var sa, sb Stamp
		if bFirst {
			sb, sa = cb.Now(), ca.Now()
		} else {
			sa, sb = ca.Now(), cb.Now()
		}
		da := a.PutFields(key, map[string]json.RawMessage{"spec.replicas": raw("5")}, sa)
		db := b.PutFields(key, map[string]json.RawMessage{"spec.template": deployment(0, "web:2")["spec.template"]}, sb)
		a.Merge(db)
		b.Merge(da)
		requireEqual(t, "both orders", a, b)
		got, ok := a.Get(key)
		if !ok {
			t.Fatal("deployment gone")
		}
		want := deployment(5, "web:2")
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}

// A delete and an update of the same object, merged in either order: the
// newer one decides whether the object exists.
func TestDeleteVersusUpdate(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const key = "Deployment/default/web"
		base := New()
		base.Put(key, deployment(1, "web:1"), Stamp{Wall: 1, Node: "a"})
		del := genStamp(t, "delete")
		upd := genStamp(t, "update")
		del.Wall++
		upd.Wall++
		if del == upd {
			t.Skip("same stamp")
		}
		full := rapid.Bool().Draw(t, "full")
		a, b := base.Clone(), base.Clone()
		dd := a.Delete(key, del)
		var du Delta
		if full {
			du = b.Put(key, deployment(3, "web:3"), upd)
		} else {
			du = b.PutFields(key, map[string]json.RawMessage{"spec.replicas": raw("3")}, upd)
		}
		a.Merge(du)
		b.Merge(dd)
		requireEqual(t, "both orders", a, b)
		got, ok := a.Get(key)
		if ok != del.Less(upd) {
			t.Fatalf("delete %v, update %v: exists = %v", del, upd, ok)
		}
		if ok && string(got["spec.replicas"]) != "3" {
			t.Fatalf("update lost: %s", got)
		}
		if ok != contains(a.Keys(""), key) || a.Len() != map[bool]int{false: 0, true: 1}[ok] {
			t.Fatalf("Keys/Len disagree with Get")
		}
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestPutRemovesAbsentFields(t *testing.T) {
	ft := &fakeTime{time.Unix(1000, 0)}
	ca, cb := NewClock("a", ft.now), NewClock("b", ft.now)
	const key = "Deployment/default/web"
	s := New()
	s.Put(key, deployment(1, "web:1"), ca.Now())
	peer := s.Clone()
	// Concurrently, b rewrites the strategy, with an older stamp...
	old := peer.PutFields(key, map[string]json.RawMessage{"spec.strategy": raw(`{"type":"RollingUpdate"}`)}, cb.Now())
	// ...and a applies a manifest without strategy.
	f := deployment(1, "web:1")
	delete(f, "spec.strategy")
	d := s.Put(key, f, ca.Now())
	if !deltaHas(d, "spec.strategy", "null") {
		t.Fatalf("Put did not write null to the absent field: %+v", d)
	}
	s.Merge(old)
	peer.Merge(d)
	requireEqual(t, "peers", s, peer)
	got, _ := s.Get(key)
	if _, ok := got["spec.strategy"]; ok {
		t.Fatalf("spec.strategy survived: %s", got)
	}
	if !reflect.DeepEqual(got, f) {
		t.Fatalf("got %s, want %s", got, f)
	}
}

func deltaHas(d Delta, field, value string) bool {
	for _, e := range d.Entries {
		if e.Field == field && string(e.Reg.Value) == value {
			return true
		}
	}
	return false
}

func TestCreationFields(t *testing.T) {
	c := NewClock("a", (&fakeTime{time.Unix(1000, 0)}).now)
	const key = "Service/default/web"
	s := New()
	create := map[string]json.RawMessage{
		"kind": raw(`"Service"`), "spec.ports": raw(`[{"port":80}]`),
		FieldUID: raw(`"uid-1"`), FieldCreationTimestamp: raw(`"2024-01-01T00:00:00Z"`),
	}
	s.Put(key, create, c.Now())
	// A re-apply neither clears nor replaces them.
	s.Put(key, map[string]json.RawMessage{"kind": raw(`"Service"`), "spec.ports": raw(`[{"port":81}]`)}, c.Now())
	s.Put(key, map[string]json.RawMessage{"kind": raw(`"Service"`), FieldUID: raw(`"uid-other"`)}, c.Now())
	got, _ := s.Get(key)
	if string(got[FieldUID]) != `"uid-1"` || string(got[FieldCreationTimestamp]) != `"2024-01-01T00:00:00Z"` {
		t.Fatalf("creation fields changed: %s", got)
	}
	if _, ok := got["spec.ports"]; ok {
		t.Fatalf("spec.ports survived a Put without it: %s", got)
	}
	// A re-create after a delete writes them anew, and clears the rest.
	s.Delete(key, c.Now())
	if _, ok := s.Get(key); ok {
		t.Fatal("deleted object visible")
	}
	s.Put(key, map[string]json.RawMessage{"kind": raw(`"Service"`), FieldUID: raw(`"uid-2"`)}, c.Now())
	got, _ = s.Get(key)
	want := map[string]json.RawMessage{"kind": raw(`"Service"`), FieldUID: raw(`"uid-2"`)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("re-created: got %s, want %s", got, want)
	}
}

func TestMetaAndMaxStamp(t *testing.T) {
	s := New()
	if v, w := s.Meta("Namespace//x"); !v.IsZero() || w != "" {
		t.Fatal("Meta of an absent key is not zero")
	}
	s1 := Stamp{Wall: 10, Node: "a"}
	s2 := Stamp{Wall: 10, Logical: 1, Node: "b"}
	s.Put("Namespace//x", nil, s1)
	s.PutFields("Namespace//x", map[string]json.RawMessage{"metadata.labels": raw(`{}`)}, s2)
	s.Put("Namespace//y", nil, Stamp{Wall: 5, Node: "c"})
	if v, w := s.Meta("Namespace//x"); v != s2 || w != "b" {
		t.Fatalf("Meta = %v, %q", v, w)
	}
	if m := s.MaxStamp(); m != s2 {
		t.Fatalf("MaxStamp = %v", m)
	}
	if got := s.Keys("Namespace//"); !reflect.DeepEqual(got, []string{"Namespace//x", "Namespace//y"}) {
		t.Fatalf("Keys = %v", got)
	}
	if got := s.Keys("Deployment/"); len(got) != 0 {
		t.Fatalf("Keys = %v", got)
	}
}

func TestOlderWriteLoses(t *testing.T) {
	s := New()
	s.Put("Namespace//x", map[string]json.RawMessage{"metadata.labels": raw(`{"a":"1"}`)}, Stamp{Wall: 10})
	if d := s.Put("Namespace//x", map[string]json.RawMessage{"metadata.labels": raw(`{"a":"0"}`)}, Stamp{Wall: 9}); d.Len() != 0 {
		t.Fatalf("older Put changed %v", d)
	}
	if d := s.Delete("Namespace//x", Stamp{Wall: 9}); d.Len() != 0 {
		t.Fatalf("older Delete changed %v", d)
	}
	got, ok := s.Get("Namespace//x")
	if !ok || string(got["metadata.labels"]) != `{"a":"1"}` {
		t.Fatalf("got %s %v", got, ok)
	}
}

func TestPutPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"empty key":     func() { New().Put("", nil, Stamp{}) },
		"existence":     func() { New().PutFields("a/b/c", map[string]json.RawMessage{"": raw("true")}, Stamp{}) },
		"invalid JSON":  func() { New().Put("a/b/c", map[string]json.RawMessage{"x": raw("{")}, Stamp{}) },
		"delete no key": func() { New().Delete("", Stamp{}) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
	// Empty values are null; values are stored compacted.
	s := New()
	s.Put("a/b/c", map[string]json.RawMessage{"x": nil, "y": raw(" { \"a\" : 1 } ")}, Stamp{Wall: 1})
	got, _ := s.Get("a/b/c")
	if !reflect.DeepEqual(got, map[string]json.RawMessage{"y": raw(`{"a":1}`)}) {
		t.Fatalf("got %s", got)
	}
}

func TestGC(t *testing.T) {
	now := time.Unix(100*24*3600, 0)
	old := Stamp{Wall: now.Add(-DefaultTombstoneHorizon - time.Second).UnixNano(), Node: "a"}
	recent := Stamp{Wall: now.Add(-time.Hour).UnixNano(), Node: "a"}
	s := New()
	s.Put("Namespace//live", nil, old)
	s.Put("Namespace//gone", nil, old)
	s.Delete("Namespace//gone", Stamp{Wall: old.Wall, Logical: 1, Node: "a"})
	s.Put("Namespace//fresh", nil, old)
	s.Delete("Namespace//fresh", recent)
	s.Merge(Delta{Entries: []Entry{{Key: "Namespace//partial", Field: "metadata.labels", Reg: Register{Value: raw("{}"), Stamp: old}}}})
	withTomb := s.Clone()
	if n := s.GC(now, DefaultTombstoneHorizon); n != 2 {
		t.Fatalf("GC dropped %d, want 2", n)
	}
	checkInvariants(t, s)
	if _, ok := s.objs["Namespace//gone"]; ok {
		t.Fatal("old tombstone kept")
	}
	if _, ok := s.objs["Namespace//fresh"]; !ok {
		t.Fatal("recent tombstone dropped")
	}
	if _, ok := s.Get("Namespace//live"); !ok {
		t.Fatal("live object dropped")
	}
	// The tombstone coming back from a peer that has not GCed yet is
	// dropped again.
	s.Merge(withTomb.DeltaFor([]string{"Namespace//gone"}))
	if _, ok := s.Get("Namespace//gone"); ok {
		t.Fatal("tombstone resurrected the object")
	}
	if n := s.GC(now, DefaultTombstoneHorizon); n != 1 {
		t.Fatalf("second GC dropped %d, want 1", n)
	}
}

func TestClockMonotonic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ft := &fakeTime{time.Unix(1_700_000_000, 0)}
		c := NewClock("b", ft.now)
		var max Stamp // greatest stamp issued or observed
		n := rapid.IntRange(1, 50).Draw(t, "n")
		for i := 0; i < n; i++ {
			// Wall time jumps back and forth.
			ft.t = ft.t.Add(time.Duration(rapid.Int64Range(-int64(time.Second), int64(time.Second)).Draw(t, "step")))
			if rapid.Bool().Draw(t, "observe") {
				s := Stamp{
					Wall:    ft.t.UnixNano() + rapid.Int64Range(-int64(2*time.Minute), int64(2*time.Minute)).Draw(t, "skew"),
					Logical: rapid.SampledFrom([]uint32{0, 1, 7, 1<<32 - 1}).Draw(t, "logical"),
					Node:    rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "node"),
				}
				err := c.Observe(s)
				if tooFar := s.Wall-ft.t.UnixNano() > int64(MaxDrift); tooFar != (err != nil) {
					t.Fatalf("Observe(%v) at %d = %v", s, ft.t.UnixNano(), err)
				}
				if err == nil && max.Less(s) {
					max = s
				}
				continue
			}
			s := c.Now()
			if !max.Less(s) {
				t.Fatalf("Now() = %v, not after %v", s, max)
			}
			if s.Node != "b" {
				t.Fatalf("Now() = %v, wrong node", s)
			}
			max = s
		}
	})
}

func TestClockDrift(t *testing.T) {
	ft := &fakeTime{time.Unix(1000, 0)}
	c := NewClock("a", ft.now)
	far := Stamp{Wall: ft.t.Add(MaxDrift + time.Second).UnixNano(), Node: "b"}
	if err := c.Observe(far); err == nil {
		t.Fatal("no error for a stamp too far ahead")
	}
	if s := c.Now(); s.Wall != ft.t.UnixNano() {
		t.Fatalf("clock jumped to %v", s)
	}
	near := Stamp{Wall: ft.t.Add(MaxDrift).UnixNano(), Logical: 3, Node: "b"}
	check(t, c.Observe(near))
	if s := c.Now(); !near.Less(s) {
		t.Fatalf("Now() = %v after observing %v", s, near)
	}
}

func TestStampOrder(t *testing.T) {
	ordered := []Stamp{{}, {Node: "a"}, {Logical: 1}, {Logical: 1, Node: "a"}, {Wall: 1}, {Wall: 1, Logical: 2, Node: "a"}, {Wall: 2, Node: "a"}}
	for i, a := range ordered {
		for j, b := range ordered {
			if a.Less(b) != (i < j) {
				t.Errorf("%v.Less(%v) = %v", a, b, a.Less(b))
			}
		}
	}
	if s := (Stamp{Wall: 5, Logical: 2, Node: "n"}).String(); s != "5.2@n" {
		t.Errorf("String() = %q", s)
	}
	b, _ := json.Marshal(Stamp{Wall: 5, Logical: 2, Node: "n"})
	if string(b) != `{"wall":5,"logical":2,"node":"n"}` {
		t.Errorf("JSON = %s", b)
	}
}

// A clone shares its objects until one side writes: writes to either side,
// in any order, never show on the other, and each ends as if it had been
// deeply copied (the same writes replayed on a copy rebuilt from its
// registers).
func TestCloneCopyOnWrite(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genState(t, "a")
		b := a.Clone()
		deep := func(s *State) *State { c := New(); c.Merge(all(s)); return c }
		refA, refB := deep(a), deep(b)
		n := rapid.IntRange(1, 12).Draw(t, "n")
		for i := range n {
			d := genDelta(t, fmt.Sprintf("d%d", i))
			if rapid.Bool().Draw(t, fmt.Sprintf("toA%d", i)) {
				a.Merge(d)
				refA.Merge(d)
			} else {
				b.Merge(d)
				refB.Merge(d)
			}
			if rapid.Bool().Draw(t, fmt.Sprintf("reclone%d", i)) {
				b = b.Clone() // clones of clones share too
			}
		}
		checkInvariants(t, a)
		checkInvariants(t, b)
		requireEqual(t, "a as if deeply copied", a, refA)
		requireEqual(t, "b as if deeply copied", b, refB)
	})
}
