package api

import (
	"fmt"
	"maps"
	"time"

	"github.com/robfig/cron/v3"
)

// Kinds of batch/v1.
const (
	KindJob     = "Job"
	KindCronJob = "CronJob"
)

const apiVersionBatchV1 = "batch/v1"

// Labels and annotations of a Job's pods and a CronJob's jobs, as
// Kubernetes sets them.
const (
	LabelJobName          = "batch.kubernetes.io/job-name"
	LabelJobNameLegacy    = "job-name"
	LabelControllerUID    = "batch.kubernetes.io/controller-uid"
	LabelCompletionIndex  = "batch.kubernetes.io/job-completion-index"
	AnnotationCronJobTime = "batch.kubernetes.io/cronjob-scheduled-timestamp"
)

// Completion modes and CronJob concurrency policies.
const (
	CompletionNonIndexed = "NonIndexed"
	CompletionIndexed    = "Indexed"
	ConcurrencyAllow     = "Allow"
	ConcurrencyForbid    = "Forbid"
	ConcurrencyReplace   = "Replace"
)

// maxJobCompletions bounds completions and parallelism: each completion is
// a pod object, as each replica of a deployment is (see maxReplicas).
const maxJobCompletions = 10000

// OwnerReference names the object that owns another (a Job its pods, a
// CronJob its jobs): deleting the owner deletes what it owns.
type OwnerReference struct {
	APIVersion         string `json:"apiVersion"`
	Kind               string `json:"kind"`
	Name               string `json:"name"`
	UID                string `json:"uid"`
	Controller         *bool  `json:"controller,omitempty"`
	BlockOwnerDeletion *bool  `json:"blockOwnerDeletion,omitempty"`
}

// Job is a batch/v1 Job: pods run until a number of them succeed.
type Job struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     JobSpec    `json:"spec"`
	Status   JobStatus  `json:"status,omitempty"`
}

// JobSpec is the desired state of a Job.
type JobSpec struct {
	Parallelism             *int32          `json:"parallelism,omitempty"`
	Completions             *int32          `json:"completions,omitempty"`
	CompletionMode          string          `json:"completionMode,omitempty"`
	BackoffLimit            *int32          `json:"backoffLimit,omitempty"`
	ActiveDeadlineSeconds   *int64          `json:"activeDeadlineSeconds,omitempty"`
	TTLSecondsAfterFinished *int32          `json:"ttlSecondsAfterFinished,omitempty"`
	Suspend                 *bool           `json:"suspend,omitempty"`
	Selector                *LabelSelector  `json:"selector,omitempty"`
	ManualSelector          *bool           `json:"manualSelector,omitempty"`
	Template                PodTemplateSpec `json:"template"`
}

// JobStatus is the observed state of a Job.
type JobStatus struct {
	Conditions       []JobCondition `json:"conditions,omitempty"`
	StartTime        *time.Time     `json:"startTime,omitempty"`
	CompletionTime   *time.Time     `json:"completionTime,omitempty"`
	Active           int32          `json:"active,omitempty"`
	Succeeded        int32          `json:"succeeded,omitempty"`
	Failed           int32          `json:"failed,omitempty"`
	Ready            *int32         `json:"ready,omitempty"`
	Terminating      *int32         `json:"terminating,omitempty"`
	CompletedIndexes string         `json:"completedIndexes,omitempty"`
}

// JobCondition is one of Complete, Failed, Suspended, SuccessCriteriaMet,
// FailureTarget.
type JobCondition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"`
	LastProbeTime      *time.Time `json:"lastProbeTime,omitempty"`
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
	Reason             string     `json:"reason,omitempty"`
	Message            string     `json:"message,omitempty"`
}

// CronJob is a batch/v1 CronJob: a Job made on a schedule.
type CronJob struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     CronJobSpec   `json:"spec"`
	Status   CronJobStatus `json:"status,omitempty"`
}

// CronJobSpec is the desired state of a CronJob.
type CronJobSpec struct {
	Schedule                   string          `json:"schedule"`
	TimeZone                   *string         `json:"timeZone,omitempty"`
	StartingDeadlineSeconds    *int64          `json:"startingDeadlineSeconds,omitempty"`
	ConcurrencyPolicy          string          `json:"concurrencyPolicy,omitempty"`
	Suspend                    *bool           `json:"suspend,omitempty"`
	JobTemplate                JobTemplateSpec `json:"jobTemplate"`
	SuccessfulJobsHistoryLimit *int32          `json:"successfulJobsHistoryLimit,omitempty"`
	FailedJobsHistoryLimit     *int32          `json:"failedJobsHistoryLimit,omitempty"`
}

// JobTemplateSpec is the template a CronJob's jobs are made from.
type JobTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata,omitempty"`
	Spec     JobSpec    `json:"spec"`
}

// CronJobStatus is the observed state of a CronJob.
type CronJobStatus struct {
	Active             []ObjectReference `json:"active,omitempty"`
	LastScheduleTime   *time.Time        `json:"lastScheduleTime,omitempty"`
	LastSuccessfulTime *time.Time        `json:"lastSuccessfulTime,omitempty"`
}

// GetKind returns KindJob.
func (*Job) GetKind() string { return KindJob }

// Meta returns the job's metadata.
func (o *Job) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion batch/v1, kind Job.
func (o *Job) SetTypeMeta() { o.TypeMeta = TypeMeta{APIVersion: apiVersionBatchV1, Kind: KindJob} }

// GetKind returns KindCronJob.
func (*CronJob) GetKind() string { return KindCronJob }

// Meta returns the cron job's metadata.
func (o *CronJob) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion batch/v1, kind CronJob.
func (o *CronJob) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionBatchV1, Kind: KindCronJob}
}

// CompletionsOrDefault returns how many pods must succeed (spec.completions,
// or 0 for a work queue: done when one succeeded and none runs).
func (s *JobSpec) CompletionsOrDefault() int {
	if s.Completions == nil {
		return 0
	}
	return int(*s.Completions)
}

// IsSuspended reports spec.suspend.
func (s *JobSpec) IsSuspended() bool { return s.Suspend != nil && *s.Suspend }

// defaultJobSpec sets Kubernetes' defaults: parallelism 1, completions =
// parallelism when neither is set, backoffLimit 6, completionMode
// NonIndexed, suspend false, the selector and template labels naming the
// job (unless manualSelector), restartPolicy as given (required).
func defaultJobSpec(s *JobSpec, name string) {
	if s.Parallelism == nil {
		s.Parallelism = ptr[int32](1)
	}
	if s.Completions == nil && *s.Parallelism == 1 {
		s.Completions = ptr[int32](1)
	}
	if s.BackoffLimit == nil {
		s.BackoffLimit = ptr[int32](6)
	}
	if s.CompletionMode == "" {
		s.CompletionMode = CompletionNonIndexed
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.ManualSelector == nil || !*s.ManualSelector {
		if name != "" {
			if s.Template.Metadata.Labels == nil {
				s.Template.Metadata.Labels = map[string]string{}
			}
			s.Template.Metadata.Labels[LabelJobName] = name
			s.Template.Metadata.Labels[LabelJobNameLegacy] = name
			s.Selector = &LabelSelector{MatchLabels: map[string]string{LabelJobName: name}}
		}
	}
	if s.Template.Spec.RestartPolicy == "" {
		// Kubernetes requires it; chorus fills it in for kubectl create job,
		// which always sets it, and leaves validation the rest.
		s.Template.Spec.RestartPolicy = RestartNever
	}
	defaultPodSpec(&s.Template.Spec)
}

func defaultCronJobSpec(s *CronJobSpec) {
	if s.ConcurrencyPolicy == "" {
		s.ConcurrencyPolicy = ConcurrencyAllow
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.SuccessfulJobsHistoryLimit == nil {
		s.SuccessfulJobsHistoryLimit = ptr[int32](3)
	}
	if s.FailedJobsHistoryLimit == nil {
		s.FailedJobsHistoryLimit = ptr[int32](1)
	}
	// The jobs' own defaults (their selector names each job) are set when
	// a job is made; here only what does not depend on the job's name.
	t := &s.JobTemplate.Spec
	if t.Parallelism == nil {
		t.Parallelism = ptr[int32](1)
	}
	if t.BackoffLimit == nil {
		t.BackoffLimit = ptr[int32](6)
	}
	if t.CompletionMode == "" {
		t.CompletionMode = CompletionNonIndexed
	}
	defaultPodSpec(&t.Template.Spec)
}

func (v *validator) jobSpec(s *JobSpec, path string, inCronJob bool) {
	nonNeg := func(p *int32, field string) {
		switch {
		case p == nil:
		case *p < 0:
			v.add(child(path, field), "must be greater than or equal to 0, got %d", *p)
		case *p > maxJobCompletions:
			v.add(child(path, field), "must be at most %d, got %d", maxJobCompletions, *p)
		}
	}
	nonNeg(s.Parallelism, "parallelism")
	nonNeg(s.Completions, "completions")
	if s.BackoffLimit != nil && *s.BackoffLimit < 0 {
		v.add(child(path, "backoffLimit"), "must be greater than or equal to 0, got %d", *s.BackoffLimit)
	}
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		v.add(child(path, "activeDeadlineSeconds"), "must be greater than 0, got %d", *s.ActiveDeadlineSeconds)
	}
	if s.TTLSecondsAfterFinished != nil && *s.TTLSecondsAfterFinished < 0 {
		v.add(child(path, "ttlSecondsAfterFinished"), "must be greater than or equal to 0, got %d", *s.TTLSecondsAfterFinished)
	}
	switch s.CompletionMode {
	case "", CompletionNonIndexed:
	case CompletionIndexed:
		if s.Completions == nil {
			v.add(child(path, "completions"), "required when completionMode is Indexed")
		}
	default:
		v.add(child(path, "completionMode"), "unsupported value %q: supported values: NonIndexed, Indexed", s.CompletionMode)
	}
	tmpl := child(path, "template")
	if rp := s.Template.Spec.RestartPolicy; rp != RestartNever && rp != RestartOnFailure {
		v.add(child(child(tmpl, "spec"), "restartPolicy"), "unsupported value %q: a job's pods must have restartPolicy Never or OnFailure", rp)
	}
	sel := child(path, "selector")
	switch {
	case s.ManualSelector != nil && *s.ManualSelector:
		if s.Selector == nil || len(s.Selector.MatchLabels) == 0 && len(s.Selector.MatchExpressions) == 0 {
			v.add(sel, "required when manualSelector is true")
		} else if v.selector(s.Selector, sel) && !s.Selector.Matches(s.Template.Metadata.Labels) {
			v.add(sel, "does not match spec.template.metadata.labels")
		}
	case inCronJob:
	case s.Selector != nil && !s.Selector.Matches(s.Template.Metadata.Labels):
		v.add(sel, "does not match spec.template.metadata.labels; leave it out (chorus selects the job's pods by %s) or set manualSelector", LabelJobName)
	}
	v.labels(s.Template.Metadata.Labels, child(child(tmpl, "metadata"), "labels"))
	v.annotations(s.Template.Metadata.Annotations, child(child(tmpl, "metadata"), "annotations"))
	v.podSpec(&s.Template.Spec, child(tmpl, "spec"), false)
}

func (v *validator) cronJobSpec(s *CronJobSpec) {
	if _, err := ParseSchedule(s.Schedule, s.TimeZone); err != nil {
		field := "spec.schedule"
		if s.TimeZone != nil {
			if _, zerr := time.LoadLocation(*s.TimeZone); zerr != nil {
				field = "spec.timeZone"
			}
		}
		v.add(field, "%v", err)
	}
	switch s.ConcurrencyPolicy {
	case "", ConcurrencyAllow, ConcurrencyForbid, ConcurrencyReplace:
	default:
		v.add("spec.concurrencyPolicy", "unsupported value %q: supported values: Allow, Forbid, Replace", s.ConcurrencyPolicy)
	}
	if s.StartingDeadlineSeconds != nil && *s.StartingDeadlineSeconds < 0 {
		v.add("spec.startingDeadlineSeconds", "must be greater than or equal to 0, got %d", *s.StartingDeadlineSeconds)
	}
	for field, p := range map[string]*int32{"spec.successfulJobsHistoryLimit": s.SuccessfulJobsHistoryLimit, "spec.failedJobsHistoryLimit": s.FailedJobsHistoryLimit} {
		if p != nil && *p < 0 {
			v.add(field, "must be greater than or equal to 0, got %d", *p)
		}
	}
	// A job's name is the cron job's and a timestamp of 8 to 10 digits:
	// 52 characters leave room for it within a label value's 63.
	if len(v.name) > 52 {
		v.add("metadata.name", "must be no more than 52 characters (the jobs it makes are named after it)")
	}
	v.labels(s.JobTemplate.Metadata.Labels, "spec.jobTemplate.metadata.labels")
	v.annotations(s.JobTemplate.Metadata.Annotations, "spec.jobTemplate.metadata.annotations")
	v.jobSpec(&s.JobTemplate.Spec, "spec.jobTemplate.spec", true)
}

// ParseSchedule parses a CronJob's schedule (five fields, or a macro such
// as @hourly) in its time zone (the peer's when nil), as Kubernetes does.
func ParseSchedule(schedule string, tz *string) (cron.Schedule, error) {
	if schedule == "" {
		return nil, fmt.Errorf("required: a cron schedule such as \"*/5 * * * *\"")
	}
	spec := schedule
	if tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			return nil, fmt.Errorf("unknown time zone %q: %w", *tz, err)
		}
		spec = "CRON_TZ=" + *tz + " " + schedule
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("unparseable schedule %q: %w", schedule, err)
	}
	return s, nil
}

// JobFromCronJob returns the job cron job c makes for the scheduled time t:
// named "<cron job>-<minutes since the epoch>" as Kubernetes names it (so
// two peers that make it at once make the same one), labelled and
// annotated as the template says, owned by c.
func JobFromCronJob(c *CronJob, t time.Time) *Job {
	name := fmt.Sprintf("%s-%d", c.Metadata.Name, t.Unix()/60)
	j := &Job{Metadata: ObjectMeta{
		Name:        name,
		Namespace:   c.Metadata.Namespace,
		Labels:      maps.Clone(c.Spec.JobTemplate.Metadata.Labels),
		Annotations: maps.Clone(c.Spec.JobTemplate.Metadata.Annotations),
		OwnerReferences: []OwnerReference{{APIVersion: apiVersionBatchV1, Kind: KindCronJob, Name: c.Metadata.Name,
			UID: c.Metadata.UID, Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
	}, Spec: Clone(c.Spec.JobTemplate.Spec)}
	if j.Metadata.Annotations == nil {
		j.Metadata.Annotations = map[string]string{}
	}
	j.Metadata.Annotations[AnnotationCronJobTime] = t.UTC().Format(time.RFC3339)
	SetDefaults(j)
	return j
}
