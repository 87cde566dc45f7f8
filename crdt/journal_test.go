package crdt

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"
)

// newJournal opens a new journal in dir for one rapid case; it is removed
// when the case ends.
func newJournal(t *rapid.T, dir string) (string, *Journal, *State) {
	path := filepath.Join(dir, fmt.Sprintf("s%d", rapid.Int().Draw(t, "file")))
	t.Cleanup(func() { os.Remove(path); os.Remove(path + LogSuffix) })
	j, st, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, j, st
}

// Whatever deltas are appended, with compactions between them, a journal
// opened again holds the same state as the one written.
func TestJournalReopens(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		path, j, st := newJournal(t, dir)
		for i := range rapid.IntRange(0, 10).Draw(t, "n") {
			d := st.Merge(genDelta(t, fmt.Sprintf("d%d", i)))
			if err := j.Append(d, rapid.Bool().Draw(t, fmt.Sprintf("sync%d", i))); err != nil {
				t.Fatal(err)
			}
			if rapid.IntRange(0, 4).Draw(t, fmt.Sprintf("compact%d", i)) == 0 {
				if err := j.Compact(st); err != nil {
					t.Fatal(err)
				}
				if j.LogSize() != 0 {
					t.Fatalf("log of %d bytes after Compact", j.LogSize())
				}
			}
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j2, again, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		defer j2.Close()
		if j2.Dropped() != 0 {
			t.Fatalf("dropped %d bytes of an intact log", j2.Dropped())
		}
		checkInvariants(t, again)
		requireEqual(t, "reopened", again, st)
	})
}

// A log cut anywhere or with any byte damaged opens as the deltas before
// the damaged record: nothing after it, no error, and the rest dropped;
// appends after that follow the good records.
func TestJournalDamagedLog(t *testing.T) {
	dir := t.TempDir()
	rapid.Check(t, func(t *rapid.T) {
		path, j, st := newJournal(t, dir)
		var deltas []Delta
		var ends []int64 // log size after each record
		for i := range rapid.IntRange(1, 6).Draw(t, "n") {
			d := st.Merge(genDelta(t, fmt.Sprintf("d%d", i)))
			if d.Len() == 0 {
				continue
			}
			if err := j.Append(d, false); err != nil {
				t.Fatal(err)
			}
			deltas = append(deltas, d)
			ends = append(ends, j.LogSize())
		}
		j.Close()
		b, err := os.ReadFile(path + LogSuffix)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			return
		}
		at := rapid.IntRange(0, len(b)-1).Draw(t, "at")
		if rapid.Bool().Draw(t, "cut") {
			b = b[:at]
		} else {
			b[at] ^= byte(rapid.IntRange(1, 255).Draw(t, "flip"))
		}
		if err := os.WriteFile(path+LogSuffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
		j2, got, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		// The records wholly before the damage survive.
		want := New()
		kept := int64(0)
		for i, end := range ends {
			if end > int64(at) {
				break
			}
			want.Merge(deltas[i])
			kept = end
		}
		requireEqual(t, "damaged log", got, want)
		if j2.LogSize() != kept || j2.Dropped() != int64(len(b))-kept {
			t.Fatalf("log size %d, dropped %d; want %d and %d", j2.LogSize(), j2.Dropped(), kept, int64(len(b))-kept)
		}
		d := got.Merge(genDelta(t, "after"))
		if err := j2.Append(d, true); err != nil {
			t.Fatal(err)
		}
		j2.Close()
		j3, again, err := OpenJournal(path)
		if err != nil {
			t.Fatal(err)
		}
		j3.Close()
		if j3.Dropped() != 0 {
			t.Fatalf("an append after the cut was dropped")
		}
		requireEqual(t, "append after the cut", again, got)
	})
}

// CompactDue waits for the log to outgrow both the snapshot and 1 MiB.
func TestJournalCompactDue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	j, st, err := OpenJournal(path)
	check(t, err)
	defer j.Close()
	for i := 0; !j.CompactDue(); i++ {
		if i > 100000 {
			t.Fatalf("never due; log %d bytes", j.LogSize())
		}
		check(t, j.Append(st.Put(fmt.Sprintf("Deployment/default/web-%d", i), deployment(i, "web:1"), Stamp{Wall: int64(i + 1), Node: "a"}), false))
	}
	if j.LogSize() <= minCompact {
		t.Fatalf("due at %d bytes", j.LogSize())
	}
	check(t, j.Compact(st))
	if j.CompactDue() {
		t.Fatal("due right after Compact")
	}
}

func FuzzJournalLog(f *testing.F) {
	s := New()
	d := s.Put("Deployment/default/web", deployment(2, "web:1"), Stamp{Wall: 1, Node: "a"})
	path := filepath.Join(f.TempDir(), "seed")
	j, _, err := OpenJournal(path)
	if err != nil {
		f.Fatal(err)
	}
	if err := j.Append(d, false); err != nil {
		f.Fatal(err)
	}
	j.Close()
	seed, _ := os.ReadFile(path + LogSuffix)
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		st := New()
		n := replayLog(b, st)
		if n < 0 || n > int64(len(b)) {
			t.Fatalf("good prefix %d of %d bytes", n, len(b))
		}
		checkInvariants(t, st)
		// The good prefix alone replays to the same state.
		again := New()
		if m := replayLog(b[:n], again); m != n {
			t.Fatalf("prefix replays %d of %d bytes", m, n)
		}
		requireEqual(t, "prefix", again, st)
	})
}
