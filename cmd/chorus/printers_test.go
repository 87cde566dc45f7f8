package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func TestFormatAge(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{-5 * time.Second, "<invalid>"},
		{-500 * time.Millisecond, "0s"},
		{0, "0s"},
		{5 * time.Second, "5s"},
		{119 * time.Second, "119s"},
		{2 * time.Minute, "2m"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{9*time.Minute + 59*time.Second, "9m59s"},
		{25*time.Minute + 30*time.Second, "25m"},
		{179 * time.Minute, "179m"},
		{3 * time.Hour, "3h"},
		{2*time.Hour + 15*time.Minute, "135m"},
		{5*time.Hour + 15*time.Minute, "5h15m"},
		{10*time.Hour + 59*time.Minute, "10h"},
		{47 * time.Hour, "47h"},
		{3 * 24 * time.Hour, "3d"},
		{3*24*time.Hour + 4*time.Hour, "3d4h"},
		{20 * 24 * time.Hour, "20d"},
		{(2*365 + 30) * 24 * time.Hour, "2y30d"},
		{9 * 365 * 24 * time.Hour, "9y"},
	}
	for _, c := range cases {
		if got := formatAge(c.d); got != c.want {
			t.Errorf("formatAge(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	if got := ageSince(nil, time.Now()); got != "<unknown>" {
		t.Errorf("ageSince(nil) = %q", got)
	}
}

func TestSummarizePod(t *testing.T) {
	now := time.Now()
	mk := func(phase string, statuses ...api.ContainerStatus) *api.Pod {
		p := &api.Pod{Status: api.PodStatus{Phase: phase, ContainerStatuses: statuses}}
		for _, s := range statuses {
			p.Spec.Containers = append(p.Spec.Containers, api.Container{Name: s.Name})
		}
		return p
	}
	running := api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: &now}}
	waiting := func(r string) api.ContainerState {
		return api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: r}}
	}
	cases := []struct {
		name      string
		pod       *api.Pod
		wantReady string
		want      string
		restarts  int
	}{
		{"running", mk("Running", api.ContainerStatus{Name: "a", Ready: true, State: running}), "1/1", "Running", 0},
		{"crashloop", mk("Running", api.ContainerStatus{Name: "a", RestartCount: 5, State: waiting("CrashLoopBackOff")}), "0/1", "CrashLoopBackOff", 5},
		{"errimagepull", mk("Pending", api.ContainerStatus{Name: "a", State: waiting("ErrImagePull")}), "0/1", "ErrImagePull", 0},
		{"creating", mk("Pending", api.ContainerStatus{Name: "a", State: waiting("ContainerCreating")}), "0/1", "ContainerCreating", 0},
		{"pending without statuses", &api.Pod{Spec: api.PodSpec{Containers: []api.Container{{Name: "a"}}}, Status: api.PodStatus{Phase: "Pending"}}, "0/1", "Pending", 0},
		{"completed", mk("Succeeded", api.ContainerStatus{Name: "a", State: api.ContainerState{Terminated: &api.ContainerStateTerminated{Reason: "Completed"}}}), "0/1", "Completed", 0},
		{"exit code", mk("Failed", api.ContainerStatus{Name: "a", State: api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 3}}}), "0/1", "ExitCode:3", 0},
		{"signal", mk("Failed", api.ContainerStatus{Name: "a", State: api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 137, Signal: 9}}}), "0/1", "Signal:9", 0},
		{"pod reason", &api.Pod{Status: api.PodStatus{Phase: "Failed", Reason: "Evicted"}}, "0/0", "Evicted", 0},
		{"first container wins", mk("Running",
			api.ContainerStatus{Name: "a", State: waiting("ErrImagePull")},
			api.ContainerStatus{Name: "b", RestartCount: 2, State: waiting("CrashLoopBackOff")}), "0/2", "ErrImagePull", 2},
		{"one of two ready", mk("Running",
			api.ContainerStatus{Name: "a", Ready: true, State: running},
			api.ContainerStatus{Name: "b", State: running}), "1/2", "Running", 0},
		{"completed sidecar, main running", func() *api.Pod {
			p := mk("Running",
				api.ContainerStatus{Name: "a", Ready: true, State: running},
				api.ContainerStatus{Name: "b", State: api.ContainerState{Terminated: &api.ContainerStateTerminated{Reason: "Completed"}}})
			p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
			return p
		}(), "1/2", "Running", 0},
	}
	for _, c := range cases {
		s := summarizePod(c.pod)
		ready := fmt.Sprintf("%d/%d", s.ready, s.total)
		if s.reason != c.want || ready != c.wantReady || s.restarts != c.restarts {
			t.Errorf("%s: got %s %s restarts=%d, want %s %s restarts=%d", c.name, ready, s.reason, s.restarts, c.wantReady, c.want, c.restarts)
		}
	}
}

func TestGetPodsTable(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/default/pods",
		runningPod("web-a", "n1", "10.88.11.5", 3*time.Minute+12*time.Second),
		crashingPod("web-b", 2*time.Hour+10*time.Minute))
	r := f.run("get", "pods")
	want := "" +
		"NAME    READY   STATUS             RESTARTS      AGE\n" +
		"web-a   1/1     Running            0             3m12s\n" +
		"web-b   0/1     CrashLoopBackOff   4 (30s ago)   130m\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("code %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}

	r = f.run("get", "po", "-o", "wide")
	want = "" +
		"NAME    READY   STATUS             RESTARTS      AGE     IP           NODE\n" +
		"web-a   1/1     Running            0             3m12s   10.88.11.5   n1\n" +
		"web-b   0/1     CrashLoopBackOff   4 (30s ago)   130m    10.88.12.7   n2\n"
	if r.stdout != want {
		t.Fatalf("wide:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestGetAllNamespacesAddsNamespaceColumn(t *testing.T) {
	f := newFakeAgent(t)
	p := runningPod("api-0", "n1", "10.88.11.9", 5*time.Second)
	p.Metadata.Namespace = "dev"
	f.list("GET /chorus/v1/pods", runningPod("web-a", "n1", "10.88.11.5", 20*24*time.Hour), p)
	r := f.run("get", "pods", "-A")
	want := "" +
		"NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE\n" +
		"default     web-a   1/1     Running   0          20d\n" +
		"dev         api-0   1/1     Running   0          5s\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestGetDeploymentsTable(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/default/deployments", webDeployment(3*24*time.Hour+4*time.Hour))
	r := f.run("get", "deploy")
	want := "" +
		"NAME   READY   UP-TO-DATE   AVAILABLE   AGE\n" +
		"web    2/3     3            2           3d4h\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = f.run("get", "deployments.apps", "-o", "wide")
	want = "" +
		"NAME   READY   UP-TO-DATE   AVAILABLE   AGE    CONTAINERS   IMAGES                    SELECTOR\n" +
		"web    2/3     3            2           3d4h   web          docker.io/example/web:1   app=web\n"
	if r.stdout != want {
		t.Fatalf("wide got:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestGetServicesTable(t *testing.T) {
	f := newFakeAgent(t)
	plain := api.Service{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Metadata: api.ObjectMeta{Name: "db", Namespace: "default", CreationTimestamp: ago(90 * time.Second)},
		Spec:     api.ServiceSpec{Ports: []api.ServicePort{{Port: 5432}, {Port: 53, Protocol: "UDP"}}}}
	f.list("GET /chorus/v1/namespaces/default/services", webService(10*time.Minute), plain)
	r := f.run("get", "svc")
	want := "" +
		"NAME   TYPE        CLUSTER-IP   PORT(S)           ENDPOINTS                         AGE\n" +
		"db     ClusterIP   <none>       5432/TCP,53/UDP   <none>                            90s\n" +
		"web    NodePort    10.96.0.10   8080:31234/TCP    10.88.11.5:8080,10.88.12.7:8080   10m\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestServiceEndpointsTruncated(t *testing.T) {
	svc := webService(time.Minute)
	svc.Metadata.Annotations[annotationEndpoints] = "a:1,b:1,c:1,d:1,e:1"
	if got, want := serviceEndpoints(&svc), "a:1,b:1,c:1 + 2 more..."; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestGetNodesTable(t *testing.T) {
	f := newFakeAgent(t)
	n2 := testNode("n2", "127.0.0.12", 1, 4*time.Hour)
	n2.Spec.Unschedulable = true
	f.list("GET /chorus/v1/nodes", testNode("n1", "127.0.0.11", 12, 4*time.Hour), n2)
	r := f.run("get", "no")
	want := "" +
		"NAME   STATUS                     ADDRESS      LABELS   PODS   AGE   VERSION\n" +
		"n1     Alive                      127.0.0.11   zone=a   12     4h    v0.1.0\n" +
		"n2     Alive,SchedulingDisabled   127.0.0.12   zone=a   1      4h    v0.1.0\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}
	// -n does not apply to cluster-scoped types.
	if r := f.run("get", "nodes", "-n", "dev"); r.stdout != want {
		t.Fatalf("with -n: %q", r.stdout)
	}
}

func TestGetNamespacesAndEvents(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces", api.Namespace{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		Metadata: api.ObjectMeta{Name: "default", CreationTimestamp: ago(time.Hour)}})
	r := f.run("get", "ns")
	want := "NAME      STATUS   AGE\ndefault   Active   60m\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}

	ev := func(name, reason, typ, msg string, last time.Duration) api.Event {
		return api.Event{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Event"},
			Metadata:       api.ObjectMeta{Name: name, Namespace: "default"},
			InvolvedObject: api.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-a"},
			Reason:         reason, Type: typ, Message: msg, LastTimestamp: ago(last)}
	}
	f.list("GET /chorus/v1/namespaces/default/events",
		ev("e2", "Started", "Normal", "Started container web", 10*time.Second),
		ev("e1", "Pulled", "Normal", "Image already present", 20*time.Second),
		ev("e3", "BackOff", "Warning", "Back-off restarting failed container", 2*time.Second))
	r = f.run("get", "events")
	want = "" +
		"LAST SEEN   TYPE      REASON    OBJECT      MESSAGE\n" +
		"20s         Normal    Pulled    pod/web-a   Image already present\n" +
		"10s         Normal    Started   pod/web-a   Started container web\n" +
		"2s          Warning   BackOff   pod/web-a   Back-off restarting failed container\n"
	if r.stdout != want {
		t.Fatalf("events got:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestHumanSizeAndDigest(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 12345: "12.35kB", 5_100_000: "5.1MB", 266_000_000: "266MB", 1_500_000_000: "1.5GB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
	if got := shortDigest("sha256:abcdef0123456789abcdef"); got != "sha256:abcdef012345" {
		t.Errorf("shortDigest = %q", got)
	}
}

func TestWriteTableRemembersWidths(t *testing.T) {
	var b strings.Builder
	widths := make([]int, 3)
	if err := writeTable(&b, []string{"NAME", "STATUS", "AGE"}, [][]string{{"a-long-name", "Running", "5s"}}, widths); err != nil {
		t.Fatal(err)
	}
	if err := writeTable(&b, nil, [][]string{{"b", "Pending", "1s"}}, widths); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME          STATUS    AGE\n" +
		"a-long-name   Running   5s\n" +
		"b             Pending   1s\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
