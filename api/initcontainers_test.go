package api

import (
	"strings"
	"testing"
)

// podDoc is a Pod manifest whose spec is the YAML given (indented by 2).
func podDoc(spec string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n" + spec
}

// A pod with init containers, a sidecar, a startup probe, a grpc probe and
// lifecycle hooks decodes with Kubernetes' defaults and no warning.
func TestDecodeInitContainersAndHooks(t *testing.T) {
	doc := podDoc(`  initContainers:
  - {name: setup, image: example/web:1, args: [echo, hi]}
  - name: proxy
    image: example/web:1
    restartPolicy: Always
    startupProbe: {tcpSocket: {port: 8080}}
    lifecycle: {preStop: {sleep: {seconds: 2}}}
  containers:
  - name: app
    image: example/web:1
    imagePullPolicy: Never
    livenessProbe: {grpc: {port: 9090, service: app}}
    startupProbe: {httpGet: {port: 8080}, failureThreshold: 30, periodSeconds: 1}
    lifecycle:
      postStart: {exec: {command: [/app, echo, started]}}
      preStop: {httpGet: {port: 8080, path: /bye}}
`)
	objs, warns, err := Decode([]byte(doc), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	p := objs[0].(*Pod)
	if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[0].IsSidecar() || !p.Spec.InitContainers[1].IsSidecar() {
		t.Fatalf("init containers %+v", p.Spec.InitContainers)
	}
	sp := p.Spec.InitContainers[1].StartupProbe
	if sp.PeriodSeconds != 10 || sp.FailureThreshold != 3 || sp.TimeoutSeconds != 1 {
		t.Errorf("startup probe defaults %+v", sp)
	}
	app := p.Spec.Containers[0]
	if app.LivenessProbe.GRPC == nil || app.LivenessProbe.GRPC.Port != 9090 || *app.LivenessProbe.GRPC.Service != "app" {
		t.Errorf("grpc probe %+v", app.LivenessProbe)
	}
	if h := app.Lifecycle.PreStop.HTTPGet; h.Scheme != "HTTP" || h.Path != "/bye" {
		t.Errorf("preStop %+v", h)
	}
	if p.Spec.InitContainers[0].ImagePullPolicy != PullIfNotPresent || app.ImagePullPolicy != PullNever {
		t.Errorf("pull policies %q %q", p.Spec.InitContainers[0].ImagePullPolicy, app.ImagePullPolicy)
	}
}

// What Kubernetes refuses about init containers, hooks and the new probes
// is refused with the field named.
func TestValidateInitContainersAndHooks(t *testing.T) {
	for _, c := range []struct{ name, spec, want string }{
		{"init restartPolicy", `  initContainers: [{name: i, image: i:1, restartPolicy: OnFailure}]
  containers: [{name: c, image: i:1}]
`, `spec.initContainers[0].restartPolicy: unsupported value "OnFailure": supported values: Always`},
		{"app restartPolicy", `  containers: [{name: c, image: i:1, restartPolicy: Always}]
`, `spec.containers[0].restartPolicy: may not be set for a container that is not an init container`},
		{"duplicate across lists", `  initContainers: [{name: c, image: i:1}]
  containers: [{name: c, image: i:1}]
`, `spec.containers[0].name: duplicate container name "c" (also spec.initContainers[0])`},
		{"probe on init", `  initContainers: [{name: i, image: i:1, readinessProbe: {exec: {command: [x]}}}]
  containers: [{name: c, image: i:1}]
`, `spec.initContainers[0].readinessProbe: may not be set for an init container without restartPolicy Always`},
		{"lifecycle on init", `  initContainers: [{name: i, image: i:1, lifecycle: {preStop: {sleep: {seconds: 1}}}}]
  containers: [{name: c, image: i:1}]
`, `spec.initContainers[0].lifecycle: may not be set`},
		{"init image", `  initContainers: [{name: i}]
  containers: [{name: c, image: i:1}]
`, `spec.initContainers[0].image: required`},
		{"grpc port", `  containers: [{name: c, image: i:1, readinessProbe: {grpc: {port: 0}}}]
`, `spec.containers[0].readinessProbe.grpc.port: must be between 1 and 65535, inclusive, got 0`},
		{"grpc and exec", `  containers: [{name: c, image: i:1, readinessProbe: {grpc: {port: 1}, exec: {command: [x]}}}]
`, `spec.containers[0].readinessProbe: may not specify more than one handler, got exec and grpc`},
		{"startup successThreshold", `  containers: [{name: c, image: i:1, startupProbe: {tcpSocket: {port: 1}, successThreshold: 2}}]
`, `spec.containers[0].startupProbe.successThreshold: must be 1 for a startupProbe, got 2`},
		{"no hook handler", `  containers: [{name: c, image: i:1, lifecycle: {postStart: {}}}]
`, `spec.containers[0].lifecycle.postStart: must specify a handler: one of exec, httpGet, sleep, tcpSocket`},
		{"sleep past grace", `  terminationGracePeriodSeconds: 5
  containers: [{name: c, image: i:1, lifecycle: {preStop: {sleep: {seconds: 6}}}}]
`, `spec.containers[0].lifecycle.preStop.sleep.seconds: must be greater than or equal to 0 and less than or equal to terminationGracePeriodSeconds (5), got 6`},
		{"hook port name", `  containers: [{name: c, image: i:1, lifecycle: {preStop: {httpGet: {port: web}}}}]
`, `spec.containers[0].lifecycle.preStop.httpGet.port: the container has no port named "web"`},
		{"pull policy", `  initContainers: [{name: i, image: i:1, imagePullPolicy: Sometimes}]
  containers: [{name: c, image: i:1}]
`, `spec.initContainers[0].imagePullPolicy: unsupported value "Sometimes"`},
	} {
		_, _, err := Decode([]byte(podDoc(c.spec)), "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

// An unknown field under a hook or a grpc probe is still warned about.
func TestWarnUnknownHookField(t *testing.T) {
	_, warns, err := Decode([]byte(podDoc(`  containers:
  - name: c
    image: i:1
    lifecycle: {preStop: {sleep: {seconds: 1}, frobnicate: 1}}
    readinessProbe: {grpc: {port: 1, colour: red}}
`)), "")
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, w := range warns {
		all += w + "\n"
	}
	for _, want := range []string{"lifecycle.preStop.frobnicate", "readinessProbe.grpc.colour"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings %q lack %s", all, want)
		}
	}
}

// A pod's requests are the larger of its running set (apps and sidecars)
// and each init container's peak, as Kubernetes' scheduler counts them.
func TestPodRequests(t *testing.T) {
	c := func(cpu, mem string, sidecar bool) Container {
		ctr := Container{Resources: ResourceRequirements{Requests: ResourceList{"cpu": cpu, "memory": mem}}}
		if sidecar {
			ctr.RestartPolicy = ptr(RestartAlways)
		}
		return ctr
	}
	for _, tc := range []struct {
		name     string
		s        PodSpec
		cpu, mem int64
	}{
		{"apps only", PodSpec{Containers: []Container{c("100m", "1Mi", false), c("200m", "2Mi", false)}}, 300, 3 << 20},
		{"big init", PodSpec{InitContainers: []Container{c("1", "1Mi", false)}, Containers: []Container{c("100m", "8Mi", false)}}, 1000, 8 << 20},
		{"sidecar adds", PodSpec{InitContainers: []Container{c("100m", "1Mi", true)}, Containers: []Container{c("100m", "1Mi", false)}}, 200, 2 << 20},
		{"init after sidecar", PodSpec{InitContainers: []Container{c("500m", "1Mi", true), c("1", "1Mi", false)},
			Containers: []Container{c("100m", "1Mi", false)}}, 1500, 2 << 20},
	} {
		if cpu, mem := PodRequests(&tc.s); cpu != tc.cpu || mem != tc.mem {
			t.Errorf("%s: %d m, %d bytes; want %d, %d", tc.name, cpu, mem, tc.cpu, tc.mem)
		}
	}
}
