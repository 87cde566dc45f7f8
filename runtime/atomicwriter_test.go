package runtime

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	files := map[string]VolumeFile{"a": {Data: []byte("1"), Mode: 0o644}, "sub/b": {Data: []byte("2"), Mode: 0o400}}
	changed, err := WriteAtomic(dir, files, time.Now())
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	for p, want := range map[string]string{"a": "1", "sub/b": "2"} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", p, b, err)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dir, "a")); l != "..data/a" {
		t.Fatalf("a links to %q", l)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sub/b")); fi.Mode().Perm() != 0o400 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if changed, err := WriteAtomic(dir, files, time.Now()); err != nil || changed {
		t.Fatalf("same files rewritten: %v %v", changed, err)
	}
	// A key goes away, another changes: the old link is removed; the
	// replaced version stays for readers that resolved ..data to it.
	first, _ := os.Readlink(filepath.Join(dir, "..data"))
	changed, err = WriteAtomic(dir, map[string]VolumeFile{"a": {Data: []byte("3"), Mode: 0o644}}, time.Now())
	if err != nil || !changed {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "sub")); !os.IsNotExist(err) {
		t.Fatalf("sub still there: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 4 { // ..data, ..<time> twice, a
		t.Fatalf("entries %v", ents)
	}
	// A write a minute later removes the versions replaced before the
	// last one.
	if _, err := WriteAtomic(dir, map[string]VolumeFile{"a": {Data: []byte("4"), Mode: 0o644}}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, first)); !os.IsNotExist(err) {
		t.Fatalf("the first version %s is still there: %v", first, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		t.Fatalf("entries %v", ents)
	}
	if _, err := WriteAtomic(dir, map[string]VolumeFile{"../x": {}}, time.Now()); err == nil {
		t.Fatal("a path out of the volume was written")
	}
}

// A reader never sees a missing, empty or mixed file while the writer
// swaps versions.
func TestWriteAtomicReadersSeeWholeVersions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vol")
	version := func(i int) map[string]VolumeFile {
		v := []byte{byte('a' + i%26)}
		return map[string]VolumeFile{"k": {Data: append(v, v...), Mode: 0o644}}
	}
	if _, err := WriteAtomic(dir, version(0), time.Now()); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var bad atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(filepath.Join(dir, "k"))
				if err != nil || len(b) != 2 || b[0] != b[1] {
					bad.Store(string(b) + " " + errString(err))
					return
				}
			}
		}()
	}
	for i := 1; i < 300; i++ {
		if _, err := WriteAtomic(dir, version(i), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatalf("a reader saw %v", v)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
