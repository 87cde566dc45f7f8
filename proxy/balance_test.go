package proxy

import (
	"testing"
	"time"
)

func testPool(n int) (*pool, []Endpoint) {
	pl := newPool(poolKey{"ns", "svc", 80, TCP})
	var eps []Endpoint
	for i := range n {
		eps = append(eps, Endpoint{Node: "n", IP: addr(100 + i), Port: 80, Local: true})
	}
	pl.setEndpoints(eps)
	return pl, eps
}

func TestPickLeastConnections(t *testing.T) {
	pl, eps := testPool(3)
	now := time.Now()

	// Equal loads: round-robin.
	count := map[Endpoint]int{}
	for range 30 {
		b := pl.pick(nil, now)
		count[b.ep]++
		b.release()
	}
	for _, ep := range eps {
		if count[ep] != 10 {
			t.Fatalf("equal loads: picks %v, want 10 each", count)
		}
	}

	// Held connections: each pick goes to the least loaded.
	var held []*backend
	for range 6 {
		held = append(held, pl.pick(nil, now))
	}
	for _, b := range *pl.backends.Load() {
		if n := b.active.Load(); n != 2 {
			t.Fatalf("6 held over 3 endpoints: %v has %d", b.ep, n)
		}
	}
	held[0].release()
	if b := pl.pick(nil, now); b != held[0] {
		t.Fatalf("after a release: picked %v, want %v", b.ep, held[0].ep)
	}

	// Tried endpoints are skipped; nil when all are tried.
	tried := []*backend{}
	for range 3 {
		b := pl.pick(tried, now)
		if b == nil || contains(tried, b) {
			t.Fatalf("pick with %d tried: %v", len(tried), b)
		}
		tried = append(tried, b)
	}
	if b := pl.pick(tried, now); b != nil {
		t.Fatalf("all tried: picked %v", b.ep)
	}
}

func TestPickAvoidsRecentFailures(t *testing.T) {
	pl, _ := testPool(2)
	now := time.Now()
	bs := *pl.backends.Load()
	bs[0].failedAt.Store(now.UnixNano())
	bs[1].active.Store(5) // even loaded, the healthy one wins
	for range 4 {
		if b := pl.pick(nil, now); b != bs[1] {
			t.Fatalf("picked the endpoint that just failed")
		}
	}
	// All failed recently: still tried.
	bs[1].failedAt.Store(now.UnixNano())
	if b := pl.pick(nil, now); b == nil {
		t.Fatal("all cooling: nothing picked")
	}
	// After the cool-down, back in rotation.
	if b := pl.pick(nil, now.Add(coolDown+time.Second)); b != bs[0] {
		t.Fatalf("after cool-down: picked %v, want the least loaded", b.ep)
	}
}

func TestSetEndpointsKeepsCounts(t *testing.T) {
	pl, eps := testPool(3)
	b := pl.pick(nil, time.Now())
	before := pl.backends.Load()
	pl.setEndpoints(eps) // same list: no swap
	if pl.backends.Load() != before {
		t.Fatal("unchanged endpoints swapped the set")
	}
	// Reordered, one removed, one added, one duplicated.
	extra := Endpoint{Node: "m", IP: addr(120), Port: 80}
	pl.setEndpoints([]Endpoint{extra, eps[2], eps[1], eps[0], eps[0]})
	pl.setEndpoints([]Endpoint{extra, eps[2], eps[1], eps[0]})
	got := *pl.backends.Load()
	if len(got) != 4 {
		t.Fatalf("%d backends, want 4", len(got))
	}
	for _, nb := range got {
		if nb.ep == b.ep && nb != b {
			t.Fatal("kept endpoint lost its backend (and its count)")
		}
	}
	pl.setEndpoints([]Endpoint{extra})
	b.release() // a removed backend is still released by its connection
	if n := b.active.Load(); n != 0 {
		t.Fatalf("removed backend count %d", n)
	}
}
