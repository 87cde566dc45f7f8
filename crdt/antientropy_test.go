package crdt

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// exchange runs one anti-entropy round between a and b, every message
// through the wire codec, and returns the bytes sent.
func exchange(t tb, a, b *State) int {
	t.Helper()
	sent := 0
	wire := func(bs []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		sent += len(bs)
		return bs
	}
	da, err := DecodeDigest(wire(EncodeDigest(a.Digest())))
	if err != nil {
		t.Fatalf("%v", err)
	}
	db, err := DecodeDigest(wire(EncodeDigest(b.Digest())))
	if err != nil {
		t.Fatalf("%v", err)
	}
	bucketsA, bucketsB := DiffDigest(a.Digest(), db), DiffDigest(b.Digest(), da)
	if fmt.Sprint(bucketsA) != fmt.Sprint(bucketsB) {
		t.Fatalf("peers disagree on the buckets: %v %v", bucketsA, bucketsB)
	}
	if len(bucketsA) == 0 {
		return sent
	}
	ka, err := DecodeKeyHashes(wire(EncodeKeyHashes(a.BucketKeys(bucketsB))))
	if err != nil {
		t.Fatalf("%v", err)
	}
	kb, err := DecodeKeyHashes(wire(EncodeKeyHashes(b.BucketKeys(bucketsA))))
	if err != nil {
		t.Fatalf("%v", err)
	}
	needA := DiffKeys(a.BucketKeys(bucketsA), kb) // what a asks b for
	needB := DiffKeys(b.BucketKeys(bucketsB), ka)
	fromB, err := DecodeDelta(wire(EncodeDelta(b.DeltaFor(needA))))
	if err != nil {
		t.Fatalf("%v", err)
	}
	fromA, err := DecodeDelta(wire(EncodeDelta(a.DeltaFor(needB))))
	if err != nil {
		t.Fatalf("%v", err)
	}
	a.Merge(fromB)
	b.Merge(fromA)
	return sent
}

func TestAntiEntropy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genState(t, "a"), genState(t, "b")
		// Often start from a common history.
		if rapid.Bool().Draw(t, "shared") {
			common := genState(t, "common")
			a, b = MergeStates(common, a), MergeStates(common, b)
		}
		want := MergeStates(a, b)
		equal := equalStates(a, b)
		if equal != (a.Digest() == b.Digest()) {
			t.Fatalf("states equal: %v, digests equal: %v", equal, !equal)
		}
		exchange(t, a, b)
		checkInvariants(t, a)
		checkInvariants(t, b)
		requireEqual(t, "after exchange", a, b)
		requireEqual(t, "merge", a, want)
		if a.Digest() != b.Digest() {
			t.Fatal("equal states, different digests")
		}
		// In sync, a round sends the two digests and nothing else.
		if n := exchange(t, a, b); n != 2*(1+64*8) {
			t.Fatalf("in-sync exchange sent %d bytes", n)
		}
	})
}

// Digests are equal iff states are, on states that differ by one register.
func TestDigestSensitivity(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := genState(t, "a")
		b := a.Clone()
		if a.Digest() != b.Digest() {
			t.Fatal("clone has a different digest")
		}
		b.Merge(Delta{Entries: []Entry{genEntry(t, "e")}})
		if equalStates(a, b) != (a.Digest() == b.Digest()) {
			t.Fatalf("states equal: %v, digests equal: %v", equalStates(a, b), a.Digest() == b.Digest())
		}
		// A register replaced at the same stamp by a greater value: the
		// digest sees the value, not just the stamp.
		if d := all(b); d.Len() > 0 {
			e := d.Entries[rapid.IntRange(0, d.Len()-1).Draw(t, "i")]
			if e.Field != ExistsField {
				e.Reg.Value = raw(`{"z":"` + string(e.Reg.Value[:1]) + `"}`)
				before := b.Digest()
				if b.Merge(Delta{Entries: []Entry{e}}).Len() == 1 && b.Digest() == before {
					t.Fatal("a new value at the same stamp left the digest unchanged")
				}
			}
		}
		// Same registers, built in another order: same digest.
		c := New()
		d := all(b)
		for i := len(d.Entries) - 1; i >= 0; i-- {
			c.Merge(Delta{Entries: d.Entries[i : i+1]})
		}
		requireEqual(t, "rebuilt", b, c)
		if b.Digest() != c.Digest() {
			t.Fatal("equal states, different digests")
		}
	})
}

func TestDiffKeys(t *testing.T) {
	mine := map[string]uint64{"a": 1, "b": 2, "c": 3}
	theirs := map[string]uint64{"b": 2, "c": 4, "d": 5}
	if got := fmt.Sprint(DiffKeys(mine, theirs)); got != "[c d]" {
		t.Errorf("DiffKeys = %s", got)
	}
	if got := fmt.Sprint(DiffKeys(theirs, mine)); got != "[a c]" {
		t.Errorf("DiffKeys = %s", got)
	}
	var x, y Digest
	y[5], y[63] = 1, 1
	if got := fmt.Sprint(DiffDigest(x, y)); got != "[5 63]" {
		t.Errorf("DiffDigest = %s", got)
	}
	s := New()
	s.Put("Namespace//a", nil, Stamp{Wall: 1})
	s.Delete("Namespace//b", Stamp{Wall: 1})
	all := s.BucketKeys([]int{-1, 64, bucketOf("Namespace//a"), bucketOf("Namespace//b")})
	if len(all) != 2 {
		t.Errorf("BucketKeys = %v, want both keys, tombstone included", all)
	}
	if d := s.DeltaFor([]string{"Namespace//b", "Namespace//b", "Namespace//zz"}); d.Len() != 1 {
		t.Errorf("DeltaFor = %+v", d)
	}
}
