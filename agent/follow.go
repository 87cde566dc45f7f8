package agent

import (
	"context"
	"io"
	"os"
	"time"
)

// followPoll is how often a followed log is read for what was appended.
const followPoll = 200 * time.Millisecond

// followFile copies to w what is appended to the file at path, as logs -f
// and attach follow a container's log: from f's offset (f may be nil, the
// file not written yet: it is then read from its start once it appears),
// every followPoll, after calling flush (nil: none), until ctx ends, w
// fails, or ended (nil: never) says the writer is gone, what it wrote last
// sent first. It closes the file it opened; f stays the caller's.
func followFile(ctx context.Context, w io.Writer, path string, f *os.File, flush func(), ended func() bool) {
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		if f == nil {
			if opened, err := os.Open(path); err == nil {
				defer opened.Close()
				f = opened
			}
		}
		if f != nil {
			if _, err := io.Copy(w, f); err != nil {
				return // the client went away
			}
		}
		if flush != nil {
			flush()
		}
		if ended != nil && ended() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
