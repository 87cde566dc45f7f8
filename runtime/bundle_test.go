package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestRemoveStaleBundle: the bundle a dead shim left is removed (so that a
// new task of the container can start), one of a live shim or of another
// container is not.
func TestRemoveStaleBundle(t *testing.T) {
	c := &Containerd{namespace: "chorus-k5"}
	bundle := func(id string) (string, error) {
		dir := filepath.Join(t.TempDir(), "io.containerd.runtime.v2.task", "chorus-k5", id)
		if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir, errors.New("failed to create shim task: failed to start shim: mkdir " + dir + ": file exists")
	}
	dir, err := bundle("default_a-1_web")
	if !c.removeStaleBundle("default_a-1_web", err) {
		t.Fatal("a dead shim's bundle was not removed")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there: %v", dir, err)
	}
	// A live shim (this process stands for it).
	dir, err = bundle("default_a-2_web")
	if err := os.WriteFile(filepath.Join(dir, "shim.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if c.removeStaleBundle("default_a-2_web", err) {
		t.Fatal("the bundle of a live shim was removed")
	}
	// Another container's, another namespace's, or another error.
	_, err = bundle("default_a-3_web")
	if c.removeStaleBundle("default_a-4_web", err) {
		t.Fatal("another container's bundle was removed")
	}
	if (&Containerd{namespace: "chorus-k1"}).removeStaleBundle("default_a-3_web", err) {
		t.Fatal("another namespace's bundle was removed")
	}
	if c.removeStaleBundle("default_a-3_web", errors.New("no space left on device")) {
		t.Fatal("removed on an unrelated error")
	}
}
