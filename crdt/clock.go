package crdt

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// MaxDrift is how far ahead of the local wall clock a remote stamp may be
// for Clock.Observe to advance the clock to it.
const MaxDrift = time.Minute

// MaxNodeLen is the longest node name a Stamp may carry (a DNS name).
const MaxNodeLen = 253

// ErrClockDrift is returned (wrapped) by Clock.Observe for a stamp too far
// in the future.
var ErrClockDrift = errors.New("remote clock too far ahead")

// Stamp is a hybrid logical clock timestamp: the version of a register.
// Stamps are totally ordered by Wall, then Logical, then Node.
type Stamp struct {
	// Wall is a wall-clock time in nanoseconds since the Unix epoch.
	Wall int64 `json:"wall"`
	// Logical orders stamps issued within the same Wall.
	Logical uint32 `json:"logical"`
	// Node is the peer that issued the stamp.
	Node string `json:"node"`
}

// compare returns -1, 0 or +1 as a is less than, equal to or greater than b.
func (a Stamp) compare(b Stamp) int {
	switch {
	case a.Wall != b.Wall:
		if a.Wall < b.Wall {
			return -1
		}
		return 1
	case a.Logical != b.Logical:
		if a.Logical < b.Logical {
			return -1
		}
		return 1
	case a.Node < b.Node:
		return -1
	case a.Node > b.Node:
		return 1
	}
	return 0
}

// Less reports whether a orders before b: by Wall, then Logical, then Node.
func (a Stamp) Less(b Stamp) bool { return a.compare(b) < 0 }

// IsZero reports whether s is the zero Stamp.
func (s Stamp) IsZero() bool { return s == Stamp{} }

// String returns "wall.logical@node", e.g. "1717171717000000000.3@peer-a".
func (s Stamp) String() string {
	return strconv.FormatInt(s.Wall, 10) + "." + strconv.FormatUint(uint64(s.Logical), 10) + "@" + s.Node
}

// Clock is a hybrid logical clock issuing stamps for one node. It is safe
// for concurrent use.
type Clock struct {
	node string
	now  func() time.Time

	mu      sync.Mutex
	wall    int64
	logical uint32
}

// NewClock returns a clock issuing stamps for node, reading wall time from
// now (time.Now if nil).
func NewClock(node string, now func() time.Time) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{node: node, now: now}
}

// Now returns a new stamp, strictly greater than every stamp this clock has
// issued or observed. It follows the wall clock when that is ahead, and
// counts logically when the wall clock stands still or goes back.
func (c *Clock) Now() Stamp {
	pt := c.now().UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case pt > c.wall:
		c.wall, c.logical = pt, 0
	case c.logical == math.MaxUint32:
		c.wall, c.logical = c.wall+1, 0
	default:
		c.logical++
	}
	return Stamp{Wall: c.wall, Logical: c.logical, Node: c.node}
}

// Observe advances the clock past s, a stamp received from another peer, so
// that later stamps order after it. A stamp more than MaxDrift ahead of the
// local wall clock is not observed: Observe leaves the clock alone and
// returns an error wrapping ErrClockDrift, for the caller to count and
// report (the register it came with still merges by its stamp).
func (c *Clock) Observe(s Stamp) error {
	pt := c.now().UnixNano()
	if s.Wall > pt && s.Wall-pt > int64(MaxDrift) {
		return fmt.Errorf("crdt: stamp from %q is %v ahead of the local clock (more than %v): %w",
			s.Node, time.Duration(s.Wall-pt).Round(time.Millisecond), MaxDrift, ErrClockDrift)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Wall > c.wall || (s.Wall == c.wall && s.Logical > c.logical) {
		c.wall, c.logical = s.Wall, s.Logical
	}
	return nil
}
