package controller

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/chorus-sh/chorus/api"
)

// A CronJob's runs are made by the alive peer that leads its key, as a
// Job's pods are: one run per tick cluster-wide. The job of a run is named
// after the scheduled time (api.JobFromCronJob), so two peers that make it
// at once (during a membership change) make one job; the last scheduled
// time made is recorded in the replicated CronJobProgress/<ns>/<name>, so
// a new leader neither repeats a run nor misses one.

// CronProgress is a cron job's replicated progress.
type CronProgress struct {
	Last        *time.Time // the last scheduled time a job was made for
	LastSuccess *time.Time // when a job of it last completed
}

func ReadCronProgress(fields map[string]json.RawMessage, uid string) CronProgress {
	var p CronProgress
	var stored string
	if json.Unmarshal(fields["spec.uid"], &stored) != nil || stored != uid {
		return p
	}
	var t time.Time
	if json.Unmarshal(fields["spec.last"], &t) == nil {
		p.Last = &t
	}
	var s time.Time
	if json.Unmarshal(fields["spec.lastSuccess"], &s) == nil {
		p.LastSuccess = &s
	}
	return p
}

// CronRun is one job of a cron job, as the controller sees it.
type CronRun struct {
	Name      string
	Scheduled time.Time
	End       *JobEnd // nil while it runs
}

// CronPlan is what the controller of a cron job does now.
type CronPlan struct {
	Create      *time.Time // make the job of this scheduled time
	Delete      []string   // jobs to delete
	Last        *time.Time // to record
	LastSuccess *time.Time // to record
	Events      []JobEvent
}

// maxMissedRuns bounds the scheduled times looked at since the last run
// (Kubernetes gives up past 100 missed starts; chorus runs the latest).
const maxMissedRuns = 10000

// PlanCronJob decides what the controller of c does at now, given its
// schedule, progress and jobs.
func PlanCronJob(c *api.CronJob, sched cron.Schedule, prog CronProgress, runs []CronRun, now time.Time) CronPlan {
	var plan CronPlan
	// History: keep the newest finished jobs within the limits.
	sort.Slice(runs, func(i, j int) bool { return runs[i].Scheduled.After(runs[j].Scheduled) })
	var active []CronRun
	keptOK, keptFailed := 0, 0
	for _, r := range runs {
		switch {
		case r.End == nil:
			active = append(active, r)
		case r.End.Type == "Complete":
			if prog.LastSuccess == nil || r.End.Time.After(*prog.LastSuccess) {
				t := r.End.Time
				plan.LastSuccess, prog.LastSuccess = &t, &t
			}
			if keptOK++; keptOK > int(deref(c.Spec.SuccessfulJobsHistoryLimit, 3)) {
				plan.Delete = append(plan.Delete, r.Name)
			}
		default:
			if keptFailed++; keptFailed > int(deref(c.Spec.FailedJobsHistoryLimit, 1)) {
				plan.Delete = append(plan.Delete, r.Name)
			}
		}
	}
	if c.Spec.Suspend != nil && *c.Spec.Suspend {
		return plan
	}
	earliest := now
	switch {
	case prog.Last != nil:
		earliest = *prog.Last
	case c.Metadata.CreationTimestamp != nil:
		earliest = c.Metadata.CreationTimestamp.Add(-time.Second)
	}
	if d := c.Spec.StartingDeadlineSeconds; d != nil && earliest.Before(now.Add(-time.Duration(*d)*time.Second)) {
		earliest = now.Add(-time.Duration(*d) * time.Second)
	}
	var due time.Time
	for t, k := sched.Next(earliest), 0; !t.After(now) && !t.IsZero() && k < maxMissedRuns; t, k = sched.Next(t), k+1 {
		due = t
	}
	if due.IsZero() {
		return plan
	}
	for _, r := range runs {
		if r.Scheduled.Equal(due) {
			plan.Last = &due // made already (by another leader)
			return plan
		}
	}
	switch c.Spec.ConcurrencyPolicy {
	case api.ConcurrencyForbid:
		if len(active) > 0 {
			// Skipped, not recorded: it starts when the running one ends,
			// if that is still within startingDeadlineSeconds.
			return plan
		}
	case api.ConcurrencyReplace:
		for _, r := range active {
			plan.Delete = append(plan.Delete, r.Name)
			plan.Events = append(plan.Events, JobEvent{"Normal", "SuccessfulDelete", "Deleted job " + r.Name})
		}
	}
	plan.Create, plan.Last = &due, &due
	return plan
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// CronJobStatus is the status of c the API shows.
func CronJobStatus(prog CronProgress, runs []CronRun, jobs map[string]*api.Job) api.CronJobStatus {
	st := api.CronJobStatus{LastScheduleTime: prog.Last, LastSuccessfulTime: prog.LastSuccess}
	for _, r := range runs {
		if r.End == nil {
			j := jobs[r.Name]
			st.Active = append(st.Active, api.ObjectReference{Kind: api.KindJob, Namespace: j.Metadata.Namespace, Name: r.Name, UID: j.Metadata.UID})
		}
		if r.End != nil && r.End.Type == "Complete" && (st.LastSuccessfulTime == nil || r.End.Time.After(*st.LastSuccessfulTime)) {
			t := r.End.Time
			st.LastSuccessfulTime = &t
		}
	}
	return st
}

// ScheduledTime returns the time a cron job's job was made for, from its
// annotation.
func ScheduledTime(j *api.Job) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, j.Metadata.Annotations[api.AnnotationCronJobTime])
	if err != nil {
		return time.Time{}, fmt.Errorf("job %s: annotation %s: %w", j.Metadata.Name, api.AnnotationCronJobTime, err)
	}
	return t, nil
}
