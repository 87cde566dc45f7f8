package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// webDeploymentImage is webDeployment with the image of its container.
func webDeploymentImage(image string) api.Deployment {
	d := webDeployment(time.Hour)
	d.Spec.Template.Spec.Containers[0].Image = image
	return d
}

// deploymentPods returns d's pods (named and labelled by its template
// hash), the first ready of them Ready and the others still starting.
func deploymentPods(d api.Deployment, ready int) []api.Pod {
	pods := api.PodsForDeployment(&d)
	for i := range pods {
		p := &pods[i]
		if i < ready {
			p.Status = api.PodStatus{Phase: api.PodRunning,
				Conditions:        []api.PodCondition{{Type: "Ready", Status: "True"}},
				ContainerStatuses: []api.ContainerStatus{{Name: "web", Ready: true, State: api.ContainerState{Running: &api.ContainerStateRunning{}}}}}
		} else {
			p.Status = api.PodStatus{Phase: api.PodPending,
				Conditions:        []api.PodCondition{{Type: "Ready", Status: "False"}},
				ContainerStatuses: []api.ContainerStatus{{Name: "web", State: api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}
		}
	}
	return pods
}

// waitingPod makes p a pod not Ready whose container waits for reason.
func waitingPod(p api.Pod, reason, message string) api.Pod {
	p.Status.Phase = api.PodPending
	p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "False"}}
	p.Status.ContainerStatuses = []api.ContainerStatus{{Name: "web",
		State: api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: reason, Message: message}}}}
	return p
}

// rolloutStep is one state the fake agent shows `rollout status`.
type rolloutStep struct {
	dep  api.Deployment
	pods []api.Pod
}

// serveRollout makes the fake agent show the steps in turn, one per GET of
// the deployment (the pods GET that follows shows the same step); the last
// step stays. It returns how many times the deployment was read.
func serveRollout(f *fakeAgent, ns string, steps ...rolloutStep) func() int {
	var mu sync.Mutex
	reads, cur := 0, 0
	f.mux.HandleFunc("GET /chorus/v1/namespaces/"+ns+"/deployments/web", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur = min(reads, len(steps)-1)
		reads++
		d := steps[cur].dep
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(d)
	})
	f.mux.HandleFunc("GET /chorus/v1/namespaces/"+ns+"/pods", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		items := []any{}
		for _, p := range steps[cur].pods {
			items = append(items, p)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.List{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "List"}, Items: items})
	})
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return reads
	}
}

func TestRolloutStatusFollowsTheRollout(t *testing.T) {
	f := newFakeAgent(t)
	old := webDeploymentImage("docker.io/example/web:1")
	cur := webDeploymentImage("docker.io/example/web:2")
	oldPods := deploymentPods(old, 3)
	newPods := deploymentPods(cur, 3)
	stuck := waitingPod(newPods[2], "ErrImagePull", "image \"docker.io/example/web:2\"\nnot found in the cluster")
	reads := serveRollout(f, "default",
		rolloutStep{cur, oldPods},
		rolloutStep{cur, oldPods}, // unchanged: no new line
		rolloutStep{cur, append([]api.Pod{newPods[0]}, oldPods[1:]...)},
		rolloutStep{cur, append([]api.Pod{newPods[0], newPods[1], stuck}, oldPods[2])},
		rolloutStep{cur, []api.Pod{newPods[0], newPods[1], stuck}},
		rolloutStep{cur, newPods},
	)
	r := f.run("rollout", "status", "deployment/web")
	hash := api.TemplateHash(&cur.Spec.Template)
	want := `Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...
Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...
Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination (web-` + hash + `-2: ErrImagePull: image "docker.io/example/web:2" not found in the cluster)...
Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are available (web-` + hash + `-2: ErrImagePull: image "docker.io/example/web:2" not found in the cluster)...
deployment "web" successfully rolled out
`
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Fatalf("code %d stderr %q\ngot:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
	if n := reads(); n != 6 {
		t.Fatalf("deployment read %d times, want 6 (it stops once rolled out)", n)
	}
}

func TestRolloutStatusOnce(t *testing.T) {
	f := newFakeAgent(t)
	cur := webDeploymentImage("docker.io/example/web:2")
	serveRollout(f, "dev", rolloutStep{cur, deploymentPods(cur, 1)})
	r := f.run("-n", "dev", "rollout", "status", "deployment", "web", "--watch=false")
	if r.code != 1 || r.stdout != "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...\n" || r.stderr != "" {
		t.Fatalf("%+v", r)
	}

	f = newFakeAgent(t)
	serveRollout(f, "default", rolloutStep{cur, deploymentPods(cur, 3)})
	r = f.run("rollout", "status", "deploy/web", "-w=false")
	if r.code != 0 || r.stdout != "deployment \"web\" successfully rolled out\n" {
		t.Fatalf("%+v", r)
	}

	f = newFakeAgent(t)
	paused := cur
	paused.Spec.Paused = true
	serveRollout(f, "default", rolloutStep{paused, deploymentPods(webDeploymentImage("docker.io/example/web:1"), 3)})
	r = f.run("rollout", "status", "deploy/web", "--watch=false")
	if r.code != 1 || r.stdout != "Waiting for deployment \"web\" rollout to finish: rollout is paused (chorus rollout resume deployment/web)\n" {
		t.Fatalf("paused: %+v", r)
	}
}

func TestRolloutStatusTimeout(t *testing.T) {
	f := newFakeAgent(t)
	cur := webDeploymentImage("docker.io/example/web:2")
	serveRollout(f, "default", rolloutStep{cur, deploymentPods(cur, 2)})
	start := time.Now()
	r := f.run("rollout", "status", "deployment/web", "--timeout=1200ms")
	if r.code != 1 || r.stdout != "Waiting for deployment \"web\" rollout to finish: 2 of 3 updated replicas are available...\n" ||
		r.stderr != "error: timed out waiting for the condition\n" {
		t.Fatalf("%+v", r)
	}
	if d := time.Since(start); d < time.Second || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about 1.2s", d)
	}
}

func TestRolloutStatusErrors(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/deployments/gone", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "gone" not found`)
	})
	if r := f.run("rollout", "status", "deployment/gone"); r.code != 1 || r.stdout != "" ||
		r.stderr != "Error from server (NotFound): deployments.apps \"gone\" not found\n" {
		t.Fatalf("%+v", r)
	}
	for args, want := range map[string]string{
		"rollout status service/web":       "error: no rollout for resource type \"services\": only deployments have rollouts\n",
		"rollout status":                   "error: required resource not specified\n",
		"rollout status deployment":        "error: resource(s) were provided, but no name was specified\n",
		"rollout status deploy/a deploy/b": "error: chorus rollout status takes exactly one deployment, got 2\n",
		"rollout history svc/web":          "error: no rollout for resource type \"services\": only deployments have rollouts\n",
		"rollout undo pods web":            "error: no rollout for resource type \"pods\": only deployments have rollouts\n",
	} {
		if r := f.run(strings.Fields(args)...); r.code != 1 || r.stderr != want {
			t.Errorf("%s: %+v", args, r)
		}
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests, want only the one for deployment/gone", n)
	}
}

func TestRolloutState(t *testing.T) {
	d := webDeploymentImage("docker.io/example/web:2")
	pods := deploymentPods(d, 0)
	one := d
	one.Spec.Replicas = nil // defaults to 1
	pending := deploymentPods(one, 0)[0]
	pending.Status = api.PodStatus{Phase: api.PodPending, Reason: "Unschedulable", Message: "no peer\nhas room"}
	unscheduled := deploymentPods(one, 0)[0]
	unscheduled.Status = api.PodStatus{Phase: api.PodPending, Conditions: []api.PodCondition{
		{Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: "0/3 peers fit"}}}
	other := runningPod("api-0", "n1", "", time.Minute)
	other.Metadata.Labels = map[string]string{api.LabelDeployment: "api"}
	for _, tc := range []struct {
		name string
		dep  api.Deployment
		pods []api.Pod
		want string
		done bool
	}{
		{"crash loop", d, []api.Pod{waitingPod(pods[0], "CrashLoopBackOff", ""), pods[1], pods[2]},
			`Waiting for deployment "web" rollout to finish: 0 of 3 updated replicas are available (` + pods[0].Metadata.Name + `: CrashLoopBackOff)...`, false},
		{"creating is not stuck", d, pods,
			`Waiting for deployment "web" rollout to finish: 0 of 3 updated replicas are available...`, false},
		{"pending with a reason", one, []api.Pod{pending, other},
			`Waiting for deployment "web" rollout to finish: 0 of 1 updated replicas are available (` + pending.Metadata.Name + `: Unschedulable: no peer has room)...`, false},
		{"unscheduled", one, []api.Pod{unscheduled},
			`Waiting for deployment "web" rollout to finish: 0 of 1 updated replicas are available (` + pending.Metadata.Name + `: Unschedulable: 0/3 peers fit)...`, false},
		{"other deployments' pods do not count", one, append(deploymentPods(one, 1), other),
			`deployment "web" successfully rolled out`, true},
		{"a replica moving between peers counts once", d, append(deploymentPods(d, 3), deploymentPods(d, 0)[0]),
			`deployment "web" successfully rolled out`, true},
		{"no pods", d, nil,
			`Waiting for deployment "web" rollout to finish: 0 out of 3 new replicas have been updated...`, false},
	} {
		msg, done := rolloutState("web", &tc.dep, tc.pods)
		if msg != tc.want || done != tc.done {
			t.Errorf("%s: got %q %v\nwant %q %v", tc.name, msg, done, tc.want, tc.done)
		}
	}
}

// webRevisions are web's history: revision 1 without a change cause,
// revision 2 made by set image.
func webRevisions() []any {
	rev := func(n int64, image, cause string) api.ControllerRevision {
		d := webDeploymentImage(image)
		d.Spec.Template.Spec.Containers[0].Ports = []api.ContainerPort{{ContainerPort: 8080}}
		d.Spec.Template.Spec.Containers[0].Env = []api.EnvVar{{Name: "MODE", Value: "prod"}}
		r := api.ControllerRevision{TypeMeta: api.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
			Metadata: api.ObjectMeta{Name: "web-" + api.TemplateHash(&d.Spec.Template), Namespace: "default"},
			Data:     d.Spec.Template, Revision: n}
		if cause != "" {
			r.Metadata.Annotations = map[string]string{api.AnnotationChangeCause: cause}
		}
		return r
	}
	return []any{rev(1, "docker.io/example/web:1", ""),
		rev(2, "docker.io/example/web:2", "chorus set image deployment/web web=docker.io/example/web:2")}
}

func TestRolloutHistory(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/default/deployments/web/revisions", webRevisions()...)
	r := f.run("rollout", "history", "deployment/web")
	want := "deployment.apps/web\n" +
		"REVISION  CHANGE-CAUSE\n" +
		"1         <none>\n" +
		"2         chorus set image deployment/web web=docker.io/example/web:2\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d stderr %q\ngot:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}

	r = f.run("rollout", "history", "deploy", "web", "--revision=2")
	want = "deployment.apps/web with revision #2\n" +
		"Pod Template:\n" +
		"  Labels:  app=web\n" +
		"  Containers:\n" +
		"   web:\n" +
		"    Image:  docker.io/example/web:2\n" +
		"    Port:   8080/TCP\n" +
		"    Environment:\n" +
		"      MODE:  prod\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("code %d stderr %q\ngot:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}

	if r := f.run("rollout", "history", "deployment/web", "--revision", "7"); r.code != 1 || r.stdout != "" ||
		r.stderr != "error: unable to find the specified revision\n" {
		t.Fatalf("%+v", r)
	}

	r = f.run("rollout", "history", "deployment/web", "-o", "json")
	var list struct {
		Kind  string                   `json:"kind"`
		Items []api.ControllerRevision `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || list.Kind != "List" || len(list.Items) != 2 || list.Items[1].Revision != 2 {
		t.Fatalf("%v %+v", err, r)
	}
	r = f.run("rollout", "history", "deployment/web", "--revision=1", "-o", "yaml")
	if r.code != 0 || !strings.Contains(r.stdout, "kind: ControllerRevision\n") || !strings.Contains(r.stdout, "revision: 1\n") ||
		!strings.Contains(r.stdout, "image: docker.io/example/web:1\n") {
		t.Fatalf("%+v", r)
	}
	if r := f.run("rollout", "history", "deployment/web", "-o", "wide"); r.code != 1 || !strings.Contains(r.stderr, "allowed formats are: json,yaml") {
		t.Fatalf("%+v", r)
	}
}

func TestRolloutHistoryEmptyAndNotFound(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/dev/deployments/web/revisions")
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/deployments/web/revisions", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "web" not found`)
	})
	if r := f.run("-n", "dev", "rollout", "history", "deployment/web"); r.code != 0 || r.stdout != "deployment.apps/web\nNo rollout history found.\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("rollout", "history", "deployment/web"); r.code != 1 || r.stderr != "Error from server (NotFound): deployments.apps \"web\" not found\n" {
		t.Fatalf("%+v", r)
	}
}

// serveRolloutActions answers POST .../rollout in ns as the agent does for
// deployments that accept every action.
func serveRolloutActions(f *fakeAgent, ns string) {
	done := map[string]string{"undo": "rolled back", "restart": "restarted", "pause": "paused", "resume": "resumed", "image": "image updated"}
	f.mux.HandleFunc("POST /chorus/v1/namespaces/"+ns+"/deployments/{name}/rollout", func(w http.ResponseWriter, r *http.Request) {
		var req rolloutRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || done[req.Action] == "" {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "bad rollout request")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(applyResponse{Results: []applyResult{
			{Kind: "Deployment", Namespace: ns, Name: r.PathValue("name"), Action: done[req.Action]}}})
	})
}

// lastRollout returns the last request and its decoded body.
func lastRollout(t *testing.T, f *fakeAgent) (recorded, map[string]any) {
	t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		t.Fatal("no request")
	}
	req := reqs[len(reqs)-1]
	var body map[string]any
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatalf("body %q: %v", req.body, err)
	}
	return req, body
}

func TestRolloutActions(t *testing.T) {
	f := newFakeAgent(t)
	serveRolloutActions(f, "default")
	serveRolloutActions(f, "dev")
	for _, tc := range []struct {
		args, out, path string
		body            map[string]any
	}{
		{"rollout undo deployment/web", "deployment.apps/web rolled back\n", "/chorus/v1/namespaces/default/deployments/web/rollout",
			map[string]any{"action": "undo", "cause": "chorus rollout undo deployment/web"}},
		{"rollout undo deploy/web --to-revision=2", "deployment.apps/web rolled back\n", "/chorus/v1/namespaces/default/deployments/web/rollout",
			map[string]any{"action": "undo", "toRevision": 2.0, "cause": "chorus rollout undo deploy/web --to-revision=2"}},
		{"rollout restart deployment web", "deployment.apps/web restarted\n", "/chorus/v1/namespaces/default/deployments/web/rollout",
			map[string]any{"action": "restart", "cause": "chorus rollout restart deployment web"}},
		{"-n dev rollout pause deployment/web", "deployment.apps/web paused\n", "/chorus/v1/namespaces/dev/deployments/web/rollout",
			map[string]any{"action": "pause", "cause": "chorus rollout pause deployment/web --namespace=dev"}},
		{"rollout resume deployment/web", "deployment.apps/web resumed\n", "/chorus/v1/namespaces/default/deployments/web/rollout",
			map[string]any{"action": "resume", "cause": "chorus rollout resume deployment/web"}},
	} {
		r := f.run(strings.Fields(tc.args)...)
		if r.code != 0 || r.stdout != tc.out || r.stderr != "" {
			t.Errorf("%s: %+v", tc.args, r)
			continue
		}
		req, body := lastRollout(t, f)
		if req.method != http.MethodPost || req.path != tc.path || req.contentType != "application/json" {
			t.Errorf("%s: %s %s %s", tc.args, req.method, req.path, req.contentType)
		}
		if got, _ := json.Marshal(body); string(got) != mustJSON(t, tc.body) {
			t.Errorf("%s: body %s, want %s", tc.args, got, mustJSON(t, tc.body))
		}
	}
	r := f.run("rollout", "restart", "deploy", "web", "api")
	if r.code != 0 || r.stdout != "deployment.apps/web restarted\ndeployment.apps/api restarted\n" {
		t.Fatalf("two deployments: %+v", r)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRolloutActionErrors(t *testing.T) {
	f := newFakeAgent(t)
	var mu sync.Mutex
	answers := map[string]func(w http.ResponseWriter){}
	answer := func(action string, code int, reason, msg string) {
		mu.Lock()
		defer mu.Unlock()
		answers[action] = func(w http.ResponseWriter) { writeStatus(w, code, reason, msg) }
	}
	f.mux.HandleFunc("POST /chorus/v1/namespaces/default/deployments/web/rollout", func(w http.ResponseWriter, r *http.Request) {
		var req rolloutRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		a := answers[req.Action]
		mu.Unlock()
		a(w)
	})
	f.mux.HandleFunc("POST /chorus/v1/namespaces/default/deployments/gone/rollout", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", `deployments.apps "gone" not found`)
	})

	answer("pause", http.StatusConflict, "Conflict", `deployments.apps "web" is already paused`)
	if r := f.run("rollout", "pause", "deployment/web"); r.code != 1 || r.stdout != "" ||
		r.stderr != "Error from server (Conflict): deployments.apps \"web\" is already paused\n" {
		t.Fatalf("%+v", r)
	}
	answer("undo", http.StatusBadRequest, "BadRequest", "unable to find specified revision 7 in history")
	if r := f.run("rollout", "undo", "deployment/web", "--to-revision=7"); r.code != 1 ||
		r.stderr != "Error from server (BadRequest): unable to find specified revision 7 in history\n" {
		t.Fatalf("%+v", r)
	}
	// kubectl reports a rollback to the current template, and exits 0.
	answer("undo", http.StatusConflict, "Conflict", "skipped rollback (current template already matches revision 2)")
	if r := f.run("rollout", "undo", "deployment/web", "--to-revision=2"); r.code != 0 || r.stderr != "" ||
		r.stdout != "deployment.apps/web skipped rollback (current template already matches revision 2)\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("rollout", "restart", "deployment/gone"); r.code != 1 ||
		r.stderr != "Error from server (NotFound): deployments.apps \"gone\" not found\n" {
		t.Fatalf("%+v", r)
	}
	n := len(f.requests())
	if r := f.run("rollout", "undo", "deployment/web", "--to-revision=-1"); r.code != 1 || !strings.Contains(r.stderr, "must not be negative") {
		t.Fatalf("%+v", r)
	}
	if len(f.requests()) != n {
		t.Fatal("a request was sent for a bad --to-revision")
	}
}

func TestSetImage(t *testing.T) {
	f := newFakeAgent(t)
	serveRolloutActions(f, "default")
	r := f.run("set", "image", "deployment/web", "web=example/web:2", "side=example/proxy:3")
	if r.code != 0 || r.stdout != "deployment.apps/web image updated\n" || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	req, body := lastRollout(t, f)
	want := mustJSON(t, map[string]any{"action": "image", "cause": "chorus set image deployment/web web=example/web:2 side=example/proxy:3",
		"images": map[string]any{"side": "example/proxy:3", "web": "example/web:2"}})
	if got := mustJSON(t, body); got != want || req.path != "/chorus/v1/namespaces/default/deployments/web/rollout" {
		t.Fatalf("%s %s\nwant %s", req.path, got, want)
	}
	if r := f.run("set", "image", "deploy", "web", "*=example/web:3"); r.code != 0 || r.stdout != "deployment.apps/web image updated\n" {
		t.Fatalf("%+v", r)
	}
	if _, body := lastRollout(t, f); mustJSON(t, body["images"]) != `{"*":"example/web:3"}` {
		t.Fatalf("body %v", body)
	}

	n := len(f.requests())
	for args, wantErr := range map[string]string{
		"set image deployment/web example/web:2":    "error: at least one image update is required: CONTAINER=IMAGE, or *=IMAGE for every container\n",
		"set image deployment/web web=x extra":      "error: all resources must be specified before image changes: extra\n",
		"set image deployment/web web=":             "error: invalid image format: \"web=\": want CONTAINER=IMAGE\n",
		"set image web=x":                           "error: required resource not specified\n",
		"set image svc/web web=x":                   "error: cannot set the image of services: only deployments are supported\n",
		"set image deployment web=example/web:2":    "error: resource(s) were provided, but no name was specified\n",
		"set image example/web:2 web=example/web:2": "error: the server doesn't have a resource type \"example\"\n",
	} {
		if r := f.run(strings.Fields(args)...); r.code != 1 || r.stderr != wantErr {
			t.Errorf("%s: %+v", args, r)
		}
	}
	if len(f.requests()) != n {
		t.Fatal("a request was sent for bad arguments")
	}
}

func TestSetImageServerAnswers(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST /chorus/v1/namespaces/default/deployments/web/rollout", http.StatusOK, applyResponse{Results: []applyResult{
		{Kind: "Deployment", Namespace: "default", Name: "web", Action: "unchanged"}}})
	if r := f.run("set", "image", "deployment/web", "web=example/web:1"); r.code != 0 || r.stdout != "deployment.apps/web unchanged\n" {
		t.Fatalf("%+v", r)
	}
	f.mux.HandleFunc("POST /chorus/v1/namespaces/default/deployments/api/rollout", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusBadRequest, "BadRequest", `unable to find container named "x"`)
	})
	if r := f.run("set", "image", "deployment/api", "x=example/web:1"); r.code != 1 || r.stdout != "" ||
		r.stderr != "Error from server (BadRequest): unable to find container named \"x\"\n" {
		t.Fatalf("%+v", r)
	}
}

func TestCreateFromFiles(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("POST /chorus/v1/apply", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("create") != "true" {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "not a create")
			return
		}
		if strings.Contains(r.URL.Query().Get("source"), "exists") {
			writeStatus(w, http.StatusConflict, "AlreadyExists", `deployments.apps "web" already exists`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(applyResponse{Results: []applyResult{
			{Kind: "Deployment", Namespace: "default", Name: "web", Action: "created"},
			{Kind: "Service", Namespace: "default", Name: "web", Action: "created"}}})
	})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "web.yaml"), "apiVersion: apps/v1\nkind: Deployment\n")
	r := f.run("create", "-f", filepath.Join(dir, "web.yaml"))
	if r.code != 0 || r.stdout != "deployment.apps/web created\nservice/web created\n" || r.stderr != "" {
		t.Fatalf("%+v", r)
	}
	req := f.requests()[0]
	q, _ := url.ParseQuery(req.query)
	if req.method != http.MethodPost || req.path != "/chorus/v1/apply" || q.Get("create") != "true" ||
		q.Get("source") != filepath.Join(dir, "web.yaml") || string(req.body) != "apiVersion: apps/v1\nkind: Deployment\n" ||
		req.contentType != "application/yaml" {
		t.Fatalf("request %+v", req)
	}

	// A directory and stdin; the manifest whose object exists fails alone.
	sub := t.TempDir()
	writeFile(t, filepath.Join(sub, "1-exists.yaml"), "one")
	writeFile(t, filepath.Join(sub, "2-web.yaml"), "two")
	r = f.runStdin(`{"kind":"Service"}`, "create", "-f", sub, "-f", "-")
	if r.code != 1 || r.stderr != "Error from server (AlreadyExists): deployments.apps \"web\" already exists\n" ||
		r.stdout != strings.Repeat("deployment.apps/web created\nservice/web created\n", 2) {
		t.Fatalf("%+v", r)
	}
	var sources []string
	for _, req := range f.requests()[1:] {
		q, _ := url.ParseQuery(req.query)
		sources = append(sources, filepath.Base(q.Get("source"))+"@"+req.contentType)
	}
	if got := strings.Join(sources, "|"); got != "1-exists.yaml@application/yaml|2-web.yaml@application/yaml|STDIN@application/json" {
		t.Fatalf("sources %s", got)
	}
}

func TestCreateUsage(t *testing.T) {
	f := newFakeAgent(t)
	r := f.run("create")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: must specify -f FILENAME\n\nUsage:\n  chorus create -f FILENAME [flags]\n  chorus create [command]\n") ||
		!strings.Contains(r.stderr, "  deployment  Create a deployment with the specified name\n") {
		t.Fatalf("%+v", r)
	}
	if r := f.run("create", "bogus"); r.code != 1 || r.stderr != "error: unknown command \"bogus\" for \"chorus create\"\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("create", "-f", t.TempDir()); r.code != 1 || r.stderr != "error: no objects passed to create\n" {
		t.Fatalf("%+v", r)
	}
	if r := f.run("create", "deployment", "web", "--image=nginx", "-f", "x.yaml"); r.code != 1 || !strings.Contains(r.stderr, "unknown shorthand flag: 'f'") {
		t.Fatalf("%+v", r)
	}
	if len(f.requests()) != 0 {
		t.Fatal("requests sent")
	}
}
