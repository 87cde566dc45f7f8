package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"sigs.k8s.io/yaml"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExpandPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.yaml"), "b")
	writeFile(t, filepath.Join(dir, "a.yml"), "a")
	writeFile(t, filepath.Join(dir, "c.json"), "{}")
	writeFile(t, filepath.Join(dir, "README.md"), "no")
	writeFile(t, filepath.Join(dir, "sub", "d.yaml"), "not recursive")
	single := filepath.Join(t.TempDir(), "x.txt")
	writeFile(t, single, "explicit files are taken whatever their name")

	got, err := expandPaths([]string{dir, "-", single})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yaml"), filepath.Join(dir, "c.json"), "-", single}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if _, err := expandPaths([]string{filepath.Join(dir, "missing.yaml")}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing path: %v", err)
	}
}

func TestApplyPrintsResultsAndWarnings(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/apply", http.StatusOK, applyResponse{
		Results: []applyResult{
			{Kind: "Namespace", Name: "dev", Action: "unchanged"},
			{Kind: "Deployment", Namespace: "dev", Name: "web", Action: "created"},
			{Kind: "Service", Namespace: "dev", Name: "web", Action: "configured"},
		},
		Warnings: []string{`web.yaml: document 2: spec.template.spec.containers[0].resources: ignored`},
	})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web.yaml"), "apiVersion: apps/v1\nkind: Deployment\n")
	r := f.run("apply", "-f", filepath.Join(dir, "web.yaml"))
	want := "namespace/dev unchanged\ndeployment.apps/web created\nservice/web configured\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("%+v", r)
	}
	if r.stderr != "Warning: web.yaml: document 2: spec.template.spec.containers[0].resources: ignored\n" {
		t.Fatalf("stderr %q", r.stderr)
	}
	reqs := f.requests()
	if len(reqs) != 1 || reqs[0].method != "POST" || string(reqs[0].body) != "apiVersion: apps/v1\nkind: Deployment\n" {
		t.Fatalf("requests %+v", reqs)
	}
	q, _ := url.ParseQuery(reqs[0].query)
	if q.Get("source") != filepath.Join(dir, "web.yaml") {
		t.Fatalf("source = %q", q.Get("source"))
	}
}

func TestApplyDirectoryAndStdin(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/apply", http.StatusOK, applyResponse{})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "2-web.yaml"), "two")
	writeFile(t, filepath.Join(dir, "1-ns.yml"), "one")
	writeFile(t, filepath.Join(dir, "notes.txt"), "skip")
	r := f.runStdin(`{"kind":"Namespace"}`, "apply", "-f", dir, "-f", "-")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	var got []string
	for _, req := range f.requests() {
		q, _ := url.ParseQuery(req.query)
		got = append(got, filepath.Base(q.Get("source"))+"="+string(req.body)+"@"+req.contentType)
	}
	want := "1-ns.yml=one@application/yaml|2-web.yaml=two@application/yaml|STDIN={\"kind\":\"Namespace\"}@application/json"
	if strings.Join(got, "|") != want {
		t.Fatalf("got %v", got)
	}
}

func TestApplyErrorStatus(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("POST /chorus/v1/apply", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusBadRequest, "BadRequest", `error validating "web.yaml": document 1 (Deployment "web"): spec.replicas: must be >= 0`)
	})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web.yaml"), "x")
	r := f.run("apply", "-f", filepath.Join(dir, "web.yaml"))
	if r.code != 1 || r.stdout != "" ||
		r.stderr != "Error from server (BadRequest): error validating \"web.yaml\": document 1 (Deployment \"web\"): spec.replicas: must be >= 0\n" {
		t.Fatalf("%+v", r)
	}
}

func TestApplyUsageErrors(t *testing.T) {
	f := newFakeAgent(t)
	if r := f.run("apply"); r.code != 1 || r.stderr != "error: must specify -f FILENAME\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("apply", "-f", "/nonexistent/x.yaml"); r.code != 1 || r.stderr != "error: the path \"/nonexistent/x.yaml\" does not exist\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("apply", "-f", t.TempDir()); r.code != 1 || r.stderr != "error: no objects passed to apply\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("apply", "--bogus"); r.code != 1 || !strings.HasPrefix(r.stderr, "error: unknown flag: --bogus\nSee 'chorus apply --help' for usage.") {
		t.Fatalf("%+v", r)
	}
}

func TestErrorStatusWithoutJSONBody(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/pods", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "store unavailable", http.StatusInternalServerError)
	})
	r := f.run("get", "pods")
	if r.code != 1 || r.stderr != "Error from server (InternalError): store unavailable\n" {
		t.Fatalf("%+v", r)
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runCLI(t, context.Background(), "", "-s", addr, "get", "pods")
	wantPrefix := "error: cannot reach chorus agent at " + addr + ": dial tcp " + addr + ": connect: connection refused"
	if r.code != 1 || !strings.HasPrefix(r.stderr, wantPrefix) ||
		!strings.HasSuffix(r.stderr, " (is 'chorus agent' running? set -s or CHORUS_SERVER)\n") {
		t.Fatalf("%+v", r)
	}
}

func TestDeleteByManifest(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/delete", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Deployment", Namespace: "default", Name: "web", Action: "deleted"},
		{Kind: "Service", Namespace: "default", Name: "web", Action: "notfound"},
	}})
	r := f.runStdin("manifest", "delete", "-f", "-")
	if r.code != 1 || r.stdout != "deployment.apps \"web\" deleted\n" ||
		r.stderr != "Error from server (NotFound): services \"web\" not found\n" {
		t.Fatalf("%+v", r)
	}
	r = f.runStdin("manifest", "delete", "-f", "-", "--ignore-not-found")
	if r.code != 0 || r.stdout != "deployment.apps \"web\" deleted\n" || r.stderr != "" {
		t.Fatalf("ignore: %+v", r)
	}
}

func TestDeleteByName(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("DELETE /chorus/v1/namespaces/default/deployments/web", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Deployment", Namespace: "default", Name: "web", Action: "deleted"}}})
	f.reply("DELETE /chorus/v1/namespaces/dev", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Namespace", Name: "dev", Action: "deleted"}}})
	f.mux.HandleFunc("DELETE /chorus/v1/namespaces/default/deployments/gone", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "gone" not found`)
	})
	r := f.run("delete", "deployment", "web", "gone")
	if r.code != 1 || r.stdout != "deployment.apps \"web\" deleted\n" || r.stderr != "Error from server (NotFound): deployments.apps \"gone\" not found\n" {
		t.Fatalf("%+v", r)
	}
	r = f.run("delete", "deploy/web", "ns/dev")
	if r.code != 0 || r.stdout != "deployment.apps \"web\" deleted\nnamespace \"dev\" deleted\n" {
		t.Fatalf("%+v", r)
	}
	r = f.run("delete", "deploy/gone", "--ignore-not-found")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("delete", "deploy"); r.code != 1 || !strings.Contains(r.stderr, "no name was specified") {
		t.Fatalf("%+v", r)
	}
	if r := f.run("delete"); r.code != 1 || !strings.Contains(r.stderr, "you must provide one or more resources") {
		t.Fatalf("%+v", r)
	}
}

func TestDeleteBySelector(t *testing.T) {
	f := newFakeAgent(t)
	a := runningPod("web-a", "n1", "", time.Minute)
	b := runningPod("db-0", "n1", "", time.Minute)
	b.Metadata.Labels = map[string]string{"app": "db"}
	f.list("GET /chorus/v1/namespaces/default/pods", a, b)
	f.reply("DELETE /chorus/v1/namespaces/default/pods/web-a", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Pod", Namespace: "default", Name: "web-a", Action: "deleted"}}})
	r := f.run("delete", "pods", "-l", "app=web")
	if r.code != 0 || r.stdout != "pod \"web-a\" deleted\n" {
		t.Fatalf("%+v", r)
	}
	for _, req := range f.requests() {
		if req.method == "DELETE" && req.path != "/chorus/v1/namespaces/default/pods/web-a" {
			t.Fatalf("deleted %s", req.path)
		}
	}
	if r := f.run("delete", "no/n1"); r.code != 1 || !strings.Contains(r.stderr, "nodes cannot be deleted") {
		t.Fatalf("%+v", r)
	}
}

func TestCreateDeploymentDryRunYAML(t *testing.T) {
	r := runCLI(t, context.Background(), "", "create", "deployment", "web", "--image=docker.io/example/web:1",
		"--replicas=3", "--port=8080", "--dry-run=client", "-o", "yaml")
	want := `apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: web
  name: web
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  strategy: {}
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - image: docker.io/example/web:1
        name: web
        ports:
        - containerPort: 8080
        resources: {}
status: {}
`
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d stderr %q\ngot:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
	var d api.Deployment
	if err := yaml.Unmarshal([]byte(r.stdout), &d); err != nil || d.Spec.Template.Spec.Containers[0].Name != "web" {
		t.Fatal(err, d)
	}
}

func TestCreateDeploymentCommandAndNames(t *testing.T) {
	r := runCLI(t, context.Background(), "", "-n", "dev", "create", "deploy", "job", "--image=registry.local:5000/tools/busy_box@sha256:abc",
		"--dry-run=client", "-o", "json", "--", "sleep", "3600")
	var d api.Deployment
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("%v\n%+v", err, r)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if d.Metadata.Namespace != "dev" || c.Name != "busy-box" || strings.Join(c.Command, " ") != "sleep 3600" || *d.Spec.Replicas != 1 || len(c.Ports) != 0 {
		t.Fatalf("%+v", d)
	}
	for image, want := range map[string]string{"nginx": "nginx", "nginx:1.27": "nginx", "docker.io/example/web:1": "web",
		"localhost:5000/a.b/c_d:v": "c-d"} {
		if got := containerNameFor(image); got != want {
			t.Errorf("containerNameFor(%q) = %q, want %q", image, got, want)
		}
	}
	if r := runCLI(t, context.Background(), "", "create", "deployment", "web", "--dry-run=client"); r.code != 1 || !strings.Contains(r.stderr, `"image" not set`) {
		t.Fatalf("%+v", r)
	}
	if r := runCLI(t, context.Background(), "", "create", "deployment", "web", "--image=nginx", "--dry-run"); r.stdout != "deployment.apps/web created (dry run)\n" {
		t.Fatalf("%+v", r)
	}
}

func TestCreateDeploymentPosts(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/namespaces/default/deployments", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Deployment", Namespace: "default", Name: "web", Action: "created"}}})
	r := f.run("create", "deployment", "web", "--image=nginx")
	if r.code != 0 || r.stdout != "deployment.apps/web created\n" {
		t.Fatalf("%+v", r)
	}
	var d api.Deployment
	if err := json.Unmarshal(f.requests()[0].body, &d); err != nil || d.Kind != "Deployment" || d.Metadata.Namespace != "default" || d.Spec.Selector.MatchLabels["app"] != "web" {
		t.Fatalf("%v %+v", err, d)
	}
}

func TestScale(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("PUT /chorus/v1/namespaces/default/deployments/web/scale", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Deployment", Namespace: "default", Name: "web", Action: "scaled"}}})
	for _, args := range [][]string{{"scale", "deployment", "web", "--replicas=5"}, {"scale", "deploy/web", "--replicas", "5"}} {
		r := f.run(args...)
		if r.code != 0 || r.stdout != "deployment.apps/web scaled\n" {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	if body := string(f.requests()[0].body); body != `{"replicas":5}` {
		t.Fatalf("body %s", body)
	}
	if r := f.run("scale", "deploy/web"); r.code != 1 || !strings.Contains(r.stderr, "--replicas=COUNT is required") {
		t.Fatalf("%+v", r)
	}
	if r := f.run("scale", "svc/web", "--replicas=1"); r.code != 1 || !strings.Contains(r.stderr, "only deployments") {
		t.Fatalf("%+v", r)
	}
}

func TestDescribePod(t *testing.T) {
	f := newFakeAgent(t)
	p := crashingPod("web-b", 10*time.Minute)
	p.Spec.Containers[0].Ports = []api.ContainerPort{{ContainerPort: 8080}}
	p.Spec.Containers[0].Env = []api.EnvVar{{Name: "MODE", Value: "prod"}}
	p.Spec.Containers[0].Resources = api.ResourceRequirements{Limits: api.ResourceList{"memory": "128Mi", "cpu": "500m"}}
	p.Spec.Containers[0].LivenessProbe = &api.Probe{HTTPGet: &api.HTTPGetAction{Path: "/healthz", Port: api.FromInt(8080)}}
	p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "False"}, {Type: "PodScheduled", Status: "True"}}
	f.reply("GET /chorus/v1/namespaces/default/pods/web-b", http.StatusOK, p)
	f.list("GET /chorus/v1/namespaces/default/events", api.Event{
		Metadata:       api.ObjectMeta{Name: "e1", Namespace: "default"},
		InvolvedObject: api.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-b"},
		Reason:         "BackOff", Type: "Warning", Message: "Back-off restarting failed container", Count: 5,
		FirstTimestamp: ago(5 * time.Minute), LastTimestamp: ago(20 * time.Second),
		Source: api.EventSource{Component: "chorus", Host: "n2"},
	}, api.Event{
		Metadata:       api.ObjectMeta{Name: "other", Namespace: "default"},
		InvolvedObject: api.ObjectReference{Kind: "Pod", Namespace: "default", Name: "someone-else"},
		Reason:         "Pulled", Type: "Normal", LastTimestamp: ago(time.Second),
	})
	r := f.run("describe", "pod", "web-b")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	for _, want := range []string{
		"Name:           web-b\n",
		"Namespace:      default\n",
		"Node:           n2/127.0.0.11\n",
		"Labels:         app=web\n                chorus.io/deployment=web\n",
		"Status:         Running\n",
		"Controlled By:  Deployment/web\n",
		"Containers:\n  web:\n",
		"    Image:          docker.io/example/web:1\n",
		"    Port:           8080/TCP\n",
		"    State:          Waiting\n      Reason:       CrashLoopBackOff\n",
		"    Last State:     Terminated\n      Reason:       Error\n      Exit Code:    1\n",
		"    Ready:          False\n",
		"    Restart Count:  4\n",
		"    Limits:\n      cpu:     500m\n      memory:  128Mi\n",
		"    Liveness:  http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3\n",
		"    Environment:\n      MODE:  prod\n",
		"Conditions:\n  Type          Status\n  Ready         False\n  PodScheduled  True\n",
		"Events:\n  Type     Reason   Age               From    Message\n  ----     ------   ----              ----    -------\n  Warning  BackOff  20s (x5 over 5m)  chorus  Back-off restarting failed container\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "someone-else") || strings.Contains(r.stdout, "Pulled") {
		t.Errorf("events of another object shown:\n%s", r.stdout)
	}
	q, _ := url.ParseQuery(f.requests()[1].query)
	if q.Get("involvedKind") != "Pod" || q.Get("involvedName") != "web-b" {
		t.Errorf("events query %v", q)
	}
}

func TestDescribeDeploymentAndPrefix(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/deployments/we", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "we" not found`)
	})
	f.list("GET /chorus/v1/namespaces/default/deployments", webDeployment(time.Hour))
	f.list("GET /chorus/v1/namespaces/default/events")
	r := f.run("describe", "deploy", "we")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	for _, want := range []string{
		"Name:                   web\n",
		"Selector:               app=web\n",
		"Replicas:               3 desired | 3 updated | 3 total | 2 available | 1 unavailable\n",
		"StrategyType:           RollingUpdate\n",
		"RollingUpdateStrategy:  25% max unavailable, 25% max surge\n",
		"Pod Template:\n  Labels:  app=web\n  Containers:\n   web:\n    Image:        docker.io/example/web:1\n",
		"    Environment:  <none>\nEvents:           <none>\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r.stdout)
		}
	}
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/deployments/zzz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "zzz" not found`)
	})
	if r := f.run("describe", "deploy/zzz"); r.code != 1 || r.stderr != "Error from server (NotFound): deployments.apps \"zzz\" not found\n" {
		t.Fatalf("%+v", r)
	}
}

func TestDescribeServiceAndNode(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("GET /chorus/v1/namespaces/default/services/web", http.StatusOK, webService(time.Hour))
	f.reply("GET /chorus/v1/nodes/n1", http.StatusOK, testNode("n1", "127.0.0.11", 1, time.Hour))
	f.list("GET /chorus/v1/pods", runningPod("web-a", "n1", "10.88.11.5", time.Minute), runningPod("web-c", "n3", "", time.Minute))
	f.list("GET /chorus/v1/events")
	f.list("GET /chorus/v1/namespaces/default/events")
	r := f.run("describe", "svc", "web")
	for _, want := range []string{"Type:         NodePort\n", "IP:           10.96.0.10\n",
		"Port:         <unset>  8080/TCP\n", "TargetPort:   8080/TCP\n", "NodePort:     <unset>  31234/TCP\n",
		"Endpoints:    10.88.11.5:8080,10.88.12.7:8080\n", "Annotations:  <none>\n", "Events:       <none>\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("service: missing %q in:\n%s", want, r.stdout)
		}
	}
	r = f.run("describe", "node", "n1")
	for _, want := range []string{"Name:               n1\n", "Addresses:\n  InternalIP:  127.0.0.11\n", "  memory:  24Gi\n",
		"Kubelet Version:    v0.1.0\n", "Non-terminated Pods:  (1 in total)\n", "  default             web-a  60s\n", "Events:               <none>\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("node: missing %q in:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "web-c") {
		t.Errorf("pod of another node listed:\n%s", r.stdout)
	}
}

func TestLogs(t *testing.T) {
	f := newFakeAgent(t)
	old := runningPod("web-old", "n1", "", time.Hour)
	young := runningPod("web-young", "n1", "", time.Minute)
	other := runningPod("api-0", "n1", "", 2*time.Hour)
	other.Metadata.Labels = map[string]string{api.LabelDeployment: "api"}
	f.list("GET /chorus/v1/namespaces/default/pods", young, old, other)
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/pods/{name}/log", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "log of "+r.PathValue("name")+"\n")
	})
	r := f.run("logs", "deployment/web", "--tail", "10", "-c", "web")
	if r.code != 0 || r.stdout != "log of web-old\n" || r.stderr != "Found 2 pods, using pod/web-old\n" {
		t.Fatalf("%+v", r)
	}
	q, _ := url.ParseQuery(f.requests()[1].query)
	if q.Get("tailLines") != "10" || q.Get("container") != "web" || q.Get("follow") != "false" || q.Get("previous") != "false" {
		t.Fatalf("query %v", q)
	}
	r = f.run("logs", "-f", "-p", "web-young")
	if r.stdout != "log of web-young\n" {
		t.Fatalf("%+v", r)
	}
	reqs := f.requests()
	q, _ = url.ParseQuery(reqs[len(reqs)-1].query)
	if q.Get("follow") != "true" || q.Get("previous") != "true" || q.Has("tailLines") {
		t.Fatalf("query %v", q)
	}
	if r := f.run("logs", "deploy/nothing"); r.code != 1 || r.stderr != "error: deployment.apps/nothing has no pods\n" {
		t.Fatalf("%+v", r)
	}
}

func TestImageLoadAndList(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/images", http.StatusOK, map[string]any{"images": []imageInfo{
		{Name: "docker.io/example/web:1", Digest: "sha256:abcdef0123456789abcdef0123456789", Size: 5_100_000, Unpacked: 12_000_000}}})
	f.reply("GET /chorus/v1/images", http.StatusOK, map[string]any{"items": []imageInfo{
		{Name: "docker.io/example/web:1", Digest: "sha256:abcdef0123456789abcdef0123456789", Size: 5_100_000, Unpacked: 12_000_000, Peers: 3},
		{Name: "docker.io/library/busybox:1.36", Digest: "sha256:0123456789abcdef0123", Size: 4_261_000, Peers: 1}}})
	archive := filepath.Join(t.TempDir(), "web.tar")
	writeFile(t, archive, strings.Repeat("x", 4096))
	r := f.run("image", "load", archive)
	if r.code != 0 || r.stdout != "image docker.io/example/web:1 loaded (sha256:abcdef012345, 5.1MB, 12MB unpacked)\n" ||
		!strings.HasPrefix(r.stderr, archive+": sent 4.096kB in ") {
		t.Fatalf("%+v", r)
	}
	req := f.requests()[0]
	if req.contentType != "application/x-tar" || len(req.body) != 4096 {
		t.Fatalf("upload %s %d", req.contentType, len(req.body))
	}
	r = f.runStdin("tarball", "image", "load", "-")
	if r.code != 0 || string(f.requests()[1].body) != "tarball" {
		t.Fatalf("stdin: %+v", r)
	}
	r = f.run("image", "ls")
	want := "" +
		"NAME                             DIGEST                SIZE      UNPACKED   PEERS\n" +
		"docker.io/example/web:1          sha256:abcdef012345   5.1MB     12MB       3\n" +
		"docker.io/library/busybox:1.36   sha256:0123456789ab   4.261MB   -          1\n"
	if r.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestVersion(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("GET /chorus/v1/version", http.StatusOK, serverVersion{Version: "v0.1.0", Node: "n1"})
	r := f.run("version")
	if r.code != 0 || r.stdout != "Client Version: dev\nServer Version: v0.1.0 (node n1)\n" {
		t.Fatalf("%+v", r)
	}
	r = runCLI(t, context.Background(), "", "-s", "127.0.0.1:1", "version", "--client")
	if r.code != 0 || r.stdout != "Client Version: dev\n" {
		t.Fatalf("%+v", r)
	}
}
