package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"sigs.k8s.io/yaml"
)

func TestResourceAliases(t *testing.T) {
	cases := map[string]string{
		"po": "pods", "pod": "pods", "pods": "pods", "PODS": "pods", "Pod": "pods",
		"deploy": "deployments", "deployment": "deployments", "deployments": "deployments", "deployments.apps": "deployments", "deployment.apps": "deployments",
		"svc": "services", "service": "services", "services": "services",
		"ns": "namespaces", "namespace": "namespaces", "namespaces": "namespaces",
		"no": "nodes", "node": "nodes", "nodes": "nodes",
		"ev": "events", "event": "events", "events": "events",
	}
	for in, want := range cases {
		r, err := lookupResource(in)
		if err != nil || r.plural != want {
			t.Errorf("lookupResource(%q) = %q, %v; want %q", in, r.plural, err, want)
		}
	}
	if _, err := lookupResource("foo"); err == nil || err.Error() != `the server doesn't have a resource type "foo"` {
		t.Errorf("unknown type error: %v", err)
	}

	types, err := parseTypeList("all")
	if err != nil || len(types) != 4 || types[0].plural != "pods" || types[1].plural != "services" || types[2].plural != "deployments" || types[3].plural != "daemonsets" {
		t.Errorf("all = %v, %v", types, err)
	}
	types, err = parseTypeList("po,deploy,pods")
	if err != nil || len(types) != 2 {
		t.Errorf("po,deploy,pods = %v, %v", types, err)
	}

	reqs, multi, err := parseResourceArgs([]string{"deploy/web", "svc/web", "deployment/api"})
	if err != nil || !multi || len(reqs) != 2 || strings.Join(reqs[0].names, ",") != "web,api" || reqs[1].res.plural != "services" {
		t.Errorf("TYPE/NAME args = %+v, %v, %v", reqs, multi, err)
	}
	reqs, multi, err = parseResourceArgs([]string{"deployment", "web", "api"})
	if err != nil || multi || len(reqs) != 1 || len(reqs[0].names) != 2 {
		t.Errorf("TYPE NAME NAME = %+v, %v, %v", reqs, multi, err)
	}
	if _, _, err := parseResourceArgs([]string{"deploy", "svc/web"}); err == nil {
		t.Error("mixed forms accepted")
	}
}

func TestGetUnknownType(t *testing.T) {
	f := newFakeAgent(t)
	r := f.run("get", "foo")
	if r.code != 1 || r.stderr != "error: the server doesn't have a resource type \"foo\"\n" || r.stdout != "" {
		t.Fatalf("%+v", r)
	}
	if len(f.requests()) != 0 {
		t.Fatal("requests sent for an unknown type")
	}
}

func TestGetSeveralTypes(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/default/pods", runningPod("web-a", "n1", "10.88.11.5", 5*time.Second))
	f.list("GET /chorus/v1/namespaces/default/deployments", webDeployment(5*time.Second))
	f.list("GET /chorus/v1/namespaces/default/services")
	f.list("GET /chorus/v1/namespaces/default/daemonsets")
	r := f.run("get", "pods,deployments")
	want := "" +
		"NAME        READY   STATUS    RESTARTS   AGE\n" +
		"pod/web-a   1/1     Running   0          5s\n" +
		"\n" +
		"NAME                  READY   UP-TO-DATE   AVAILABLE   AGE\n" +
		"deployment.apps/web   2/3     3            2           5s\n"
	if r.stdout != want || r.code != 0 {
		t.Fatalf("got:\n%s\nwant:\n%s\nstderr: %s", r.stdout, want, r.stderr)
	}
	// `all` skips empty types (services here) and keeps kubectl's order.
	r = f.run("get", "all")
	if r.stdout != want {
		t.Fatalf("all got:\n%s", r.stdout)
	}
	// --show-kind prefixes a single type too.
	r = f.run("get", "deploy", "--show-kind")
	if !strings.Contains(r.stdout, "deployment.apps/web ") {
		t.Fatalf("show-kind: %s", r.stdout)
	}
}

func TestGetNoResources(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/dev/pods")
	f.list("GET /chorus/v1/pods")
	f.list("GET /chorus/v1/nodes")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "pods", "-n", "dev"}, "No resources found in dev namespace.\n"},
		{[]string{"get", "pods", "-A"}, "No resources found\n"},
		{[]string{"get", "nodes"}, "No resources found\n"},
	} {
		r := f.run(c.args...)
		if r.code != 0 || r.stdout != "" || r.stderr != c.want {
			t.Errorf("%v: %+v", c.args, r)
		}
	}
	// -o json of nothing is an empty List, as kubectl prints.
	r := f.run("get", "pods", "-n", "dev", "-o", "json")
	if !strings.Contains(r.stdout, `"items": []`) || r.stderr != "" {
		t.Errorf("empty json: %+v", r)
	}
}

func TestNamespaceFromEnvironment(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/staging/pods")
	t.Setenv("CHORUS_NAMESPACE", "staging")
	t.Setenv("CHORUS_SERVER", f.addr())
	r := runCLI(t, context.Background(), "", "get", "pods")
	if r.stderr != "No resources found in staging namespace.\n" {
		t.Fatalf("%+v", r)
	}
	// -n wins over the environment.
	f.list("GET /chorus/v1/namespaces/prod/pods")
	r = runCLI(t, context.Background(), "", "get", "pods", "-n", "prod")
	if r.stderr != "No resources found in prod namespace.\n" {
		t.Fatalf("%+v", r)
	}
}

func TestGetOutputJSON(t *testing.T) {
	f := newFakeAgent(t)
	a := runningPod("web-a", "n1", "10.88.11.5", time.Minute)
	b := crashingPod("web-b", time.Minute)
	f.list("GET /chorus/v1/namespaces/default/pods", a, b)
	f.reply("GET /chorus/v1/namespaces/default/pods/web-a", http.StatusOK, a)

	r := f.run("get", "pods", "-o", "json")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if !strings.HasPrefix(r.stdout, "{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n        {\n") {
		t.Fatalf("not indented by 4 as kubectl:\n%s", r.stdout)
	}
	var list struct {
		APIVersion string    `json:"apiVersion"`
		Kind       string    `json:"kind"`
		Items      []api.Pod `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != 2 || list.Items[1].Metadata.Name != "web-b" ||
		list.Items[1].Status.ContainerStatuses[0].State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("list: %+v", list)
	}

	// One named object prints as itself.
	r = f.run("get", "pod", "web-a", "-o", "json")
	var p api.Pod
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Kind != "Pod" || p.Metadata.Name != "web-a" {
		t.Fatalf("single: %v\n%s", err, r.stdout)
	}
	// A list of one is still a List.
	f.list("GET /chorus/v1/namespaces/one/pods", a)
	r = f.run("get", "pods", "-n", "one", "-o", "json")
	if !strings.Contains(r.stdout, `"kind": "List"`) {
		t.Fatalf("list of one:\n%s", r.stdout)
	}
}

func TestGetOutputYAMLAndName(t *testing.T) {
	f := newFakeAgent(t)
	d := webDeployment(time.Minute)
	f.reply("GET /chorus/v1/namespaces/default/deployments/web", http.StatusOK, d)
	f.list("GET /chorus/v1/namespaces/default/deployments", d)
	f.list("GET /chorus/v1/namespaces/default/services", webService(time.Minute))
	f.list("GET /chorus/v1/namespaces/default/pods", runningPod("web-a", "n1", "", time.Minute))
	f.list("GET /chorus/v1/namespaces", api.Namespace{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, Metadata: api.ObjectMeta{Name: "dev"}})

	r := f.run("get", "deploy", "web", "-o", "yaml")
	if !strings.HasPrefix(r.stdout, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n") {
		t.Fatalf("yaml:\n%s", r.stdout)
	}
	var back api.Deployment
	if err := yaml.Unmarshal([]byte(r.stdout), &back); err != nil || *back.Spec.Replicas != 3 {
		t.Fatalf("yaml round trip: %v %+v", err, back)
	}

	r = f.run("get", "deploy", "-o", "yaml")
	if !strings.HasPrefix(r.stdout, "apiVersion: v1\nitems:\n- apiVersion: apps/v1\n") || !strings.HasSuffix(r.stdout, "kind: List\nmetadata:\n  resourceVersion: \"\"\n") {
		t.Fatalf("yaml list:\n%s", r.stdout)
	}

	r = f.run("get", "pods,deploy,svc,ns", "-o", "name")
	want := "pod/web-a\ndeployment.apps/web\nservice/web\nnamespace/dev\n"
	if r.stdout != want {
		t.Fatalf("names:\n%s", r.stdout)
	}
}

func TestGetNamedNotFound(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("GET /chorus/v1/namespaces/default/pods/web-a", http.StatusOK, runningPod("web-a", "n1", "", time.Minute))
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/pods/nope", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `pods "nope" not found`)
	})
	r := f.run("get", "pods", "web-a", "nope")
	if r.code != 1 || !strings.HasPrefix(r.stdout, "NAME ") || !strings.Contains(r.stdout, "web-a") ||
		r.stderr != "Error from server (NotFound): pods \"nope\" not found\n" {
		t.Fatalf("%+v", r)
	}
	r = f.run("get", "pod/nope", "--ignore-not-found")
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("ignore-not-found: %+v", r)
	}
}

func TestGetLabelSelector(t *testing.T) {
	f := newFakeAgent(t)
	a := runningPod("web-a", "n1", "", time.Minute)
	b := runningPod("db-0", "n1", "", time.Minute)
	b.Metadata.Labels = map[string]string{"app": "db", "tier": "data"}
	f.list("GET /chorus/v1/namespaces/default/pods", a, b)
	for sel, want := range map[string]string{
		"app=web":             "pod/web-a\n",
		"app!=web":            "pod/db-0\n",
		"app==db,tier=data":   "pod/db-0\n",
		"tier":                "pod/db-0\n",
		"!tier":               "pod/web-a\n",
		"app in (web,db)":     "pod/db-0\npod/web-a\n",
		"app notin (web),app": "pod/db-0\n",
		"app=nothing":         "",
	} {
		r := f.run("get", "pods", "-l", sel, "-o", "name")
		if r.stdout != want || r.code != 0 {
			t.Errorf("-l %q: %+v", sel, r)
		}
	}
	r := f.run("get", "pods", "-l", "app=nothing")
	if r.stderr != "No resources found in default namespace.\n" {
		t.Errorf("empty selection: %+v", r)
	}
	r = f.run("get", "pods", "web-a", "-l", "app=web")
	if r.code != 1 || !strings.Contains(r.stderr, "selector") {
		t.Errorf("names and selector: %+v", r)
	}
}

func TestGetWatchPrintsChanges(t *testing.T) {
	f := newFakeAgent(t)
	var polls atomic.Int32
	// The fixtures are made once so only the appearance of web-b changes.
	a := runningPod("web-a", "n1", "", time.Minute)
	b := crashingPod("web-b", time.Minute)
	f.mux.HandleFunc("GET /chorus/v1/namespaces/stable/pods", func(w http.ResponseWriter, r *http.Request) {
		items := []any{a}
		if polls.Add(1) >= 2 {
			items = append(items, b) // a new pod appears; web-a is unchanged
		}
		_ = json.NewEncoder(w).Encode(api.List{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "List"}, Items: items})
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	r := runCLI(t, ctx, "", "-s", f.addr(), "get", "pods", "-n", "stable", "-w")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME ") || !strings.HasPrefix(lines[1], "web-a ") || !strings.HasPrefix(lines[2], "web-b ") {
		t.Fatalf("watch output:\n%s", r.stdout)
	}
	// The later row keeps the first table's column widths.
	if strings.Index(lines[2], "0/1") != strings.Index(lines[1], "1/1") {
		t.Fatalf("watch rows not aligned:\n%s", r.stdout)
	}
}

func TestGetWatchSeveralTypesRejected(t *testing.T) {
	f := newFakeAgent(t)
	r := f.run("get", "pods,svc", "-w")
	if r.code != 1 || !strings.Contains(r.stderr, "watch is only supported on individual resources") {
		t.Fatalf("%+v", r)
	}
}

func TestBadOutputFormat(t *testing.T) {
	f := newFakeAgent(t)
	r := f.run("get", "pods", "-o", "xml")
	if r.code != 1 || !strings.HasPrefix(r.stderr, `error: unable to match a printer suitable for the output format "xml"`) {
		t.Fatalf("%+v", r)
	}
}
