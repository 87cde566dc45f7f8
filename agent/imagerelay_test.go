package agent

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestRelayBookChains(t *testing.T) {
	var r relayBook
	now := time.Unix(1000, 0)
	steps := []struct{ from, want string }{
		{"a", ""},  // the first gets it here
		{"b", "a"}, // then each is sent to the one before
		{"c", "b"},
		{"b", ""}, // a retry is served here
		{"d", "c"},
	}
	for _, s := range steps {
		if got := r.route("sha256:x", 0, s.from, now); got != s.want {
			t.Fatalf("%s asks: sent to %q, want %q", s.from, got, s.want)
		}
	}
	if got := r.route("sha256:x", blobChunk, "d", now); got != "" {
		t.Fatalf("another chunk has its own chain: %q", got)
	}
	if got := r.route("sha256:x", 0, "e", now.Add(relayForget+time.Second)); got != "" {
		t.Fatalf("a chain unused for %v is forgotten: sent to %q", relayForget, got)
	}
}

// Chains never loop: whoever a peer is sent to got the chunk (or was sent
// for it) before it, so following redirects always ends at the holder.
func TestRelayBookNoLoops(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var r relayBook
		order := map[string]int{} // when each peer first asked
		now := time.Unix(0, 0)
		for i := range rapid.IntRange(1, 40).Draw(t, "asks") {
			from := rapid.SampledFrom([]string{"a", "b", "c", "d", "e"}).Draw(t, "from")
			to := r.route("sha256:x", 0, from, now)
			if _, seen := order[from]; !seen {
				order[from] = i
			}
			if to == "" {
				continue
			}
			if to == from {
				t.Fatalf("%s sent to itself", from)
			}
			if order[to] >= order[from] {
				t.Fatalf("%s (first asked at %d) sent to %s (first asked at %d)", from, order[from], to, order[to])
			}
		}
	})
}

func TestPartialBlobsServeWrittenChunks(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "blob")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(2*blobChunk + 10)
	var p partialBlobs
	b, done := p.add("sha256:y", f, size)
	ctx := context.Background()
	if _, err := p.read(ctx, "sha256:z", 0, blobChunk); !errors.Is(err, errNotHeld) {
		t.Fatalf("a blob not being fetched: %v", err)
	}
	if _, err := p.read(ctx, "sha256:y", 1, blobChunk); !errors.Is(err, errMalformed) {
		t.Fatalf("an offset off the chunks: %v", err)
	}
	got := make(chan []byte, 1)
	go func() {
		data, err := p.read(ctx, "sha256:y", 2*blobChunk, 10)
		if err != nil {
			t.Error(err)
		}
		got <- data
	}()
	select {
	case <-got:
		t.Fatal("a chunk not yet written was served")
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := f.WriteAt([]byte("0123456789"), 2*blobChunk); err != nil {
		t.Fatal(err)
	}
	b.written(2)
	if data := <-got; string(data) != "0123456789" {
		t.Fatalf("served %q", data)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.read(ctx2, "sha256:y", 0, blobChunk); err == nil {
		t.Fatal("a wait outlived its request")
	}
	done()
	if _, err := p.read(ctx, "sha256:y", 2*blobChunk, 10); !errors.Is(err, errNotHeld) {
		t.Fatalf("after the fetch: %v", err)
	}
}

func TestChunkRequestRoundTrip(t *testing.T) {
	off, length, digest, err := parseChunkRequest(chunkRequest(msgChunk, 3*blobChunk, 77, "sha256:abc")[1:])
	if err != nil || off != 3*blobChunk || length != 77 || digest != "sha256:abc" {
		t.Fatalf("%d %d %q %v", off, length, digest, err)
	}
	if _, _, _, err := parseChunkRequest(chunkRequest(msgChunk, 0, blobChunk+1, "d")[1:]); !errors.Is(err, errMalformed) {
		t.Fatalf("a chunk over the size: %v", err)
	}
}
