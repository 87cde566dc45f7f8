package agent

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
)

// TestOrphansCollectedEvery30s: controlBatch deletes the objects of a job
// no peer holds once they are orphanGrace old, and looks for them at most
// every orphanCollectInterval, not on every reconcile pass.
func TestOrphansCollectedEvery30s(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), "state.crdt"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{Name: "n1"}, log: slog.New(slog.DiscardHandler), store: st, events: newEvents("n1", 100)}
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	orphan := func(name string, created time.Time) string {
		t.Helper()
		p := &api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default",
			OwnerReferences: []api.OwnerReference{{APIVersion: "batch/v1", Kind: api.KindJob, Name: "gone", UID: "uid-of-a-deleted-job"}}},
			Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "busybox"}}}}
		if _, err := st.Apply([]api.Object{p}, created, false); err != nil {
			t.Fatal(err)
		}
		return state.Key(api.KindPod, "default", name)
	}
	stored := func(key string) bool {
		_, ok := st.Get(key)
		return ok
	}

	young := orphan("young", t0.Add(-orphanGrace+5*time.Second))
	old := orphan("old", t0.Add(-orphanGrace-time.Second))
	a.controlBatch(t0) // the first pass collects
	if stored(old) || !stored(young) {
		t.Fatalf("first pass: old pod stored %v (want false), young pod stored %v (want true)", stored(old), stored(young))
	}
	// A pass each second: young is old enough 5 s later, but collected
	// only once orphanCollectInterval has passed since the last collection.
	for now := t0.Add(time.Second); !now.After(t0.Add(orphanCollectInterval)); now = now.Add(time.Second) {
		a.controlBatch(now)
		if !stored(young) {
			t.Fatalf("young pod collected %s after the last collection", now.Sub(t0))
		}
	}
	a.controlBatch(t0.Add(orphanCollectInterval + time.Second))
	if stored(young) {
		t.Fatal("young pod not collected after orphanCollectInterval")
	}
}

func TestPace(t *testing.T) {
	var p pace
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Second, false}, {30 * time.Second, false}, {31 * time.Second, true}, {40 * time.Second, false}, {62 * time.Second, true}} {
		if got := p.due(t0.Add(c.at), 30*time.Second); got != c.want {
			t.Fatalf("due at %s: %v, want %v", c.at, got, c.want)
		}
	}
}
