package crdt

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// scanKeys is the reference for Keys: every object scanned, as Keys did
// before it kept the live keys of each kind.
func scanKeys(s *State, prefix string) []string {
	var keys []string
	for k, o := range s.objs {
		if strings.HasPrefix(k, prefix) && o.live() {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// scanLen is the reference for Len.
func scanLen(s *State) int {
	n := 0
	for _, o := range s.objs {
		if o.live() {
			n++
		}
	}
	return n
}

// Keys whose kinds are prefixes of one another, with '!' sorting before
// '/' and 'B' after it, and keys with no '/' at all.
var (
	indexKeys = []string{
		"Deployment/default/web", "Deployment/default/web-2", "Deployment/prod/db",
		"Deploy/default/web", "Namespace//prod", "Namespace//default",
		"A/x/y", "A!/x/y", "AB//z", "A", "AB", "Pod/default/web-1",
	}
	indexPrefixes = []string{
		"", "A", "AB", "D", "Deploy", "Deployment", "Namespace", "X",
		"A/", "A!/", "AB/", "AB//", "Deploy/", "Deployment/", "Deployment/default/",
		"Deployment/default/web", "Deployment/default/web-", "Deployment/prod/",
		"Namespace//", "Namespace//p", "Pod/", "Pod/default/", "Nope/", "Deployment/x/",
	}
)

// indexOp draws a Put, PutFields or Delete of one of indexKeys on s.
func indexOp(t *rapid.T, s *State, label string) {
	key := rapid.SampledFrom(indexKeys).Draw(t, label+".key")
	st := genStamp(t, label)
	fields := map[string]json.RawMessage{}
	for _, f := range genFields[:2] {
		if rapid.Bool().Draw(t, label+"."+f) {
			fields[f] = json.RawMessage(rapid.SampledFrom(genValues).Draw(t, label+"."+f+".value"))
		}
	}
	switch rapid.IntRange(0, 2).Draw(t, label+".op") {
	case 0:
		s.Put(key, fields, st)
	case 1:
		s.PutFields(key, fields, st)
	default:
		s.Delete(key, st)
	}
}

// indexDelta draws registers of indexKeys, as a peer may send them.
func indexDelta(t *rapid.T, label string) Delta {
	n := rapid.IntRange(0, 8).Draw(t, label+".n")
	var d Delta
	for i := 0; i < n; i++ {
		e := genEntry(t, fmt.Sprintf("%s.%d", label, i))
		e.Key = rapid.SampledFrom(indexKeys).Draw(t, fmt.Sprintf("%s.%d.ikey", label, i))
		d.Entries = append(d.Entries, e)
	}
	return d
}

// reload returns s encoded as Save writes it and decoded as Load reads it.
func reload(t tb, s *State) *State {
	t.Helper()
	b := append(append([]byte(nil), fileMagic...), wireVersion)
	b, err := appendEntries(b, all(s).Entries)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	got, err := decodeFile(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return got
}

// checkKeys compares Keys and Len of s with the full scan.
func checkKeys(t *rapid.T, what string, s *State) {
	t.Helper()
	checkInvariants(t, s)
	for _, p := range indexPrefixes {
		got, want := s.Keys(p), scanKeys(s, p)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Keys(%q) = %q, want %q", what, p, got, want)
		}
		for i := range got {
			got[i] = "scribbled" // the caller's to modify
		}
	}
	if got, want := s.Len(), scanLen(s); got != want {
		t.Fatalf("%s: Len = %d, want %d", what, got, want)
	}
}

// TestKeysIndex checks Keys and Len against the full scan over random
// writes, merges, GCs, reloads and clones, writing to clones and to the
// States they were cloned from.
func TestKeysIndex(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		states := []*State{New()}
		n := rapid.IntRange(1, 40).Draw(t, "steps")
		for i := 0; i < n; i++ {
			label := fmt.Sprintf("step%d", i)
			at := rapid.IntRange(0, len(states)-1).Draw(t, label+".state")
			s := states[at]
			switch rapid.IntRange(0, 6).Draw(t, label+".kind") {
			case 0, 1:
				indexOp(t, s, label)
			case 2:
				s.Merge(indexDelta(t, label))
			case 3:
				other := states[rapid.IntRange(0, len(states)-1).Draw(t, label+".other")]
				if rapid.Bool().Draw(t, label+".whole") {
					states[at] = MergeStates(s, other)
				} else {
					s.Merge(all(other))
				}
			case 4:
				now := time.Unix(0, rapid.Int64Range(0, 8).Draw(t, label+".now"))
				s.GC(now, 0)
			case 5:
				states = append(states, s.Clone())
			case 6:
				states[at] = reload(t, s)
			}
			for j, s := range states {
				what := fmt.Sprintf("after %s, state %d", label, j)
				// Reads build the sorted caches that later writes edit;
				// without reads, writes change sets with no cache.
				if rapid.Bool().Draw(t, what+" read") {
					checkKeys(t, what, s)
				} else {
					checkInvariants(t, s)
				}
			}
		}
		for j, s := range states {
			checkKeys(t, fmt.Sprintf("at the end, state %d", j), s)
		}
	})
}

// TestKeysSortedCache follows a kind's sorted cache through more changes
// than it is edited for, in a State and its clone: what Keys returned
// before stays as it was, and the cache is dropped, then rebuilt.
func TestKeysSortedCache(t *testing.T) {
	s := New()
	for i := 0; i < 30; i++ {
		s.Put(fmt.Sprintf("Pod/ns/p%02d", i), nil, Stamp{Wall: 1, Node: "a"})
	}
	before := s.Keys("Pod/")
	shared := s.kinds["Pod"].sortedKeys()
	sharedCopy := slices.Clone(shared)
	c := s.Clone()
	for i := 0; i < 2*maxSortedEdits; i++ {
		st := Stamp{Wall: int64(2 + i), Node: "a"}
		if i%3 == 0 { // first a delete, from the cache shared with s
			c.Delete(fmt.Sprintf("Pod/ns/p%02d", i/3), st)
		} else {
			c.Put(fmt.Sprintf("Pod/ns/q%02d", i), nil, st)
		}
		ks := c.kinds["Pod"]
		if ks == s.kinds["Pod"] {
			t.Fatal("the clone changed the set it shares")
		}
		if want := i < maxSortedEdits; ks.ok != want {
			t.Fatalf("after %d changes: cache kept %v, want %v", i+1, ks.ok, want)
		}
		checkInvariants(t, c)
	}
	if got, want := c.Keys("Pod/"), scanKeys(c, "Pod/"); !reflect.DeepEqual(got, want) {
		t.Fatalf("clone: Keys = %q, want %q", got, want)
	}
	if !c.kinds["Pod"].ok {
		t.Fatal("cache not rebuilt")
	}
	if got := s.Keys("Pod/"); !reflect.DeepEqual(got, before) {
		t.Fatalf("source: Keys = %q, want %q", got, before)
	}
	if !slices.Equal(shared, sharedCopy) {
		t.Fatal("a shared sorted cache was modified")
	}
	// Deleting every key drops the kind's set.
	for _, k := range before {
		s.Delete(k, Stamp{Wall: 100, Node: "a"})
	}
	if _, ok := s.kinds["Pod"]; ok || s.Keys("Pod/") != nil || s.Len() != 0 {
		t.Fatal("the set of a kind with no live key is kept")
	}
	checkInvariants(t, s)
}

// TestKeysConcurrentReaders reads a State's keys from several goroutines
// at once, as state.Store's readers do under its read lock, the first
// reads building the sorted cache of the kind's set, while a clone of the
// State is written (run with -race).
func TestKeysConcurrentReaders(t *testing.T) {
	for round := 0; round < 20; round++ {
		s := New()
		for i := 0; i < 100; i++ {
			s.Put(fmt.Sprintf("Pod/ns%d/p%d", i%3, i), nil, Stamp{Wall: 1, Node: "a"})
		}
		c := s.Clone()
		want := scanKeys(s, "Pod/")
		start := make(chan struct{})
		var wg sync.WaitGroup
		for r := 0; r < 4; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 10; i++ {
					if got := s.Keys("Pod/"); !reflect.DeepEqual(got, want) {
						t.Errorf("Keys = %d keys, want %d", len(got), len(want))
						return
					}
					s.Keys("Pod/ns1/")
					s.Len()
				}
			}()
		}
		close(start)
		for i := 0; i < 10; i++ {
			c.Keys("Pod/")
			c.Put(fmt.Sprintf("Pod/ns1/new%d", i), nil, Stamp{Wall: 2, Node: "b"})
			c.Delete(fmt.Sprintf("Pod/ns%d/p%d", i%3, i), Stamp{Wall: 2, Node: "b"})
		}
		wg.Wait()
		if got := c.Keys("Pod/"); !reflect.DeepEqual(got, scanKeys(c, "Pod/")) {
			t.Fatalf("clone: Keys differ from the scan")
		}
		if got := s.Keys("Pod/"); !reflect.DeepEqual(got, want) {
			t.Fatalf("source: Keys changed by writes to its clone")
		}
	}
}

// BenchmarkKeysOfKind lists the keys of one kind (1,800 live) in a state
// of 10,000 objects across 5 kinds, 1,000 of them tombstones:
//
//   - scan: the full scan Keys made before it kept the live keys of each
//     kind (scanKeys), the reference;
//   - index: Keys, the kind's sorted cache built;
//   - index-namespace: Keys of one namespace of the kind (200 keys);
//   - index-rebuild: Keys after the cache was dropped, as after more than
//     maxSortedEdits creates and deletes of the kind with no read between;
//   - write-then-scan and write-then-index: what state.Store does for a
//     create followed by a List: the state cloned, an object of the kind
//     created in the clone, and the clone's keys of the kind listed.
func BenchmarkKeysOfKind(b *testing.B) {
	kinds := []string{"Deployment", "Pod", "Service", "ConfigMap", "Secret"}
	s := New()
	for i := 0; i < 10000; i++ {
		key := fmt.Sprintf("%s/ns%d/obj-%d", kinds[i%len(kinds)], (i/5)%10, i)
		s.Put(key, deployment(i%5, "web:1"), Stamp{Wall: 1, Node: "a"})
		if i%50 < 5 { // 200 tombstones of each kind, in ns0
			s.Delete(key, Stamp{Wall: 2, Node: "a"})
		}
	}
	if got, want := s.Keys("Pod/"), scanKeys(s, "Pod/"); !reflect.DeepEqual(got, want) || len(got) != 1800 {
		b.Fatalf("Keys(Pod/) = %d keys, scan %d", len(got), len(want))
	}
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			scanKeys(s, "Pod/")
		}
	})
	b.Run("index", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Keys("Pod/")
		}
	})
	b.Run("index-namespace", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Keys("Pod/ns1/")
		}
	})
	b.Run("index-rebuild", func(b *testing.B) {
		b.ReportAllocs()
		ks := s.kinds["Pod"]
		for b.Loop() {
			ks.sorted, ks.ok = nil, false
			s.Keys("Pod/")
		}
	})
	for _, how := range []string{"scan", "index"} {
		b.Run("write-then-"+how, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				next := s.Clone()
				next.Put(fmt.Sprintf("Pod/ns1/new-%d", i), nil, Stamp{Wall: 3, Node: "a"})
				if how == "scan" {
					scanKeys(next, "Pod/")
				} else {
					next.Keys("Pod/")
				}
			}
		})
	}
}
