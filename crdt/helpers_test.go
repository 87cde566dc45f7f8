package crdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// Small alphabets, so that generated writes collide on keys, fields and
// stamps (equal stamps with different values included).
var (
	genKeys   = []string{"Deployment/default/web", "Service/default/web", "Namespace//prod", "Deployment/prod/db", "Pod/default/web-1"}
	genFields = []string{"spec.replicas", "spec.template", "spec.strategy", "metadata.labels", "apiVersion"}
	genValues = []string{`1`, `2`, `"x"`, `null`, `{"a":1}`, `[1,2]`, `{"containers":[{"name":"c","image":"i"}]}`}
	genNodes  = []string{"a", "b", "c"}
)

func genStamp(t *rapid.T, label string) Stamp {
	return Stamp{
		Wall:    rapid.Int64Range(1, 6).Draw(t, label+".wall"),
		Logical: rapid.Uint32Range(0, 2).Draw(t, label+".logical"),
		Node:    rapid.SampledFrom(genNodes).Draw(t, label+".node"),
	}
}

// genEntry draws any register of any object: the states built from them
// are every state merges can reach.
func genEntry(t *rapid.T, label string) Entry {
	e := Entry{
		Key:   rapid.SampledFrom(genKeys).Draw(t, label+".key"),
		Field: rapid.SampledFrom(append([]string{ExistsField}, genFields...)).Draw(t, label+".field"),
		Reg:   Register{Stamp: genStamp(t, label)},
	}
	if e.Field == ExistsField {
		e.Reg.Value = json.RawMessage(rapid.SampledFrom([]string{"true", "false"}).Draw(t, label+".exists"))
	} else {
		e.Reg.Value = json.RawMessage(rapid.SampledFrom(genValues).Draw(t, label+".value"))
	}
	return e
}

func genDelta(t *rapid.T, label string) Delta {
	n := rapid.IntRange(0, 12).Draw(t, label+".n")
	var d Delta
	for i := 0; i < n; i++ {
		d.Entries = append(d.Entries, genEntry(t, fmt.Sprintf("%s.%d", label, i)))
	}
	return d
}

// genOpDelta draws a write as the API makes it: Put, PutFields or Delete
// of one object on a state that may already hold it.
func genOp(t *rapid.T, s *State, label string) Delta {
	key := rapid.SampledFrom(genKeys).Draw(t, label+".key")
	st := genStamp(t, label)
	fields := map[string]json.RawMessage{}
	for _, f := range genFields {
		if rapid.Bool().Draw(t, label+"."+f) {
			fields[f] = json.RawMessage(rapid.SampledFrom(genValues).Draw(t, label+"."+f+".value"))
		}
	}
	switch rapid.IntRange(0, 2).Draw(t, label+".op") {
	case 0:
		return s.Put(key, fields, st)
	case 1:
		return s.PutFields(key, fields, st)
	default:
		return s.Delete(key, st)
	}
}

// genState draws a state: random registers merged, then random API writes.
func genState(t *rapid.T, label string) *State {
	s := New()
	s.Merge(genDelta(t, label+".regs"))
	n := rapid.IntRange(0, 6).Draw(t, label+".ops")
	for i := 0; i < n; i++ {
		genOp(t, s, fmt.Sprintf("%s.op%d", label, i))
	}
	return s
}

// all returns every register of s.
func all(s *State) Delta { return s.entries(s.allKeys()) }

// dump renders s for failure messages and comparisons.
func dump(s *State) string {
	var b strings.Builder
	for _, e := range all(s).Entries {
		fmt.Fprintf(&b, "%s [%s] = %s @%s\n", e.Key, e.Field, e.Reg.Value, e.Reg.Stamp)
	}
	return b.String()
}

func equalStates(a, b *State) bool {
	if len(a.objs) != len(b.objs) {
		return false
	}
	for k, oa := range a.objs {
		ob := b.objs[k]
		if ob == nil || len(oa.regs) != len(ob.regs) {
			return false
		}
		for f, ra := range oa.regs {
			rb, ok := ob.regs[f]
			if !ok || ra.Stamp != rb.Stamp || !bytes.Equal(ra.Value, rb.Value) {
				return false
			}
		}
	}
	return true
}

type tb interface {
	Helper()
	Fatalf(string, ...any)
}

func requireEqual(t tb, what string, a, b *State) {
	t.Helper()
	if !equalStates(a, b) {
		t.Fatalf("%s: states differ:\n%s---\n%s", what, dump(a), dump(b))
	}
}

// checkInvariants verifies the hashes kept incrementally against hashes
// computed from scratch.
func checkInvariants(t tb, s *State) {
	t.Helper()
	var d Digest
	for k, o := range s.objs {
		if len(o.regs) == 0 {
			t.Fatalf("object %s has no registers", k)
		}
		if o.bucket != bucketOf(k) {
			t.Fatalf("object %s in bucket %d, want %d", k, o.bucket, bucketOf(k))
		}
		var h uint64
		for f, r := range o.regs {
			if r.h != regHash(k, f, r.Register) {
				t.Fatalf("register %s [%s] has a stale hash", k, f)
			}
			h ^= r.h
		}
		if h != o.h {
			t.Fatalf("object %s has a stale hash", k)
		}
		d[o.bucket] ^= h
	}
	if d != s.Digest() {
		t.Fatalf("digest is stale")
	}
	checkKindIndex(t, s)
}

// checkKindIndex verifies the sets of live keys of each kind against the
// objects.
func checkKindIndex(t tb, s *State) {
	t.Helper()
	for kind, ks := range s.kinds {
		if len(ks.keys) == 0 {
			t.Fatalf("empty set of kind %q kept", kind)
		}
		if ks.ok {
			want := make([]string, 0, len(ks.keys))
			for k := range ks.keys {
				want = append(want, k)
			}
			sort.Strings(want)
			if !slices.Equal(ks.sorted, want) {
				t.Fatalf("sorted keys of kind %q are %q, want %q", kind, ks.sorted, want)
			}
		}
		for k := range ks.keys {
			if kindOf(k) != kind {
				t.Fatalf("key %s in the set of kind %q", k, kind)
			}
			if o := s.objs[k]; o == nil || !o.live() {
				t.Fatalf("key %s in the set of kind %q is not live", k, kind)
			}
		}
	}
	for k, o := range s.objs {
		in := false
		if ks := s.kinds[kindOf(k)]; ks != nil {
			_, in = ks.keys[k]
		}
		if in != o.live() {
			t.Fatalf("key %s: live %v, in the set of its kind %v", k, o.live(), in)
		}
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
