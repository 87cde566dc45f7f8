package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/runtime"
)

func TestLoadVersionOrder(t *testing.T) {
	c := crdt.NewClock("b", nil)
	first, second := c.Now().String(), c.Now().String()
	if parseVersion(first).compare(parseVersion(second)) >= 0 {
		t.Fatalf("%s does not order before %s", first, second)
	}
	e := func(loaded, digest string) imageEntry { return imageEntry{Name: "x", Loaded: loaded, Digest: digest} }
	for _, c := range []struct {
		a, b imageEntry
		want bool
	}{
		{e(second, "sha256:1"), e(first, "sha256:2"), true},
		{e(first, "sha256:2"), e(second, "sha256:1"), false},
		{e("10.0@a", "sha256:1"), e("9.5@a", "sha256:2"), true},
		{e("10.1@a", "sha256:1"), e("10.0@b", "sha256:2"), true},
		{e("10.0@b", "sha256:1"), e("10.0@a", "sha256:2"), true},
		{e("10.0@a", "sha256:2"), e("10.0@a", "sha256:1"), true}, // same version: larger digest
		{e("", "sha256:9"), e("1.0@a", "sha256:1"), false},       // no version: oldest
		{e("junk", "sha256:9"), e("1.0@a", "sha256:1"), false},   // malformed: oldest
		{e("-5.0@a", "sha256:9"), e("1.0@a", "sha256:1"), false},
	} {
		if got := newer(c.a, c.b); got != c.want {
			t.Errorf("newer(%+v, %+v) = %v, want %v", c.a, c.b, got, c.want)
		}
		if c.a.Digest != c.b.Digest && newer(c.a, c.b) == newer(c.b, c.a) {
			t.Errorf("newer is not antisymmetric for %+v, %+v", c.a, c.b)
		}
	}
}

// The load version comes from other peers (their inventory, a manifest):
// parsing never panics, and a version round-trips through its string.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"", "1.0@a", "1717171717000000000.3@peer-a", "x.y@z", "1.2.3@@", "@", ".@", "9223372036854775808.0@a", "1.4294967296@a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := parseVersion(s)
		if v == (version{}) {
			return
		}
		back := fmt.Sprintf("%d.%d@%s", v.wall, v.logical, v.node)
		if parseVersion(back) != v || v.wall < 0 || v.logical > 1<<32-1 {
			t.Fatalf("%q parsed as %+v, which prints as %q", s, v, back)
		}
	})
}

func TestGCCandidates(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	imgs := []runtime.Image{
		{Name: "docker.io/example/used:1", Digest: "sha256:u"},
		{Name: "docker.io/example/old:1", Digest: "sha256:o"},
		{Name: "docker.io/example/old-only-here:1", Digest: "sha256:h"},
		{Name: "docker.io/example/recent:1", Digest: "sha256:r"},
		{Name: "docker.io/example/unseen:1", Digest: "sha256:n"},
		{Name: "sha256:abc", Digest: "sha256:abc"},
	}
	inUse := map[string]string{"docker.io/example/used:1": "default/web-1"}
	lastUsed := map[string]time.Time{
		"docker.io/example/used:1":          now.Add(-48 * time.Hour), // in use now: never a candidate
		"docker.io/example/old:1":           now.Add(-25 * time.Hour),
		"docker.io/example/old-only-here:1": now.Add(-25 * time.Hour),
		"docker.io/example/recent:1":        now.Add(-23 * time.Hour),
	}
	elsewhere := func(img runtime.Image) bool { return img.Name != "docker.io/example/old-only-here:1" }
	for _, c := range []struct {
		name  string
		after time.Duration
		all   bool
		want  []string
	}{
		{"automatic", 24 * time.Hour, false, []string{"docker.io/example/old:1"}},
		{"prune", 0, false, []string{"docker.io/example/old:1", "docker.io/example/recent:1", "docker.io/example/unseen:1"}},
		{"prune --all", 0, true, []string{"docker.io/example/old-only-here:1", "docker.io/example/old:1", "docker.io/example/recent:1", "docker.io/example/unseen:1"}},
	} {
		got := gcCandidates(imgs, inUse, lastUsed, elsewhere, now, c.after, c.all)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWithLimitFlag(t *testing.T) {
	size := &runtime.LimitError{Image: "image docker.io/example/x:1", What: "unpacked size", Limit: 100}
	err := withLimitFlag(fmt.Errorf("import: %w", size))
	if !errors.Is(err, runtime.ErrImageTooLarge) || !strings.HasSuffix(err.Error(), "image docker.io/example/x:1: unpacked size exceeds the limit of 100 bytes (--max-image-size)") {
		t.Fatalf("%v", err)
	}
	ratio := &runtime.LimitError{Image: "image x", What: "expansion", Limit: 100, Layer: "sha256:ab", Compressed: 10 << 20, Unpacked: 1000 << 20}
	if err := withLimitFlag(ratio); err.Error() != "image x: layer sha256:ab expands more than 100 times its compressed size (10485760 bytes compressed, more than 1048576000 bytes unpacked): over the limit of 100 times (--max-image-expansion)" {
		t.Fatalf("%v", err)
	}
	files := &runtime.LimitError{Image: "image docker.io/example/x:1", What: "number of files", Limit: 5}
	if err := withLimitFlag(files); err.Error() != "image docker.io/example/x:1: number of files exceeds the limit of 5" {
		t.Fatalf("%v", err)
	}
}

func TestRefusalsRemembered(t *testing.T) {
	s := newImageSharing(imageDeps{}, nil)
	limit := withLimitFlag(&runtime.LimitError{Image: "image x", What: "unpacked size", Limit: 1})
	s.refuse("sha256:a", errors.New("connection reset")) // not a limit: fetched again
	s.refuse("sha256:b", limit)
	s.refuse("pull r/x:1", limit)
	if s.refused("sha256:a") != nil || !errors.Is(s.refused("sha256:b"), runtime.ErrImageTooLarge) || s.refused("pull r/x:1") == nil {
		t.Fatalf("refusals %v", s.refusals)
	}
	s.mu.Lock()
	s.refusals["pull r/x:1"] = refusal{err: limit, at: time.Now().Add(-retryRefused - time.Second)}
	s.refusals["sha256:b"] = refusal{err: limit, at: time.Now().Add(-retryRefused - time.Second)}
	s.mu.Unlock()
	if s.refused("pull r/x:1") != nil || s.refused("sha256:b") == nil {
		t.Fatal("a pull is tried again after retryRefused; the same content never")
	}
}
