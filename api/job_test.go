package api

import (
	"strings"
	"testing"
	"time"
)

// The Job of Kubernetes' documentation (pi) decodes with Kubernetes'
// defaults: completions and parallelism 1, backoffLimit as given, the
// selector and template labels naming the job.
func TestDecodeJob(t *testing.T) {
	const pi = `apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  backoffLimit: 4
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["perl",  "-Mbignum=bpi", "-wle", "print bpi(2000)"]
      restartPolicy: Never
`
	objs, warns, err := Decode([]byte(pi), "pi.yaml")
	if err != nil || len(warns) != 0 {
		t.Fatalf("decode: %v, warnings %v", err, warns)
	}
	j := objs[0].(*Job)
	if *j.Spec.Completions != 1 || *j.Spec.Parallelism != 1 || *j.Spec.BackoffLimit != 4 || j.Spec.CompletionMode != CompletionNonIndexed {
		t.Errorf("defaults: %+v", j.Spec)
	}
	if j.Spec.Selector.MatchLabels[LabelJobName] != "pi" || j.Spec.Template.Metadata.Labels[LabelJobName] != "pi" {
		t.Errorf("selector %v, template labels %v", j.Spec.Selector, j.Spec.Template.Metadata.Labels)
	}
	// A work queue: parallelism without completions stays without.
	objs, _, err = Decode([]byte(strings.Replace(pi, "backoffLimit: 4", "parallelism: 3", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if j := objs[0].(*Job); j.Spec.Completions != nil || *j.Spec.Parallelism != 3 {
		t.Errorf("work queue: completions %v, parallelism %v", j.Spec.Completions, *j.Spec.Parallelism)
	}
	for _, c := range []struct{ from, to, want string }{
		{"restartPolicy: Never", "restartPolicy: Always", `spec.template.spec.restartPolicy: unsupported value "Always": a job's pods must have restartPolicy Never or OnFailure`},
		{"backoffLimit: 4", "backoffLimit: -1", "spec.backoffLimit: must be greater than or equal to 0"},
		{"backoffLimit: 4", "completionMode: Indexed\n  parallelism: 2", "spec.completions: required when completionMode is Indexed"},
		{"backoffLimit: 4", "completions: 20000", "spec.completions: must be at most 10000"},
		{"backoffLimit: 4", "activeDeadlineSeconds: 0", "spec.activeDeadlineSeconds: must be greater than 0"},
	} {
		doc := strings.Replace(pi, c.from, c.to, 1)
		if _, _, err := Decode([]byte(doc), "pi.yaml"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.to, err, c.want)
		}
	}
}

func TestDecodeCronJob(t *testing.T) {
	const hello = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: busybox:1.28
            command: ["/bin/sh", "-c", "date; echo Hello"]
          restartPolicy: OnFailure
`
	objs, warns, err := Decode([]byte(hello), "hello.yaml")
	if err != nil || len(warns) != 0 {
		t.Fatalf("decode: %v, warnings %v", err, warns)
	}
	c := objs[0].(*CronJob)
	if c.Spec.ConcurrencyPolicy != ConcurrencyAllow || *c.Spec.SuccessfulJobsHistoryLimit != 3 || *c.Spec.FailedJobsHistoryLimit != 1 {
		t.Errorf("defaults: %+v", c.Spec)
	}
	at := time.Date(2026, 12, 2, 10, 7, 0, 0, time.UTC)
	j := JobFromCronJob(c, at)
	if j.Metadata.Name != "hello-29936767" || j.Spec.Selector.MatchLabels[LabelJobName] != j.Metadata.Name ||
		j.Metadata.OwnerReferences[0].Kind != KindCronJob || j.Metadata.Annotations[AnnotationCronJobTime] != "2026-12-02T10:07:00Z" {
		t.Errorf("job: %+v", j.Metadata)
	}
	if errs := Validate(j); len(errs) != 0 {
		t.Errorf("the job made does not validate: %v", errs)
	}
	for _, c := range []struct{ from, to, want string }{
		{`schedule: "* * * * *"`, `schedule: "61 * * * *"`, `spec.schedule: unparseable schedule "61 * * * *"`},
		{`schedule: "* * * * *"`, `schedule: ""`, `spec.schedule: required`},
		{`schedule: "* * * * *"`, "schedule: \"@hourly\"\n  timeZone: Mars/Olympus", `spec.timeZone: unknown time zone "Mars/Olympus"`},
		{`schedule: "* * * * *"`, "schedule: \"@hourly\"\n  concurrencyPolicy: Sometimes", `spec.concurrencyPolicy: unsupported value "Sometimes"`},
		{"restartPolicy: OnFailure", "restartPolicy: Always", "spec.jobTemplate.spec.template.spec.restartPolicy"},
	} {
		doc := strings.Replace(hello, c.from, c.to, 1)
		if _, _, err := Decode([]byte(doc), "hello.yaml"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.to, err, c.want)
		}
	}
}

func TestValidateUpdateJob(t *testing.T) {
	decode := func(cmd string) *Job {
		doc := `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"j"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i:1","command":["` + cmd + `"]}]}}}}`
		objs, _, err := Decode([]byte(doc), "")
		if err != nil {
			t.Fatal(err)
		}
		return objs[0].(*Job)
	}
	a, b := decode("a"), decode("a")
	b.Spec.Parallelism = ptr[int32](3)
	if errs := ValidateUpdate(a, b); len(errs) != 0 {
		t.Errorf("parallelism change: %v", errs)
	}
	if errs := ValidateUpdate(a, decode("b")); len(errs) != 1 || errs[0].Field != "spec.template" {
		t.Errorf("template change: %v", errs)
	}
}
