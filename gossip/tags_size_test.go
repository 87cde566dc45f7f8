package gossip

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckTagsSize(t *testing.T) {
	if err := checkTagsSize(map[string]string{"api": "10.0.0.1:7070", "role": "peer"}); err != nil {
		t.Fatalf("small tags: %v", err)
	}
	err := checkTagsSize(map[string]string{"labels": strings.Repeat("x", 600)})
	if !errors.Is(err, ErrTagsTooLarge) {
		t.Fatalf("600 bytes of tags: %v, want ErrTagsTooLarge", err)
	}
	// The boundary as serf counts it: a magic byte and msgpack (fixmap
	// header, fixstr key "k", str16 value).
	for _, n := range []int{500, 504, 505, 506} {
		err := checkTagsSize(map[string]string{"k": strings.Repeat("v", n)})
		size := 1 + 1 + 2 + 3 + n
		if (err != nil) != (size > 512) {
			t.Errorf("value of %d bytes (%d encoded): %v", n, size, err)
		}
	}
}
