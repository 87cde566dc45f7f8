package cluster

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// TestJobsAndCronJobs drives batch/v1 with the real kubectl through three
// peers: a Job runs its pods to completion exactly as many times as asked
// (also when the peer running one is killed mid-run), kubectl wait and
// logs job/NAME work, an Indexed job gives each pod its index, a job
// failing past its backoffLimit is Failed, a CronJob makes one job per tick
// cluster-wide, and deleting a job or a cron job deletes what it owns.
func TestJobsAndCronJobs(t *testing.T) {
	peers := startCluster(t, 3, 211, "jb")
	loadWebImages(t, peers[0])
	ks := []func(...string) (string, error){kubectlFor(t, peers[0]), kubectlFor(t, peers[1]), kubectlFor(t, peers[2])}
	k1, k2, k3 := ks[0], ks[1], ks[2]
	must := kubectlMust(t)
	apply := kubectlApply(t)
	jsonpath := kubectlJSONPath(t)

	// A job of three completions, two at a time, through p1; waited for
	// and read through p2.
	apply(k1, `apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: pi
        image: example/web:1
        command: ["/app", "echo", "3.14159"]
`)
	must(k2("wait", "--for=condition=complete", "job/pi", "--timeout=120s"))
	// What p2 saw reaches the other peers within moments (a read on one
	// peer right after a write seen on another may not have it yet).
	seen(t, "job pi Complete 3/3 through p3", func() (bool, string) {
		out, _ := k3("get", "job", "pi")
		return strings.Contains(out, "Complete") && strings.Contains(out, "3/3"), out
	})
	// kubectl says on stderr which of the three pods it shows.
	seen(t, "logs job/pi through p3", func() (bool, string) {
		out, _ := k3("logs", "job/pi")
		return lastLine(out) == "3.14159", out
	})
	seen(t, "the 3 pods of job pi Succeeded through p1", func() (bool, string) {
		out, _ := k1("get", "pods", "-l", "batch.kubernetes.io/job-name=pi", "-o", "jsonpath={range .items[*]}{.status.phase}{\" \"}{end}")
		pods := strings.Fields(out)
		return len(pods) == 3 && !slices.ContainsFunc(pods, func(p string) bool { return p != "Succeeded" }), out
	})
	if got := jsonpath(k2, "get", "job", "pi", "-o", "jsonpath={.status.succeeded}"); got != "3" {
		t.Fatalf("status.succeeded %q, want 3", got)
	}

	// Indexed: each pod gets its index.
	apply(k2, `apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: example/web:1
        command: ["/app", "env", "JOB_COMPLETION_INDEX"]
`)
	must(k3("wait", "--for=condition=complete", "job/idx", "--timeout=120s"))
	seen(t, "job idx's completedIndexes 0-2 through p1", func() (bool, string) {
		out, _ := k1("get", "job", "idx", "-o", "jsonpath={.status.completedIndexes}")
		return strings.TrimSpace(out) == "0-2", out
	})
	var idx []string
	for _, name := range strings.Fields(jsonpath(k1, "get", "pods", "-l", "batch.kubernetes.io/job-name=idx", "-o", "jsonpath={.items[*].metadata.name}")) {
		idx = append(idx, strings.TrimSpace(must(k2("logs", name))))
	}
	slices.Sort(idx)
	if !slices.Equal(idx, []string{"0", "1", "2"}) {
		t.Fatalf("indexes the pods saw: %v", idx)
	}

	// Failing past backoffLimit 1: two pods fail, the job is Failed.
	must(k3("create", "job", "bad", "--image=example/web:1", "--", "/app", "fail", "3"))
	must(k1("patch", "job", "bad", "--type=merge", "-p", `{"spec":{"backoffLimit":1}}`))
	must(k1("wait", "--for=condition=failed", "job/bad", "--timeout=120s"))
	seen(t, "job bad BackoffLimitExceeded through p2", func() (bool, string) {
		out, _ := k2("describe", "job", "bad")
		return strings.Contains(out, "BackoffLimitExceeded"), out
	})
	seen(t, "job bad's 2 failed pods through p2", func() (bool, string) {
		out, _ := k2("get", "job", "bad", "-o", "jsonpath={.status.failed}")
		return strings.TrimSpace(out) == "2", out
	})

	// A peer dies mid-run: its pod is replaced, and the job still counts
	// exactly its completions.
	apply(k1, `apiVersion: batch/v1
kind: Job
metadata:
  name: slow
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: example/web:1
        command: ["/app", "sleep", "15", "slept"]
`)
	harness.Eventually(t, 90*time.Second, "both pods of job slow run", func() (bool, string) {
		out, _ := k1("get", "pods", "-l", "batch.kubernetes.io/job-name=slow", "-o", "wide")
		return strings.Count(out, "Running") == 2, out
	})
	nodes := strings.Fields(jsonpath(k1, "get", "pods", "-l", "batch.kubernetes.io/job-name=slow", "-o", "jsonpath={.items[*].spec.nodeName}"))
	// Kill a peer running one of them, and go on through one that lives.
	victim := slices.IndexFunc([]string{"jb1", "jb2", "jb3"}, func(name string) bool { return slices.Contains(nodes, name) })
	if victim < 0 {
		t.Fatalf("job slow's pods run on no known peer: %v", nodes)
	}
	peers[victim].Kill()
	alive := ks[(victim+1)%3]
	must(alive("wait", "--for=condition=complete", "job/slow", "--timeout=180s"))
	if got := jsonpath(alive, "get", "job", "slow", "-o", "jsonpath={.status.succeeded}"); got != "2" {
		t.Fatalf("job slow: status.succeeded %q, want exactly 2", got)
	}
	if out := must(alive("describe", "job", "slow")); !strings.Contains(out, "PodLost") {
		t.Fatalf("describe job slow: no PodLost event\n%s", out)
	}

	// A cron job makes one job per minute, whichever peer leads it.
	must(alive("create", "cronjob", "hello", "--image=example/web:1", "--schedule=* * * * *", "--", "/app", "echo", "hello"))
	var first string
	harness.Eventually(t, 150*time.Second, "cron job hello made a job that completed", func() (bool, string) {
		out, _ := alive("get", "jobs", "-o", "jsonpath={range .items[?(@.metadata.ownerReferences[0].name==\"hello\")]}{.metadata.name}={.status.succeeded}{\"\\n\"}{end}")
		for _, l := range strings.Fields(out) {
			if name, n, _ := strings.Cut(l, "="); n == "1" {
				first = name
				return true, out
			}
		}
		return false, out
	})
	if got := jsonpath(alive, "get", "cronjob", "hello", "-o", "jsonpath={.status.lastScheduleTime}"); got == "" {
		t.Fatal("cron job hello: no lastScheduleTime")
	}
	minute, err := strconv.ParseInt(strings.TrimPrefix(first, "hello-"), 10, 64)
	if err != nil || minute < time.Now().Add(-5*time.Minute).Unix()/60 {
		t.Fatalf("cron job's job %q is not named after a scheduled minute", first)
	}
	if out := must(alive("logs", "job/"+first)); lastLine(out) != "hello" {
		t.Fatalf("logs job/%s: %q", first, out)
	}

	// Deleting owners deletes what they own.
	must(alive("delete", "cronjob", "hello"))
	must(alive("delete", "job", "pi"))
	harness.Eventually(t, 60*time.Second, "the jobs and pods of cron job hello and job pi are gone", func() (bool, string) {
		jobs, _ := alive("get", "jobs", "-o", "name")
		pods, _ := alive("get", "pods", "-o", "name")
		return !strings.Contains(jobs, "hello-") && !strings.Contains(pods, "/hello-") && !strings.Contains(pods, "/pi-"), jobs + pods
	})
}

// seen waits up to 20 s for cond: what one peer showed, read through
// another.
func seen(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	harness.Eventually(t, 20*time.Second, what, cond)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
