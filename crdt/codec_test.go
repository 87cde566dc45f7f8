package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func sampleDelta() Delta {
	s := New()
	s.Put("Deployment/default/web", deployment(3, "web:1"), Stamp{Wall: 1_700_000_000_000_000_000, Logical: 2, Node: "peer-a"})
	s.Delete("Namespace//old", Stamp{Wall: -5, Logical: 1<<32 - 1, Node: ""})
	return all(s)
}

func entry(key, field, value string, node string) Entry {
	return Entry{Key: key, Field: field, Reg: Register{Value: raw(value), Stamp: Stamp{Wall: 1, Node: node}}}
}

func mustEncodeDelta(t testing.TB, d Delta) []byte {
	b, err := EncodeDelta(d)
	check(t, err)
	return b
}

func sameDelta(a, b Delta) bool {
	if len(a.Entries) != len(b.Entries) {
		return false
	}
	for i := range a.Entries {
		x, y := a.Entries[i], b.Entries[i]
		if x.Key != y.Key || x.Field != y.Field || x.Reg.Stamp != y.Reg.Stamp || !bytes.Equal(x.Reg.Value, y.Reg.Value) {
			return false
		}
	}
	return true
}

func TestDeltaRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := genDelta(t, "d")
		b, err := EncodeDelta(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeDelta(b)
		if err != nil {
			t.Fatal(err)
		}
		if !sameDelta(got, d) {
			t.Fatalf("round trip: %+v, want %+v", got, d)
		}
	})
	d := sampleDelta()
	got, err := DecodeDelta(mustEncodeDelta(t, d))
	check(t, err)
	if !sameDelta(got, d) {
		t.Fatalf("round trip: %+v, want %+v", got, d)
	}
}

func TestDecodeDeltaRejects(t *testing.T) {
	good := mustEncodeDelta(t, Delta{Entries: []Entry{entry("Namespace//a", "spec.x", `{"a":1}`, "n")}})
	// Encoded entries that EncodeDelta refuses to make, assembled by hand.
	handmade := func(e Entry) []byte {
		b := binary.AppendUvarint([]byte{wireVersion}, 1)
		b = appendString(b, e.Key)
		b = appendString(b, e.Field)
		b = binary.AppendVarint(b, e.Reg.Stamp.Wall)
		b = binary.AppendUvarint(b, uint64(e.Reg.Stamp.Logical))
		b = appendString(b, e.Reg.Stamp.Node)
		return appendString(b, string(e.Reg.Value))
	}
	if _, err := DecodeDelta(handmade(entry("Namespace//a", "spec.x", `{"a":1}`, "n"))); err != nil {
		t.Fatalf("handmade encoding rejected: %v", err)
	}
	bigLogical := binary.AppendUvarint([]byte{wireVersion}, 1)
	bigLogical = appendString(appendString(bigLogical, "k"), "f")
	bigLogical = binary.AppendVarint(bigLogical, 1)
	bigLogical = binary.AppendUvarint(bigLogical, 1<<32)
	bigLogical = appendString(appendString(bigLogical, "n"), "1")

	cases := map[string][]byte{
		"empty":           nil,
		"wrong version":   append([]byte{2}, good[1:]...),
		"truncated":       good[:len(good)-1],
		"trailing":        append(append([]byte(nil), good...), 0),
		"oversized":       append(append([]byte(nil), good...), make([]byte, MaxMessageBytes)...),
		"too many":        binary.AppendUvarint([]byte{wireVersion}, MaxEntries+1),
		"count too large": binary.AppendUvarint([]byte{wireVersion}, 1000),
		"varint overflow": append([]byte{wireVersion}, bytes.Repeat([]byte{0xff}, 11)...),
		"logical too big": bigLogical,
		"empty key":       handmade(entry("", "spec.x", `1`, "n")),
		"invalid JSON":    handmade(entry("k", "spec.x", `{"a":`, "n")),
		"empty value":     handmade(entry("k", "spec.x", ``, "n")),
		"bad existence":   handmade(entry("k", "", `1`, "n")),
		"long node":       handmade(entry("k", "spec.x", `1`, strings.Repeat("n", MaxNodeLen+1))),
	}
	for name, b := range cases {
		if d, err := DecodeDelta(b); err == nil || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeDelta = %+v, %v; want an ErrMalformed error", name, d, err)
		}
	}
	// A node name of the maximum length is fine.
	if _, err := DecodeDelta(handmade(entry("k", "spec.x", `1`, strings.Repeat("n", MaxNodeLen)))); err != nil {
		t.Errorf("node of %d bytes: %v", MaxNodeLen, err)
	}
	// EncodeDelta refuses what DecodeDelta would reject.
	for name, e := range map[string]Entry{
		"empty key":     entry("", "spec.x", `1`, "n"),
		"invalid JSON":  entry("k", "spec.x", `{`, "n"),
		"bad existence": entry("k", "", `null`, "n"),
		"long node":     entry("k", "spec.x", `1`, strings.Repeat("n", MaxNodeLen+1)),
	} {
		if _, err := EncodeDelta(Delta{Entries: []Entry{e}}); err == nil {
			t.Errorf("EncodeDelta accepted %s", name)
		}
	}
	if _, err := EncodeDelta(Delta{Entries: make([]Entry, MaxEntries+1)}); err == nil {
		t.Error("EncodeDelta accepted too many entries")
	}
	big := entry("k", "spec.x", `"`+strings.Repeat("x", MaxMessageBytes)+`"`, "n")
	if _, err := EncodeDelta(Delta{Entries: []Entry{big}}); err == nil {
		t.Error("EncodeDelta accepted an oversized delta")
	}
}

func TestDigestCodec(t *testing.T) {
	var d Digest
	for i := range d {
		d[i] = uint64(i) * 0x9e3779b97f4a7c15
	}
	b, err := EncodeDigest(d)
	check(t, err)
	if len(b) != 1+64*8 {
		t.Fatalf("digest is %d bytes", len(b))
	}
	got, err := DecodeDigest(b)
	if err != nil || got != d {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{0}, b[1:]...),
		"truncated":     b[:len(b)-1],
		"trailing":      append(append([]byte(nil), b...), 0),
	} {
		if _, err := DecodeDigest(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestKeyHashesCodec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := rapid.MapOf(rapid.StringN(1, 20, -1), rapid.Uint64()).Draw(t, "m")
		b, err := EncodeKeyHashes(m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeKeyHashes(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: %v, want %v", got, m)
		}
	})
	good, err := EncodeKeyHashes(map[string]uint64{"a": 1, "b": 2})
	check(t, err)
	kh := func(keys ...string) []byte {
		b := binary.AppendUvarint([]byte{wireVersion}, uint64(len(keys)))
		for _, k := range keys {
			b = binary.BigEndian.AppendUint64(appendString(b, k), 7)
		}
		return b
	}
	for name, b := range map[string][]byte{
		"empty":         nil,
		"wrong version": append([]byte{9}, good[1:]...),
		"truncated":     good[:len(good)-3],
		"trailing":      append(append([]byte(nil), good...), 1),
		"too many":      binary.AppendUvarint([]byte{wireVersion}, MaxEntries+1),
		"empty key":     kh(""),
		"duplicate":     kh("a", "a"),
		"unsorted":      kh("b", "a"),
		"oversized":     append(kh("a"), make([]byte, MaxMessageBytes)...),
	} {
		if m, err := DecodeKeyHashes(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeKeyHashes = %v, %v", name, m, err)
		}
	}
	if _, err := EncodeKeyHashes(map[string]uint64{"": 1}); err == nil {
		t.Error("EncodeKeyHashes accepted an empty key")
	}
}

func FuzzDecodeDelta(f *testing.F) {
	f.Add(mustEncodeDelta(f, sampleDelta()))
	f.Add(mustEncodeDelta(f, Delta{}))
	f.Add(mustEncodeDelta(f, Delta{Entries: []Entry{entry("k", "", "false", "n"), entry("k", "f", `"\u00e9"`, "")}}))
	f.Add([]byte{})
	f.Add([]byte{wireVersion})
	f.Add([]byte{wireVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 0})
	f.Add([]byte("garbage that is not a delta"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDelta(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b2, err := EncodeDelta(d)
		if err != nil {
			t.Fatalf("re-encoding a decoded delta: %v", err)
		}
		d2, err := DecodeDelta(b2)
		if err != nil || !sameDelta(d, d2) {
			t.Fatalf("round trip: %+v, %v; want %+v", d2, err, d)
		}
		// Whatever decodes merges, and the state it makes is consistent.
		s := New()
		s.Merge(d)
		checkInvariants(t, s)
	})
}

func FuzzDecodeDigest(f *testing.F) {
	var d Digest
	d[3], d[63] = 42, 1<<63
	b, _ := EncodeDigest(d)
	f.Add(b)
	b, _ = EncodeDigest(New().Digest())
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{wireVersion, 1, 2, 3})
	f.Add(bytes.Repeat([]byte{0xff}, 513))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDigest(b)
		if err != nil {
			return
		}
		b2, err := EncodeDigest(d)
		if err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("round trip: %x, %v", b2, err)
		}
	})
}

func FuzzDecodeKeyHashes(f *testing.F) {
	b, _ := EncodeKeyHashes(map[string]uint64{"Deployment/default/web": 1, "Namespace//x": 1 << 60})
	f.Add(b)
	b, _ = EncodeKeyHashes(nil)
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{wireVersion, 2, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{wireVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte("\x01garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeKeyHashes(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b2, err := EncodeKeyHashes(m)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		m2, err := DecodeKeyHashes(b2)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %v, %v; want %v", m2, err, m)
		}
	})
}
