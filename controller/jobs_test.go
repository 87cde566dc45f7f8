package controller

import (
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
)

func testJob(completions, parallelism *int32, mode string) *api.Job {
	j := &api.Job{Metadata: api.ObjectMeta{Name: "pi", Namespace: "default", UID: "u1"},
		Spec: api.JobSpec{Completions: completions, Parallelism: parallelism, CompletionMode: mode,
			Template: api.PodTemplateSpec{Spec: api.PodSpec{RestartPolicy: api.RestartNever, Containers: []api.Container{{Name: "c", Image: "i:1"}}}}}}
	api.SetDefaults(j)
	j.Spec.Completions, j.Spec.Parallelism = completions, parallelism
	if parallelism == nil {
		j.Spec.Parallelism = ptrTo[int32](1)
	}
	return j
}

func withPhase(p api.Pod, phase, reason string) api.Pod {
	p.Status = api.PodStatus{Phase: phase, Reason: reason}
	p.Spec.NodeName = "n1"
	return p
}

// apply plays a plan as the agent carries it out: records written, pods
// deleted and made.
func applyPlan(prog *JobProgress, pods []api.Pod, plan JobPlan) []api.Pod {
	if plan.Start != nil {
		prog.Start = plan.Start
	}
	if plan.End != nil {
		prog.End = plan.End
	}
	for n, r := range plan.Records {
		prog.Records[n] = r
	}
	del := map[string]bool{}
	for _, n := range plan.Delete {
		del[n] = true
	}
	var out []api.Pod
	for _, p := range pods {
		if !del[p.Metadata.Name] {
			out = append(out, p)
		}
	}
	for _, p := range plan.Create {
		p.Status = api.PodStatus{Phase: api.PodPending}
		out = append(out, p)
	}
	return out
}

// A job of 3 completions, 2 at a time: two pods, then a third when one
// succeeds, Complete when three did; a failure counts and waits its
// back-off; a pod lost with its peer is replaced and not counted.
func TestPlanJobRunsToCompletion(t *testing.T) {
	j := testJob(ptrTo[int32](3), ptrTo[int32](2), "")
	prog := JobProgress{UID: "u1", Records: map[string]JobRecord{}}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	plan := PlanJob(j, prog, nil, now)
	if len(plan.Create) != 2 || plan.Start == nil {
		t.Fatalf("first plan: %+v", plan)
	}
	pods := applyPlan(&prog, nil, plan)
	if again := PlanJob(j, prog, pods, now); len(again.Create) != 0 || len(again.Delete) != 0 {
		t.Fatalf("nothing changed, yet: %+v", again)
	}
	// One succeeds, the other is lost with its peer.
	pods[0] = withPhase(pods[0], api.PodSucceeded, "")
	pods[1] = withPhase(pods[1], api.PodUnknown, "NodeLost")
	plan = PlanJob(j, prog, pods, now.Add(time.Second))
	if len(plan.Records) != 2 || !plan.Records[pods[1].Metadata.Name].Disrupted || len(plan.Delete) != 1 || len(plan.Create) != 2 {
		t.Fatalf("after a success and a loss: %+v", plan)
	}
	pods = applyPlan(&prog, pods, plan)
	names := map[string]bool{}
	for _, p := range pods {
		if names[p.Metadata.Name] {
			t.Fatalf("pod name %s made twice", p.Metadata.Name)
		}
		names[p.Metadata.Name] = true
	}
	// One of the two new ones fails: no new pod until the back-off passed.
	var failed string
	for i, p := range pods {
		if p.Status.Phase == api.PodPending {
			pods[i] = withPhase(p, api.PodFailed, "")
			failed = p.Metadata.Name
			break
		}
	}
	plan = PlanJob(j, prog, pods, now.Add(2*time.Second))
	if plan.Records[failed].Phase != api.PodFailed || len(plan.Create) != 0 {
		t.Fatalf("after a failure: %+v", plan)
	}
	pods = applyPlan(&prog, pods, plan)
	if st := JobStatus(j, prog, pods); st.Failed != 1 || st.Succeeded != 1 || st.Active != 1 {
		t.Fatalf("status %+v", st)
	}
	plan = PlanJob(j, prog, pods, now.Add(13*time.Second))
	if len(plan.Create) != 1 {
		t.Fatalf("after the back-off: %+v", plan)
	}
	pods = applyPlan(&prog, pods, plan)
	for i, p := range pods {
		if p.Status.Phase == api.PodPending {
			pods[i] = withPhase(p, api.PodSucceeded, "")
		}
	}
	plan = PlanJob(j, prog, pods, now.Add(20*time.Second))
	if plan.End == nil || plan.End.Type != "Complete" {
		t.Fatalf("three succeeded: %+v", plan)
	}
	pods = applyPlan(&prog, pods, plan)
	st := JobStatus(j, prog, pods)
	if st.Succeeded != 3 || st.Failed != 1 || st.CompletionTime == nil || st.Conditions[len(st.Conditions)-1].Type != "Complete" {
		t.Fatalf("final status %+v", st)
	}
}

func TestPlanJobFailsPastBackoffLimitAndDeadline(t *testing.T) {
	j := testJob(ptrTo[int32](1), nil, "")
	j.Spec.BackoffLimit = ptrTo[int32](1)
	prog := JobProgress{UID: "u1", Records: map[string]JobRecord{}}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	pods := applyPlan(&prog, nil, PlanJob(j, prog, nil, now))
	for k := 0; k < 4 && prog.End == nil; k++ {
		if last := pods[len(pods)-1]; last.Status.Phase == api.PodPending {
			pods[len(pods)-1] = withPhase(last, api.PodFailed, "")
		}
		now = now.Add(time.Hour)
		pods = applyPlan(&prog, pods, PlanJob(j, prog, pods, now))
	}
	if len(pods) != 2 {
		t.Fatalf("%d pods made, want 2 (backoffLimit 1)", len(pods))
	}
	if prog.End == nil || prog.End.Reason != "BackoffLimitExceeded" || prog.End.Type != "Failed" {
		t.Fatalf("two failures with backoffLimit 1: end %+v", prog.End)
	}

	j = testJob(ptrTo[int32](1), nil, "")
	j.Spec.ActiveDeadlineSeconds = ptrTo[int64](30)
	prog = JobProgress{UID: "u1", Records: map[string]JobRecord{}}
	pods = applyPlan(&prog, nil, PlanJob(j, prog, nil, now))
	plan := PlanJob(j, prog, pods, now.Add(31*time.Second))
	if plan.End == nil || plan.End.Reason != "DeadlineExceeded" || len(plan.Delete) != 1 {
		t.Fatalf("past the deadline: %+v", plan)
	}
}

// Indexed: one success per index, JOB_COMPLETION_INDEX set, completed
// indexes listed as Kubernetes lists them.
func TestPlanJobIndexed(t *testing.T) {
	j := testJob(ptrTo[int32](5), ptrTo[int32](5), api.CompletionIndexed)
	prog := JobProgress{UID: "u1", Records: map[string]JobRecord{}}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	plan := PlanJob(j, prog, nil, now)
	if len(plan.Create) != 5 || plan.Create[3].Spec.Containers[0].Env[0].Value != "3" || plan.Create[3].Metadata.Labels[api.LabelCompletionIndex] != "3" {
		t.Fatalf("indexed plan: %+v", plan.Create)
	}
	pods := applyPlan(&prog, nil, plan)
	for _, i := range []int{0, 1, 2, 4} {
		pods[i] = withPhase(pods[i], api.PodSucceeded, "")
	}
	pods = applyPlan(&prog, pods, PlanJob(j, prog, pods, now))
	if got := JobStatus(j, prog, pods).CompletedIndexes; got != "0-2,4" {
		t.Fatalf("completed indexes %q", got)
	}
}

// Whatever happens to the pods (success, failure, loss, in any order), a
// job never has more active pods than its parallelism, never makes two
// pods of one name, and completes with exactly `completions` successes
// counted, or fails.
func TestPlanJobProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		completions := rapid.Int32Range(1, 6).Draw(t, "completions")
		parallelism := rapid.Int32Range(1, 4).Draw(t, "parallelism")
		mode := rapid.SampledFrom([]string{api.CompletionNonIndexed, api.CompletionIndexed}).Draw(t, "mode")
		j := testJob(&completions, &parallelism, mode)
		j.Spec.BackoffLimit = ptrTo(rapid.Int32Range(0, 3).Draw(t, "backoffLimit"))
		prog := JobProgress{UID: "u1", Records: map[string]JobRecord{}}
		now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
		var pods []api.Pod
		made := map[string]bool{}
		for step := 0; step < 60 && prog.End == nil; step++ {
			now = now.Add(time.Duration(rapid.IntRange(1, 400).Draw(t, "wait")) * time.Second)
			plan := PlanJob(j, prog, pods, now)
			for _, p := range plan.Create {
				if made[p.Metadata.Name] {
					t.Fatalf("pod %s made twice", p.Metadata.Name)
				}
				made[p.Metadata.Name] = true
			}
			pods = applyPlan(&prog, pods, plan)
			active := 0
			for _, p := range pods {
				if _, ok := prog.Records[p.Metadata.Name]; !ok {
					active++
				}
			}
			if active > int(parallelism) {
				t.Fatalf("%d active pods, parallelism %d", active, parallelism)
			}
			for i, p := range pods {
				if p.Status.Phase != api.PodPending {
					continue
				}
				switch rapid.IntRange(0, 3).Draw(t, fmt.Sprint("fate", step, i)) {
				case 0:
					pods[i] = withPhase(p, api.PodSucceeded, "")
				case 1:
					pods[i] = withPhase(p, api.PodFailed, "")
				case 2:
					pods[i] = withPhase(p, api.PodUnknown, "NodeLost")
				}
			}
		}
		if prog.End == nil {
			return
		}
		st := JobStatus(j, prog, pods)
		switch prog.End.Type {
		case "Complete":
			if st.Succeeded < completions {
				t.Fatalf("complete with %d successes of %d", st.Succeeded, completions)
			}
			if mode == api.CompletionIndexed && st.CompletedIndexes != formatIndexes(func() map[int]bool {
				m := map[int]bool{}
				for i := range int(completions) {
					m[i] = true
				}
				return m
			}()) {
				t.Fatalf("complete with indexes %q", st.CompletedIndexes)
			}
		case "Failed":
			if st.Failed <= *j.Spec.BackoffLimit {
				t.Fatalf("failed with %d failures, backoffLimit %d", st.Failed, *j.Spec.BackoffLimit)
			}
		}
	})
}
