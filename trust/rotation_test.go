package trust

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// simPeer is a peer of the simulated cluster: what it applied, and its
// view of the record (progress registers reach each peer late, in any
// order).
type simPeer struct {
	applied  Phase
	since    time.Time // when it applied it
	view     map[string]Phase
	resealed bool // its view of the Resealed mark
}

// sends reports whether a peer sends (gossip, certificate, sealing) under
// the new secret; accepts whether it accepts what is sent under new (or
// under old when new is false).
func sends(p Phase) (newKey bool) { return p >= PhaseUsing }
func accepts(p Phase, newKey bool) bool {
	if newKey {
		return p >= PhaseInstalled
	}
	return p < PhaseRetired
}

// TestDecideKeepsEveryPairTalking drives a cluster through a rotation, each
// step a random peer deciding on its own late view of the record, or a
// record reaching a peer. At every step any two peers share a key (what
// one sends the other accepts), a peer only retires once the Secrets were
// sealed anew and nobody seals under the old key any more, and once every
// record has reached every peer, the rotation completes.
func TestDecideKeepsEveryPairTalking(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 6).Draw(t, "peers")
		names := make([]string, n)
		peers := map[string]*simPeer{}
		for i := range names {
			names[i] = fmt.Sprintf("p%d", i)
			peers[names[i]] = &simPeer{view: map[string]Phase{}}
		}
		recorded := map[string]Phase{} // the registers, as written
		resealed, reseals := false, 0
		now := time.Unix(1000, 0)
		check := func(step string) {
			for _, a := range names {
				for _, b := range names {
					if k := sends(peers[a].applied); !accepts(peers[b].applied, k) {
						t.Fatalf("%s: %s (%v) sends what %s (%v) refuses", step, a, peers[a].applied, b, peers[b].applied)
					}
				}
				if peers[a].applied == PhaseRetired {
					if !resealed {
						t.Fatalf("%s: %s retired before the Secrets were sealed anew", step, a)
					}
					for _, b := range names {
						if peers[b].applied < PhaseUsing {
							t.Fatalf("%s: %s retired while %s (%v) still seals under the old key", step, a, b, peers[b].applied)
						}
					}
				}
			}
		}
		decide := func(name string) {
			p := peers[name]
			r := Rotation{ID: "new", From: "old", Progress: maps.Clone(p.view), Resealed: p.resealed}
			d := Decide(r, names, name, Local{Applied: p.applied, Since: p.since}, now)
			if d.Target < p.applied || d.Target < p.view[name] {
				t.Fatalf("%s: target %v below applied %v or recorded %v", name, d.Target, p.applied, p.view[name])
			}
			if d.Target > max(p.applied, p.view[name])+1 {
				t.Fatalf("%s: jumped from %v to %v", name, p.applied, d.Target)
			}
			if d.Reseal {
				if Resealer(names) != name {
					t.Fatalf("%s reseals, but %s is the resealer", name, Resealer(names))
				}
				resealed = true
				reseals++
				p.resealed = true
			}
			if d.Target != p.applied {
				if p.applied >= PhaseInstalled && now.Sub(p.since) < PhaseDwell {
					t.Fatalf("%s left %v after %v, less than PhaseDwell", name, p.applied, now.Sub(p.since))
				}
				p.since = now
			}
			p.applied = d.Target
			recorded[name] = d.Target
			p.view[name] = d.Target
		}
		for i := 0; i < 400; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1000).Draw(t, "ms")) * time.Millisecond)
			name := rapid.SampledFrom(names).Draw(t, "peer")
			if rapid.Bool().Draw(t, "deliver") {
				from := rapid.SampledFrom(names).Draw(t, "from")
				peers[name].view[from] = recorded[from]
				peers[name].resealed = peers[name].resealed || (resealed && rapid.Bool().Draw(t, "mark"))
			} else {
				decide(name)
			}
			check(fmt.Sprintf("step %d", i))
		}
		// Then everything is delivered and every peer decides in turn.
		for round := 0; round < 4*len(names)+4; round++ {
			now = now.Add(PhaseDwell)
			for _, name := range names {
				maps.Copy(peers[name].view, recorded)
				peers[name].resealed = resealed
				decide(name)
				check(fmt.Sprintf("round %d", round))
			}
		}
		for _, name := range names {
			if peers[name].applied != PhaseRetired {
				t.Fatalf("%s ended at %v (recorded %v)", name, peers[name].applied, recorded)
			}
		}
		st := StatusOf(Rotation{Progress: recorded, Resealed: true}, names, time.Unix(0, 0))
		if !st.Complete || st.Done != n || st.Phase != PhaseRetired {
			t.Fatalf("status %+v", st)
		}
	})
}

func TestDecideCases(t *testing.T) {
	alive := []string{"a", "b", "c"}
	for _, c := range []struct {
		name     string
		progress map[string]Phase
		resealed bool
		self     string
		applied  Phase
		want     Decision
	}{
		{"start installs at once", nil, false, "b", PhaseNone, Decision{Target: PhaseInstalled}},
		{"installed waits for the others", map[string]Phase{"b": PhaseInstalled, "c": PhaseInstalled}, false, "b", PhaseInstalled,
			Decision{Target: PhaseInstalled, WaitingFor: []string{"a"}}},
		{"all installed: use", map[string]Phase{"a": PhaseInstalled, "b": PhaseInstalled, "c": PhaseUsing}, false, "b", PhaseInstalled,
			Decision{Target: PhaseUsing}},
		{"a restart keeps what the record says", map[string]Phase{"a": PhaseInstalled, "b": PhaseInstalled}, false, "b", PhaseNone,
			Decision{Target: PhaseInstalled}},
		{"all using: the first reseals", map[string]Phase{"a": PhaseUsing, "b": PhaseUsing, "c": PhaseUsing}, false, "a", PhaseUsing,
			Decision{Target: PhaseUsing, Reseal: true}},
		{"all using: the others wait for it", map[string]Phase{"a": PhaseUsing, "b": PhaseUsing, "c": PhaseUsing}, false, "c", PhaseUsing,
			Decision{Target: PhaseUsing, WaitingFor: []string{"a"}}},
		{"resealed: retire", map[string]Phase{"a": PhaseUsing, "b": PhaseUsing, "c": PhaseUsing}, true, "c", PhaseUsing,
			Decision{Target: PhaseRetired}},
		{"retired stays", map[string]Phase{"c": PhaseRetired}, true, "c", PhaseRetired, Decision{Target: PhaseRetired}},
		{"a peer that joined with the new token", map[string]Phase{"a": PhaseRetired, "b": PhaseRetired}, true, "c", PhaseRetired,
			Decision{Target: PhaseRetired}},
	} {
		long := time.Unix(0, 0) // applied long ago
		got := Decide(Rotation{ID: "n", Progress: c.progress, Resealed: c.resealed}, alive, c.self, Local{Applied: c.applied, Since: long}, long.Add(time.Hour))
		if got.Target != c.want.Target || got.Reseal != c.want.Reseal || !slices.Equal(got.WaitingFor, c.want.WaitingFor) {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
	// A dead member does not hold the others back: only alive ones count.
	long := time.Unix(0, 0)
	got := Decide(Rotation{Progress: map[string]Phase{"a": PhaseInstalled, "b": PhaseInstalled}}, []string{"a", "b"}, "a", Local{Applied: PhaseInstalled, Since: long}, long.Add(time.Hour))
	if got.Target != PhaseUsing {
		t.Errorf("with c dead: %+v", got)
	}
	// Not before PhaseDwell in the phase, and then at once.
	since := time.Unix(100, 0)
	all := Rotation{Progress: map[string]Phase{"a": PhaseUsing, "b": PhaseUsing}, Resealed: true}
	got = Decide(all, []string{"a", "b"}, "a", Local{Applied: PhaseUsing, Since: since}, since.Add(PhaseDwell-time.Millisecond))
	if got.Target != PhaseUsing || !got.NotBefore.Equal(since.Add(PhaseDwell)) {
		t.Errorf("before the dwell: %+v", got)
	}
	if got = Decide(all, []string{"a", "b"}, "a", Local{Applied: PhaseUsing, Since: since}, since.Add(PhaseDwell)); got.Target != PhaseRetired {
		t.Errorf("after the dwell: %+v", got)
	}
	// A restart behind its record applies the recorded phase first.
	if got = Decide(all, []string{"a", "b"}, "a", Local{Applied: PhaseNone, Since: since}, since.Add(time.Hour)); got.Target != PhaseUsing {
		t.Errorf("restart behind its record: %+v", got)
	}
}

func TestStatusOf(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Rotation{ID: "n", From: "o", Started: start, Progress: map[string]Phase{"a": PhaseRetired, "b": PhaseUsing, "gone": PhaseNone}}
	st := StatusOf(r, []string{"a", "b"}, start.Add(3*time.Second))
	if st.Phase != PhaseUsing || st.Done != 1 || st.Total != 2 || st.Complete || st.Elapsed != 3*time.Second {
		t.Fatalf("%+v", st)
	}
	r.Progress["b"] = PhaseRetired
	if st := StatusOf(r, []string{"a", "b"}, start); !st.Complete || st.Phase != PhaseRetired {
		t.Fatalf("%+v", st)
	}
	if st := StatusOf(r, nil, start); st.Complete {
		t.Fatalf("no alive member: %+v", st)
	}
	// Once complete, Elapsed stops at the recorded end.
	r.Completed = start.Add(5 * time.Second)
	if st := StatusOf(r, []string{"a", "b"}, start.Add(time.Hour)); st.Elapsed != 5*time.Second {
		t.Fatalf("elapsed an hour after the end: %v, want 5s", st.Elapsed)
	}
}
