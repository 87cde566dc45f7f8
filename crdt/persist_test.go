package crdt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.crdt")
	s, err := Load(path)
	check(t, err)
	if s.Len() != 0 || len(s.objs) != 0 {
		t.Fatal("missing file is not an empty state")
	}
	rapid.Check(t, func(rt *rapid.T) {
		s := genState(rt, "s")
		if err := s.Save(path); err != nil {
			rt.Fatal(err)
		}
		got, err := Load(path)
		if err != nil {
			rt.Fatal(err)
		}
		checkInvariants(rt, got)
		requireEqual(rt, "loaded", got, s)
	})
	entries, err := os.ReadDir(filepath.Dir(path))
	check(t, err)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
}

func TestLoadCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.crdt")
	s := New()
	s.Put("Deployment/default/web", deployment(2, "web:1"), Stamp{Wall: 1, Node: "a"})
	s.Delete("Namespace//x", Stamp{Wall: 2, Node: "a"})
	check(t, s.Save(path))
	good, err := os.ReadFile(path)
	check(t, err)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	for name, b := range map[string][]byte{
		"empty":     {},
		"truncated": good[:len(good)-5],
		"flipped":   flipped,
		"foreign":   []byte(`{"version": 3, "objects": []}`),
		"magic":     fileMagic,
	} {
		check(t, os.WriteFile(path, b, 0o600))
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Load = %v, want an ErrMalformed error naming the file", name, err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load(directory) = %v", err)
	}
}
