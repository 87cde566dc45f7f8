package controller

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/reconcile"
	"github.com/chorus-sh/chorus/state"
)

// A Job's pods are standalone Pod objects of the replicated state, made by
// the job's controller: the alive peer that leads the job's key
// (placement.Leader), so one peer acts for each job at a time. Each pod is
// bound to a peer once and runs only there, as any standalone pod does.
//
// What the controller has seen end is written in the job's progress, a
// replicated object JobProgress/<ns>/<name> (one field per ended pod, its
// final status; the start and the end of the job), so a completion counts
// once whatever happens to the peer that ran it, and a new controller (the
// old one died) goes on from the same counts. A pod whose peer is dead
// (NodeLost) is recorded as disrupted, deleted (its peer stops it if it
// comes back) and replaced: a disruption does not count against
// backoffLimit. Pod names are derived from the job's uid and an attempt
// number, so two peers that act for one job at once (during a membership
// change) make the same pods, not twice as many.
//
// PlanJob is the controller's decision, a pure function of the job, its
// progress, its pods and the time; JobStatus derives the status the API
// shows from the same inputs.

// annotationJobAttempt numbers the pods a job made (per index when
// Indexed), from 0.
const annotationJobAttempt = "chorus.io/job-attempt"

// Job failure back-off, as Kubernetes': 10 s after the first failure,
// doubled at each next one, at most 6 minutes.
const (
	jobBackoffBase = 10 * time.Second
	jobBackoffMax  = 6 * time.Minute
)

// JobRecord is how one pod of a job ended.
type JobRecord struct {
	Index     int           `json:"index"`
	Attempt   int           `json:"attempt"`
	Phase     string        `json:"phase"` // Succeeded or Failed
	Disrupted bool          `json:"disrupted,omitempty"`
	Time      time.Time     `json:"time"`
	Status    api.PodStatus `json:"status"`
}

// JobEnd is how the job ended: Complete or Failed.
type JobEnd struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason,omitempty"`
	Message string    `json:"message,omitempty"`
	Time    time.Time `json:"time"`
}

// JobProgress is a job's replicated progress.
type JobProgress struct {
	UID     string
	Start   *time.Time
	End     *JobEnd
	Records map[string]JobRecord // by pod name
}

// ReadJobProgress decodes the progress fields of the job with uid; fields
// of an earlier job of the same name are ignored.
func ReadJobProgress(fields map[string]json.RawMessage, uid string) JobProgress {
	p := JobProgress{UID: uid, Records: map[string]JobRecord{}}
	var stored string
	if json.Unmarshal(fields["spec.uid"], &stored) != nil || stored != uid {
		return p
	}
	var start time.Time
	if json.Unmarshal(fields["spec.start"], &start) == nil {
		p.Start = &start
	}
	var end JobEnd
	if json.Unmarshal(fields["spec.end"], &end) == nil && end.Type != "" {
		p.End = &end
	}
	p.Records = JobRecords(fields)
	return p
}

// JobPlan is what the controller does for one job.
type JobPlan struct {
	Create    []api.Pod            // new pods, unbound
	Delete    []string             // pod names
	Records   map[string]JobRecord // new records, by pod name
	Start     *time.Time           // to record
	End       *JobEnd              // to record
	DeleteJob bool                 // ttlSecondsAfterFinished passed
	Events    []JobEvent
}

type JobEvent struct{ Type, Reason, Message string }

// fields returns the progress fields the plan writes.
func (p *JobPlan) Fields() map[string]any {
	out := map[string]any{}
	if p.Start != nil {
		out["spec.start"] = p.Start
	}
	if p.End != nil {
		out["spec.end"] = p.End
	}
	for name, r := range p.Records {
		out["spec.pod."+name] = r
	}
	return out
}

// JobPodsOf returns, among pods, those job j owns (by the job-name label
// and the owner's uid), sorted by name.
func JobPodsOf(j *api.Job, pods []api.Pod) []api.Pod {
	var out []api.Pod
	for _, p := range pods {
		if p.Metadata.Namespace == j.Metadata.Namespace && state.OwnedBy(&p.Metadata, api.KindJob, j.Metadata.UID) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Metadata.Name < out[b].Metadata.Name })
	return out
}

func isLost(p *api.Pod) bool {
	return p.Status.Phase == api.PodUnknown && p.Status.Reason == "NodeLost"
}

func isEnded(p *api.Pod) bool {
	return p.Status.Phase == api.PodSucceeded || p.Status.Phase == api.PodFailed
}

func attemptOf(p *api.Pod) int {
	n, err := strconv.Atoi(p.Metadata.Annotations[annotationJobAttempt])
	if err != nil {
		return 0
	}
	return n
}

func indexOf(p *api.Pod) int {
	n, err := strconv.Atoi(p.Metadata.Annotations[api.LabelCompletionIndex])
	if err != nil {
		return 0
	}
	return n
}

// jobCounts are what the records and pods of a job add up to.
type jobCounts struct {
	succeeded, failed int
	done              map[int]bool // Indexed: indexes that succeeded
	active            []api.Pod    // pods neither ended nor recorded
	lastFailure       time.Time
	restarts          int // container restarts of the active pods (OnFailure)
}

func countJob(prog JobProgress, pods []api.Pod, extra map[string]JobRecord) jobCounts {
	c := jobCounts{done: map[int]bool{}}
	add := func(r JobRecord) {
		switch {
		case r.Phase == api.PodSucceeded:
			c.succeeded++
			c.done[r.Index] = true
		case !r.Disrupted:
			c.failed++
			if r.Time.After(c.lastFailure) {
				c.lastFailure = r.Time
			}
		}
	}
	for _, r := range prog.Records {
		add(r)
	}
	for name, r := range extra {
		if _, ok := prog.Records[name]; !ok {
			add(r)
		}
	}
	for _, p := range pods {
		if _, ok := prog.Records[p.Metadata.Name]; ok {
			continue
		}
		if _, ok := extra[p.Metadata.Name]; ok {
			continue
		}
		c.active = append(c.active, p)
		for _, cs := range p.Status.ContainerStatuses {
			c.restarts += int(cs.RestartCount)
		}
	}
	return c
}

// PlanJob decides what the controller of j does now, given its progress
// and its pods (with the statuses the API lists: NodeLost for those whose
// peer is dead).
func PlanJob(j *api.Job, prog JobProgress, pods []api.Pod, now time.Time) JobPlan {
	plan := JobPlan{Records: map[string]JobRecord{}}
	// Record what ended, and the pods lost with their peer.
	for _, p := range pods {
		if _, ok := prog.Records[p.Metadata.Name]; ok {
			continue
		}
		switch {
		case isEnded(&p):
			plan.Records[p.Metadata.Name] = JobRecord{Index: indexOf(&p), Attempt: attemptOf(&p), Phase: p.Status.Phase, Time: endTime(&p, now), Status: p.Status}
		case isLost(&p) && prog.End == nil:
			plan.Records[p.Metadata.Name] = JobRecord{Index: indexOf(&p), Attempt: attemptOf(&p), Phase: api.PodFailed, Disrupted: true, Time: now, Status: p.Status}
			plan.Delete = append(plan.Delete, p.Metadata.Name)
			plan.Events = append(plan.Events, JobEvent{"Normal", "PodLost",
				fmt.Sprintf("Pod %s was lost with its peer %s; replacing it", p.Metadata.Name, p.Spec.NodeName)})
		}
	}
	c := countJob(prog, pods, plan.Records)
	stopActive := func() {
		for _, p := range c.active {
			plan.Delete = append(plan.Delete, p.Metadata.Name)
		}
	}
	if prog.End != nil {
		stopActive()
		if ttl := j.Spec.TTLSecondsAfterFinished; ttl != nil && !now.Before(prog.End.Time.Add(time.Duration(*ttl)*time.Second)) {
			plan.DeleteJob = true
		}
		return plan
	}
	if j.Spec.IsSuspended() {
		stopActive()
		return plan
	}
	start := now
	if prog.Start != nil {
		start = *prog.Start
	} else {
		plan.Start = &start
	}
	end := func(typ, reason, msg string) JobPlan {
		plan.End = &JobEnd{Type: typ, Reason: reason, Message: msg, Time: now}
		stopActive()
		evType := "Normal"
		if typ == "Failed" {
			evType = "Warning"
		}
		plan.Events = append(plan.Events, JobEvent{evType, reason, msg})
		if ttl := j.Spec.TTLSecondsAfterFinished; ttl != nil && *ttl == 0 {
			plan.DeleteJob = true
		}
		return plan
	}
	completions := j.Spec.CompletionsOrDefault()
	parallelism := 1
	if j.Spec.Parallelism != nil {
		parallelism = int(*j.Spec.Parallelism)
	}
	indexed := j.Spec.CompletionMode == api.CompletionIndexed
	switch {
	case indexed && completions > 0 && len(c.done) >= completions && allDone(c.done, completions),
		!indexed && completions > 0 && c.succeeded >= completions,
		completions == 0 && c.succeeded > 0 && len(c.active) == 0:
		return end("Complete", "Completed", "Job completed")
	}
	backoffLimit := 6
	if j.Spec.BackoffLimit != nil {
		backoffLimit = int(*j.Spec.BackoffLimit)
	}
	if c.failed+c.restarts > backoffLimit {
		return end("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
	}
	if d := j.Spec.ActiveDeadlineSeconds; d != nil && !now.Before(start.Add(time.Duration(*d)*time.Second)) {
		return end("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
	}
	if c.failed > 0 {
		delay := jobBackoffBase << min(c.failed-1, 10)
		if delay > jobBackoffMax {
			delay = jobBackoffMax
		}
		if now.Before(c.lastFailure.Add(delay)) {
			return plan // new pods wait for the back-off
		}
	}
	// How many pods to run now, and which.
	// The next attempt, per index (NonIndexed pods all have index 0):
	// beyond every pod made, including those recorded and deleted.
	attempts := map[int]int{}
	see := func(index, attempt int) { attempts[index] = max(attempts[index], attempt+1) }
	for _, r := range prog.Records {
		see(r.Index, r.Attempt)
	}
	for _, p := range pods {
		see(indexOf(&p), attemptOf(&p))
	}
	next := attempts[0]
	switch {
	case indexed:
		running := map[int]bool{}
		for _, p := range c.active {
			running[indexOf(&p)] = true
		}
		n := len(c.active)
		for i := 0; i < completions && n < parallelism; i++ {
			if c.done[i] || running[i] {
				continue
			}
			plan.Create = append(plan.Create, jobPod(j, i, attempts[i]))
			n++
		}
	default:
		want := parallelism
		if completions > 0 {
			want = min(want, completions-c.succeeded)
		} else if c.succeeded > 0 {
			want = 0 // a work queue: once one succeeded, no new pods
		}
		for k := len(c.active); k < want; k++ {
			plan.Create = append(plan.Create, jobPod(j, 0, next))
			next++
		}
		// Too many (parallelism lowered): stop the newest.
		if extra := len(c.active) - want; extra > 0 && (completions > 0 || c.succeeded == 0) {
			act := append([]api.Pod(nil), c.active...)
			sort.Slice(act, func(a, b int) bool { return attemptOf(&act[a]) > attemptOf(&act[b]) })
			for _, p := range act[:extra] {
				plan.Delete = append(plan.Delete, p.Metadata.Name)
			}
		}
	}
	return plan
}

func allDone(done map[int]bool, n int) bool {
	for i := range n {
		if !done[i] {
			return false
		}
	}
	return true
}

// endTime is when p ended: its last container's finish time, now if none.
func endTime(p *api.Pod, now time.Time) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt != nil && term.FinishedAt.After(t) {
			t = *term.FinishedAt
		}
	}
	if t.IsZero() {
		return now.UTC().Truncate(time.Second)
	}
	return t
}

// jobPodName names a job's pod from the job's uid, its index and attempt:
// "<job>-<5 characters>" ("<job>-<index>-<5 characters>" when Indexed),
// the characters of Kubernetes' generated names.
func jobPodName(j *api.Job, index, attempt int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d/%d", j.Metadata.UID, index, attempt)))
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	var b [5]byte
	for i := range b {
		b[i] = alphabet[int(sum[i])%len(alphabet)]
	}
	if j.Spec.CompletionMode == api.CompletionIndexed {
		return fmt.Sprintf("%s-%d-%s", j.Metadata.Name, index, b[:])
	}
	return j.Metadata.Name + "-" + string(b[:])
}

// jobPod makes the pod of job j for an index and attempt, from its template.
func jobPod(j *api.Job, index, attempt int) api.Pod {
	t := api.Clone(j.Spec.Template)
	p := api.Pod{Metadata: api.ObjectMeta{
		Name:        jobPodName(j, index, attempt),
		Namespace:   j.Metadata.Namespace,
		Labels:      maps.Clone(t.Metadata.Labels),
		Annotations: maps.Clone(t.Metadata.Annotations),
		OwnerReferences: []api.OwnerReference{{APIVersion: "batch/v1", Kind: api.KindJob, Name: j.Metadata.Name,
			UID: j.Metadata.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}},
	}, Spec: t.Spec}
	if p.Metadata.Labels == nil {
		p.Metadata.Labels = map[string]string{}
	}
	if p.Metadata.Annotations == nil {
		p.Metadata.Annotations = map[string]string{}
	}
	p.Metadata.Labels[api.LabelControllerUID] = j.Metadata.UID
	p.Metadata.Labels[api.LabelJobName] = j.Metadata.Name
	p.Metadata.Annotations[annotationJobAttempt] = strconv.Itoa(attempt)
	if j.Spec.CompletionMode == api.CompletionIndexed {
		idx := strconv.Itoa(index)
		p.Metadata.Labels[api.LabelCompletionIndex] = idx
		p.Metadata.Annotations[api.LabelCompletionIndex] = idx
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Env = append(p.Spec.Containers[i].Env, api.EnvVar{Name: "JOB_COMPLETION_INDEX", Value: idx})
		}
	}
	p.Spec.NodeName = ""
	p.SetTypeMeta()
	return p
}

func ptrTo[T any](v T) *T { return &v }

// JobStatus is the status of j the API shows.
func JobStatus(j *api.Job, prog JobProgress, pods []api.Pod) api.JobStatus {
	c := countJob(prog, pods, nil)
	st := api.JobStatus{StartTime: prog.Start, Succeeded: int32(c.succeeded), Failed: int32(c.failed)}
	var ready int32
	for _, p := range c.active {
		if isEnded(&p) {
			continue // ended, not yet recorded
		}
		st.Active++
		if reconcile.Ready(&p) {
			ready++
		}
	}
	st.Ready = &ready
	st.Terminating = ptrTo[int32](0)
	if j.Spec.CompletionMode == api.CompletionIndexed {
		st.CompletedIndexes = formatIndexes(c.done)
	}
	switch {
	case prog.End != nil:
		t := prog.End.Time
		if prog.End.Type == "Complete" {
			st.CompletionTime = &t
			st.Conditions = append(st.Conditions, api.JobCondition{Type: "SuccessCriteriaMet", Status: "True", Reason: prog.End.Reason,
				Message: prog.End.Message, LastProbeTime: &t, LastTransitionTime: &t})
		} else {
			st.Conditions = append(st.Conditions, api.JobCondition{Type: "FailureTarget", Status: "True", Reason: prog.End.Reason,
				Message: prog.End.Message, LastProbeTime: &t, LastTransitionTime: &t})
		}
		st.Conditions = append(st.Conditions, api.JobCondition{Type: prog.End.Type, Status: "True", Reason: prog.End.Reason,
			Message: prog.End.Message, LastProbeTime: &t, LastTransitionTime: &t})
	case j.Spec.IsSuspended():
		st.Conditions = append(st.Conditions, api.JobCondition{Type: "Suspended", Status: "True", Reason: "JobSuspended", Message: "Job suspended"})
	}
	return st
}

// formatIndexes writes a set of indexes as Kubernetes does: "0-2,5".
func formatIndexes(done map[int]bool) string {
	idx := make([]int, 0, len(done))
	for i := range done {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for k := 0; k < len(idx); {
		e := k
		for e+1 < len(idx) && idx[e+1] == idx[e]+1 {
			e++
		}
		if e == k {
			parts = append(parts, strconv.Itoa(idx[k]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", idx[k], idx[e]))
		}
		k = e + 1
	}
	return strings.Join(parts, ",")
}

// JobRecords decodes the records of ended pods in a job's progress
// fields, by pod name; records that do not decode are skipped.
func JobRecords(fields map[string]json.RawMessage) map[string]JobRecord {
	out := map[string]JobRecord{}
	for f, raw := range fields {
		name, ok := strings.CutPrefix(f, "spec.pod.")
		if !ok {
			continue
		}
		var r JobRecord
		if json.Unmarshal(raw, &r) == nil && r.Phase != "" {
			out[name] = r
		}
	}
	return out
}
