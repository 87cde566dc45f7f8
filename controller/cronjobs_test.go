package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func TestPlanCronJob(t *testing.T) {
	created := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	c := &api.CronJob{Metadata: api.ObjectMeta{Name: "hello", Namespace: "default", UID: "c1", CreationTimestamp: &created},
		Spec: api.CronJobSpec{Schedule: "* * * * *"}}
	api.SetDefaults(c)
	sched, err := api.ParseSchedule(c.Spec.Schedule, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := func(m, s int) time.Time { return time.Date(2026, 12, 2, 10, m, s, 0, time.UTC) }

	if p := PlanCronJob(c, sched, CronProgress{}, nil, at(0, 59)); p.Create != nil {
		t.Fatalf("before the first tick: %+v", p)
	}
	p := PlanCronJob(c, sched, CronProgress{}, nil, at(1, 5))
	if p.Create == nil || !p.Create.Equal(at(1, 0)) || !p.Last.Equal(at(1, 0)) {
		t.Fatalf("first tick: %+v", p)
	}
	last := at(1, 0)
	prog := CronProgress{Last: &last}
	running := []CronRun{{Name: "hello-1", Scheduled: at(1, 0)}}
	if p := PlanCronJob(c, sched, prog, running, at(1, 50)); p.Create != nil {
		t.Fatalf("same minute again: %+v", p)
	}
	// A peer that slept through five ticks runs the latest only.
	if p := PlanCronJob(c, sched, prog, running, at(6, 10)); p.Create == nil || !p.Create.Equal(at(6, 0)) {
		t.Fatalf("after missed ticks: %+v", p)
	}
	// startingDeadlineSeconds: a tick later than that is not run.
	c.Spec.StartingDeadlineSeconds = ptrTo[int64](5)
	if p := PlanCronJob(c, sched, prog, running, at(6, 10)); p.Create != nil {
		t.Fatalf("past the starting deadline: %+v", p)
	}
	c.Spec.StartingDeadlineSeconds = nil
	c.Spec.ConcurrencyPolicy = api.ConcurrencyForbid
	if p := PlanCronJob(c, sched, prog, running, at(2, 1)); p.Create != nil || p.Last != nil {
		t.Fatalf("Forbid with one running: %+v", p)
	}
	c.Spec.ConcurrencyPolicy = api.ConcurrencyReplace
	if p := PlanCronJob(c, sched, prog, running, at(2, 1)); p.Create == nil || !slices.Equal(p.Delete, []string{"hello-1"}) {
		t.Fatalf("Replace with one running: %+v", p)
	}
	// History: 3 successful and 1 failed job kept, the oldest beyond go.
	var runs []CronRun
	for m := 1; m <= 5; m++ {
		runs = append(runs, CronRun{Name: "ok" + string(rune('0'+m)), Scheduled: at(m, 0), End: &JobEnd{Type: "Complete", Time: at(m, 30)}})
		runs = append(runs, CronRun{Name: "bad" + string(rune('0'+m)), Scheduled: at(m, 0), End: &JobEnd{Type: "Failed", Time: at(m, 30)}})
	}
	p = PlanCronJob(c, sched, prog, runs, at(5, 40))
	slices.Sort(p.Delete)
	if want := []string{"bad1", "bad2", "bad3", "bad4", "ok1", "ok2"}; !slices.Equal(p.Delete, want) {
		t.Fatalf("history: deleted %v, want %v", p.Delete, want)
	}
	if p.LastSuccess == nil || !p.LastSuccess.Equal(at(5, 30)) {
		t.Fatalf("last success %v", p.LastSuccess)
	}
}
