package runtimetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/runtime"
)

// A process ends as its script says, when the test says, or when stopped;
// each start gets a channel of its own that yields once.
func TestRuntimeProcesses(t *testing.T) {
	ctx := context.Background()
	r := New()
	r.SetScript(func(_ runtime.ContainerConfig, n int) (int32, bool) { return 7, n == 0 })
	cfg := runtime.ContainerConfig{ID: "c", Labels: map[string]string{"k": "v"}}
	if err := r.StartContainer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	ch, err := r.Wait(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.Code != 7 || r.Running("c") {
		t.Fatalf("scripted exit %+v, running %t", st, r.Running("c"))
	}
	if err := r.StartContainer(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if !r.Running("c") || r.Starts("c") != 2 {
		t.Fatalf("second start: running %t, starts %d", r.Running("c"), r.Starts("c"))
	}
	if err := r.StartContainer(ctx, cfg); err == nil {
		t.Fatal("started a running container")
	}
	ch, _ = r.Wait(ctx, "c")
	if err := r.Exit("c", 3); err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.Code != 3 {
		t.Fatalf("exit %+v", st)
	}
	if err := r.Exit("c", 3); err == nil {
		t.Fatal("ended a process that is not running")
	}
	_ = r.StartContainer(ctx, cfg)
	ch, _ = r.Wait(ctx, "c")
	if err := r.SetLabels(ctx, "c", map[string]string{"n": "1"}); err != nil {
		t.Fatal(err)
	}
	recs, _ := r.Containers(ctx)
	if len(recs) != 1 || !recs[0].Running || recs[0].Labels["k"] != "v" || recs[0].Labels["n"] != "1" {
		t.Fatalf("containers %+v", recs)
	}
	if err := r.RemoveContainer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if st := <-ch; st.Code != 143 || st.Signal != 15 {
		t.Fatalf("stopped: %+v", st)
	}
	want := []string{"start c", "exit c 7", "start c", "exit c 3", "start c", "stop c", "exit c 143", "remove c"}
	if got := r.Log(); !slices.Equal(got, want) {
		t.Fatalf("log %q, want %q", got, want)
	}
}

// Images are held unless hidden; exec answers as set; networks get
// distinct addresses.
func TestRuntimeImagesExecNetworks(t *testing.T) {
	ctx := context.Background()
	r := New()
	r.HideImage("docker.io/library/a:1", true)
	if ok, _ := r.HasImage(ctx, "docker.io/library/a:1"); ok {
		t.Fatal("hidden image held")
	}
	if ok, _ := r.HasImage(ctx, "docker.io/library/b:1"); !ok {
		t.Fatal("image not held")
	}
	r.SetExec(func(string, []string) (int, []byte, error) { return 2, []byte("out"), nil })
	if code, out, err := r.Exec(ctx, "c", []string{"x"}); code != 2 || string(out) != "out" || err != nil {
		t.Fatalf("exec %d %q %v", code, out, err)
	}
	a, _ := r.SetupNetwork(ctx, "p1")
	b, _ := r.SetupNetwork(ctx, "p2")
	if a.IP == b.IP || a.NetNSPath == b.NetNSPath {
		t.Fatalf("networks %+v %+v", a, b)
	}
}

func TestClock(t *testing.T) {
	t0 := time.Unix(100, 0)
	c := NewClock(t0)
	c.Advance(time.Minute)
	if got := c.Now(); !got.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Now %s", got)
	}
}
