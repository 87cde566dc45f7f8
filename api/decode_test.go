package api

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// deployment returns a valid Deployment manifest with extra appended to the
// container (indented 8 spaces) and the given spec lines before template.
func deployment(name, container string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ` + name + `
spec:
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: example/web:1
` + container
}

const goodService = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
`

func TestDecodeRejectsBadManifests(t *testing.T) {
	tests := []struct {
		name     string
		manifest string
		want     []string // substrings of the error, one per expected error
	}{
		{
			name: "missing image",
			manifest: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
`,
			want: []string{"app.yaml: document 1 (Deployment web): spec.template.spec.containers[0].image: required (line 9)"},
		},
		{
			name:     "bad deployment name",
			manifest: deployment("Web_1", ""),
			want:     []string{`document 1 (Deployment Web_1): metadata.name: "Web_1" is not a valid deployment name: must consist of lowercase letters`},
		},
		{
			name:     "deployment name too long for pod names",
			manifest: deployment(strings.Repeat("a", 48), ""),
			want:     []string{`metadata.name: "` + strings.Repeat("a", 48) + `" is 48 characters; a deployment name may have at most 47, so that its pod names`},
		},
		{
			name:     "bad service name",
			manifest: strings.Replace(goodService, "name: web", "name: 1web", 1),
			want:     []string{`document 1 (Service 1web): metadata.name: "1web" is not a valid service name`},
		},
		{
			name:     "bad namespace name",
			manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Prod\n",
			want:     []string{`document 1 (Namespace Prod): metadata.name: "Prod" is not a valid namespace name`},
		},
		{
			name: "unsupported kind",
			manifest: "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + goodService + "---\n" +
				"apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: db\n",
			want: []string{`app.yaml: document 3: kind "PodDisruptionBudget" (policy/v1) is not supported; supported kinds: Namespace (v1), Deployment (apps/v1), DaemonSet (apps/v1), Service (v1)`},
		},
		{
			name:     "ingress without rules",
			manifest: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\n",
			want:     []string{"document 1 (Ingress x): spec: either `defaultBackend` or `rules` must be specified"},
		},
		{
			name:     "kind in the wrong case",
			manifest: "apiVersion: v1\nkind: service\nmetadata: {name: x}\n",
			want:     []string{`kind "service" (v1) is not supported; supported kinds: Namespace (v1), Deployment (apps/v1), DaemonSet (apps/v1), Service (v1), ConfigMap (v1), Secret (v1), Pod (v1), Job (batch/v1), CronJob (batch/v1), StatefulSet (apps/v1), PersistentVolumeClaim (v1), ServiceAccount (v1), Ingress (networking.k8s.io/v1), IngressClass (networking.k8s.io/v1), HorizontalPodAutoscaler (autoscaling/v2) (did you mean "Service"?)`},
		},
		{
			name:     "wrong apiVersion",
			manifest: strings.Replace(deployment("web", ""), "apps/v1", "extensions/v1beta1", 1),
			want:     []string{`document 1 (Deployment web): apiVersion: "extensions/v1beta1" is not supported for Deployment; use "apps/v1" (line 1)`},
		},
		{
			name:     "missing apiVersion",
			manifest: "kind: Namespace\nmetadata: {name: a}\n",
			want:     []string{`document 1 (Namespace a): apiVersion: required: Namespace is "v1"`},
		},
		{
			name:     "missing kind",
			manifest: "apiVersion: v1\nmetadata: {name: a}\n",
			want:     []string{`document 1 (a): kind: required`},
		},
		{
			name:     "not an object",
			manifest: "- a\n- b\n",
			want:     []string{`document 1: want an object with apiVersion and kind, got a list`},
		},
		{
			name: "selector mismatch",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:",
				"spec:\n  selector:\n    matchLabels: {app: api}\n  template:", 1),
			want: []string{`document 1 (Deployment web): spec.selector: does not match spec.template.metadata.labels (selector app=api, labels app=web)`},
		},
		{
			name: "bad matchExpressions operator",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:",
				"spec:\n  selector:\n    matchExpressions: [{key: app, operator: Equals, values: [web]}]\n  template:", 1),
			want: []string{`spec.selector.matchExpressions[0].operator: unsupported value "Equals": supported values: In, NotIn, Exists, DoesNotExist`},
		},
		{
			name:     "no template labels",
			manifest: strings.Replace(deployment("web", ""), "      labels:\n        app: web\n", "", 1),
			want:     []string{`spec.selector: required`},
		},
		{
			name:     "bad label",
			manifest: strings.Replace(deployment("web", ""), "app: web", "app: web server", 1),
			want:     []string{`spec.template.metadata.labels.app: invalid label value "web server"`},
		},
		{
			name:     "bad container port",
			manifest: deployment("web", "        ports:\n        - containerPort: 0\n        - containerPort: 70000\n"),
			want: []string{
				`spec.template.spec.containers[0].ports[0].containerPort: must be between 1 and 65535, inclusive, got 0 (line 15)`,
				`spec.template.spec.containers[0].ports[1].containerPort: must be between 1 and 65535, inclusive, got 70000 (line 16)`,
			},
		},
		{
			name:     "duplicate port names",
			manifest: deployment("web", "        ports:\n        - {name: http, containerPort: 80}\n        - {name: http, containerPort: 81}\n"),
			want:     []string{`spec.template.spec.containers[0].ports[1].name: duplicate port name "http" (also spec.template.spec.containers[0].ports[0])`},
		},
		{
			name:     "UDP is fine, SCTP is not",
			manifest: deployment("web", "        ports:\n        - {containerPort: 80, protocol: UDP}\n        - {containerPort: 81, protocol: SCTP}\n"),
			want:     []string{`ports[1].protocol: SCTP is not supported`},
		},
		{
			name:     "bad nodePort",
			manifest: strings.Replace(goodService, "spec:\n", "spec:\n  type: NodePort\n", 1) + "    nodePort: 80\n",
			want:     []string{`document 1 (Service web): spec.ports[0].nodePort: must be between 30000 and 32767, inclusive, got 80`},
		},
		{
			name:     "nodePort on a ClusterIP service",
			manifest: goodService + "    nodePort: 30080\n",
			want:     []string{`spec.ports[0].nodePort: may only be set when spec.type is NodePort`},
		},
		{
			name:     "ExternalName",
			manifest: strings.Replace(goodService, "spec:\n", "spec:\n  type: ExternalName\n", 1),
			want:     []string{`spec.type: "ExternalName" is not supported; supported types: ClusterIP, NodePort, LoadBalancer`},
		},
		{
			name:     "headless LoadBalancer",
			manifest: strings.Replace(goodService, "spec:\n", "spec:\n  type: LoadBalancer\n  clusterIP: None\n", 1),
			want:     []string{`spec.clusterIP: may not be None for a LoadBalancer service`},
		},
		{
			name:     "affinity",
			manifest: strings.Replace(goodService, "spec:\n", "spec:\n  sessionAffinity: Sticky\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n", 1),
			want: []string{`spec.sessionAffinity: unsupported value "Sticky": supported values: None, ClientIP`,
				`spec.sessionAffinityConfig.clientIP: may only be set when spec.sessionAffinity is ClientIP`,
				`spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be between 1 and 86400, inclusive, got 86401`},
		},
		{
			name:     "service without ports",
			manifest: "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n",
			want:     []string{`document 1 (Service web): spec.ports: required`},
		},
		{
			name:     "unnamed ports",
			manifest: goodService + "  - port: 81\n",
			want:     []string{`spec.ports[0].name: required when a service has more than one port`, `spec.ports[1].name: required`},
		},
		{
			name:     "service port out of range",
			manifest: strings.Replace(goodService, "port: 80", "port: 65536", 1),
			want:     []string{`spec.ports[0].port: must be between 1 and 65535, inclusive, got 65536`},
		},
		{
			name:     "bad memory quantity",
			manifest: deployment("web", "        resources:\n          limits:\n            memory: 1GB\n"),
			want:     []string{`document 1 (Deployment web): spec.template.spec.containers[0].resources.limits.memory: invalid memory quantity "1GB"`},
		},
		{
			name:     "milli memory",
			manifest: deployment("web", "        resources:\n          requests:\n            memory: 128m\n"),
			want:     []string{`resources.requests.memory: invalid memory quantity "128m": "m" means 1/1000 of a byte; did you mean "128Mi"?`},
		},
		{
			name:     "bad cpu quantity",
			manifest: deployment("web", "        resources:\n          requests:\n            cpu: half\n"),
			want:     []string{`resources.requests.cpu: invalid CPU quantity "half"`},
		},
		{
			name:     "requests above limits",
			manifest: deployment("web", "        resources:\n          requests: {cpu: 500m, memory: 1Gi}\n          limits: {cpu: 250m, memory: 1Gi}\n"),
			want:     []string{`resources.requests.cpu: 500m must be less than or equal to the cpu limit (250m)`},
		},
		{
			name:     "type error",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  replicas: three\n  template:", 1),
			want:     []string{`app.yaml: document 1 (Deployment web): spec.replicas: want an integer, got "three" (line 6)`},
		},
		{
			name:     "number for a string",
			manifest: deployment("web", "        env:\n        - name: PORT\n          value: 8080\n"),
			want:     []string{`spec.template.spec.containers[0].env[0].value: want a string, got 8080 (put it in quotes: "8080")`},
		},
		{
			name:     "yes for a string",
			manifest: strings.Replace(deployment("web", ""), "app: web", "app: yes", 1),
			want:     []string{`spec.template.metadata.labels.app: want a string, got true (YAML reads a bare y, n, yes, no, on, off, true or false as a boolean`},
		},
		{
			name:     "list for an object",
			manifest: strings.Replace(deployment("web", ""), "metadata:\n  name: web", "metadata:\n- name: web", 1),
			want:     []string{`metadata: want an object, got a list`},
		},
		{
			name:     "integer out of range",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  replicas: 3000000000\n  template:", 1),
			want:     []string{`spec.replicas: 3000000000 is out of range for a 32-bit integer`},
		},
		{
			name:     "yaml syntax error",
			manifest: goodService + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n   labels: x\n",
			want:     []string{`app.yaml: document 2: yaml: line 16: mapping values are not allowed in this context`},
		},
		{
			name:     "tab indentation",
			manifest: "apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: a\n",
			want:     []string{`document 1: yaml: line 4: found character that cannot start any token (YAML does not allow tabs for indentation)`},
		},
		{
			name:     "json syntax error",
			manifest: "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\",\n \"kind\": }\n",
			want:     []string{`app.yaml: document 2: json: line 3: invalid character '}' looking for beginning of value`},
		},
		{
			name: "two probe handlers",
			manifest: deployment("web", `        readinessProbe:
          exec: {command: [/bin/true]}
          httpGet: {port: 8080}
`),
			want: []string{`spec.template.spec.containers[0].readinessProbe: may not specify more than one handler, got exec and httpGet (line 14)`},
		},
		{
			name:     "probe without handler",
			manifest: deployment("web", "        livenessProbe:\n          periodSeconds: 5\n"),
			want:     []string{`spec.template.spec.containers[0].livenessProbe: must specify a handler: one of exec, httpGet, tcpSocket, grpc`},
		},
		{
			name:     "probe numbers",
			manifest: deployment("web", "        livenessProbe:\n          tcpSocket: {port: 80}\n          successThreshold: 2\n          timeoutSeconds: -1\n"),
			want: []string{
				`livenessProbe.timeoutSeconds: must be greater than or equal to 0, got -1`,
				`livenessProbe.successThreshold: must be 1 for a livenessProbe, got 2`,
			},
		},
		{
			name:     "probe port name unknown",
			manifest: deployment("web", "        readinessProbe:\n          httpGet: {port: http}\n"),
			want:     []string{`readinessProbe.httpGet.port: the container has no port named "http"`},
		},
		{
			name: "duplicate container names",
			manifest: deployment("web", `      - name: web
        image: example/sidecar:1
`),
			want: []string{`spec.template.spec.containers[1].name: duplicate container name "web" (also spec.template.spec.containers[0])`},
		},
		{
			name:     "no containers",
			manifest: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: []\n",
			want:     []string{`spec.template.spec.containers: required: a pod needs at least one container`},
		},
		{
			name:     "bad env name",
			manifest: deployment("web", "        env:\n        - name: 1PORT\n          value: x\n"),
			want:     []string{`env[0].name: "1PORT" is not a valid environment variable name`},
		},
		{
			name:     "negative replicas",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  replicas: -1\n  template:", 1),
			want:     []string{`spec.replicas: must be greater than or equal to 0, got -1`},
		},
		{
			name:     "restartPolicy Never in a deployment",
			manifest: strings.Replace(deployment("web", ""), "      containers:", "      restartPolicy: Never\n      containers:", 1),
			want:     []string{`spec.template.spec.restartPolicy: unsupported value "Never": a deployment's pods must have restartPolicy Always`},
		},
		{
			name:     "rollout that cannot progress",
			manifest: strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}\n  template:", 1),
			want:     []string{`spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when maxSurge is 0`},
		},
		{
			name:     "same object twice",
			manifest: goodService + "---\n" + goodService,
			want:     []string{`app.yaml: document 2 (Service web): metadata.name: Service "web" in namespace "default" is also defined in document 1 (line 15)`},
		},
		{
			name: "bad list item",
			manifest: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: ok}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata: {name: rs}
`,
			want: []string{`document 1: items[1]: kind "ReplicaSet" (apps/v1) is not supported; supported kinds: Namespace (v1), Deployment (apps/v1), DaemonSet (apps/v1), Service (v1), ConfigMap (v1), Secret (v1), Pod (v1), Job (batch/v1), CronJob (batch/v1), StatefulSet (apps/v1), PersistentVolumeClaim (v1), ServiceAccount (v1), Ingress (networking.k8s.io/v1), IngressClass (networking.k8s.io/v1), HorizontalPodAutoscaler (autoscaling/v2) (line 8)`},
		},
		{
			name:     "errors in several documents",
			manifest: "apiVersion: v1\nkind: Namespace\nmetadata: {name: A}\n---\n" + strings.Replace(goodService, "port: 80", "port: 0", 1),
			want: []string{
				`app.yaml: document 1 (Namespace A): metadata.name: "A" is not a valid namespace name`,
				`app.yaml: document 2 (Service web): spec.ports[0].port: must be between 1 and 65535, inclusive, got 0`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := Decode([]byte(tt.manifest), "app.yaml")
			if err == nil {
				t.Fatalf("Decode succeeded, want an error")
			}
			if objs != nil {
				t.Errorf("objs = %v, want nil", objs)
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Fatalf("error is %T, want *ManifestError", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain\n  %s\ngot:\n%s", w, msg)
				}
			}
			if len(me.Errors) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(me.Errors), len(tt.want), msg)
			}
			if lines := strings.Split(msg, "\n"); len(lines) != len(me.Errors) {
				t.Errorf("error has %d lines for %d errors", len(lines), len(me.Errors))
			}
		})
	}
}

func TestDecodeWithoutSourceOmitsIt(t *testing.T) {
	_, _, err := Decode([]byte(deployment("web", "")+"        imagePullPolicy: Sometimes\n"), "")
	want := `document 1 (Deployment web): spec.template.spec.containers[0].imagePullPolicy: unsupported value "Sometimes": supported values: Always, IfNotPresent, Never (line 14)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestFieldErrorFields(t *testing.T) {
	_, _, err := Decode([]byte(strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  replicas: three\n  template:", 1)), "a.yaml")
	var me *ManifestError
	if !errors.As(err, &me) || len(me.Errors) != 1 {
		t.Fatalf("err = %v", err)
	}
	want := FieldError{Source: "a.yaml", Doc: 1, Kind: "Deployment", Name: "web", Field: "spec.replicas", Reason: `want an integer, got "three"`, Line: 6}
	if me.Errors[0] != want {
		t.Errorf("got %#v\nwant %#v", me.Errors[0], want)
	}
}

func TestDecodeLimits(t *testing.T) {
	big := make([]byte, MaxManifestBytes+1)
	if _, _, err := Decode(big, "big.yaml"); err == nil || !strings.Contains(err.Error(), "big.yaml: manifest is 4194305 bytes; the limit is 4194304") {
		t.Errorf("oversized manifest: err = %v", err)
	}
	var b strings.Builder
	for i := range MaxManifestDocuments + 1 {
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns%d}\n---\n", i)
	}
	if _, _, err := Decode([]byte(b.String()), ""); err == nil || !strings.Contains(err.Error(), "more than 1000 documents") {
		t.Errorf("too many documents: err = %v", err)
	}
	b.Reset()
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range MaxManifestDocuments + 1 {
		fmt.Fprintf(&b, "- {apiVersion: v1, kind: Namespace, metadata: {name: ns%d}}\n", i)
	}
	if _, _, err := Decode([]byte(b.String()), ""); err == nil || !strings.Contains(err.Error(), "more than 1000 objects") {
		t.Errorf("too many items: err = %v", err)
	}
}

func TestDecodeGoodYAML(t *testing.T) {
	manifest := `# comment only document
---
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web, tier: front}
      annotations: {chorus.io/note: hi}
    spec:
      containers:
      - name: web
        image: example/web:1
        ports: [{containerPort: 8080, name: http}]
        resources:
          limits: {cpu: 1, memory: 64Mi}
        readinessProbe:
          httpGet: {port: http}
        livenessProbe:
          exec: {command: [/bin/true]}
      - name: sidecar
        image: example/sidecar
--- # the service
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP}
...
`
	objs, warnings, err := Decode([]byte(manifest), "shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if len(objs) != 3 {
		t.Fatalf("got %d objects, want 3", len(objs))
	}
	keys := []string{"Namespace//shop", "Deployment/shop/web", "Service/shop/web"}
	for i, o := range objs {
		if ObjectKey(o) != keys[i] {
			t.Errorf("object %d is %s, want %s", i, ObjectKey(o), keys[i])
		}
	}
	d := objs[1].(*Deployment)
	if d.APIVersion != "apps/v1" || d.Kind != "Deployment" {
		t.Errorf("TypeMeta = %+v", d.TypeMeta)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d", *d.Spec.Replicas)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Resources.Limits["cpu"] != "1" || c.Resources.Requests["cpu"] != "1" || c.Resources.Requests["memory"] != "64Mi" {
		t.Errorf("resources = %+v", c.Resources)
	}
	if c.ReadinessProbe.HTTPGet.Port != FromString("http") {
		t.Errorf("probe port = %+v", c.ReadinessProbe.HTTPGet.Port)
	}
	if c.ImagePullPolicy != PullIfNotPresent || d.Spec.Template.Spec.Containers[1].ImagePullPolicy != PullAlways {
		t.Errorf("imagePullPolicy defaults: %q, %q", c.ImagePullPolicy, d.Spec.Template.Spec.Containers[1].ImagePullPolicy)
	}
	s := objs[2].(*Service)
	if s.Spec.Ports[0].TargetPort != FromString("http") || s.Spec.Ports[1].TargetPort != FromInt(53) || s.Spec.Ports[1].Protocol != "UDP" {
		t.Errorf("service ports = %+v", s.Spec.Ports)
	}
}

func TestDecodeJSONStream(t *testing.T) {
	manifest := `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"},
 "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "web"}},
   "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}
null
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "a"},
 "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}`
	objs, warnings, err := Decode([]byte(manifest), "a.json")
	if err != nil || len(warnings) != 0 {
		t.Fatalf("err = %v, warnings = %q", err, warnings)
	}
	if len(objs) != 3 {
		t.Fatalf("got %d objects", len(objs))
	}
	if r := *objs[1].(*Deployment).Spec.Replicas; r != 0 {
		t.Errorf("replicas = %d, want 0 kept", r)
	}
	// Line numbers point into the stream.
	bad := strings.Replace(manifest, `"replicas": 0`, `"replicas": "0"`, 1)
	_, _, err = Decode([]byte(bad), "a.json")
	if err == nil || !strings.Contains(err.Error(), `a.json: document 2 (Deployment web): spec.replicas: want an integer, got "0" (line 3)`) {
		t.Errorf("err = %v", err)
	}
	// A single JSON document that is a YAML document too.
	objs, _, err = Decode([]byte(`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}`), "")
	if err != nil || len(objs) != 1 {
		t.Errorf("single JSON object: %v, %v", objs, err)
	}
	// YAML flow style that is not JSON.
	objs, _, err = Decode([]byte(`{apiVersion: v1, kind: Namespace, metadata: {name: c}}`), "")
	if err != nil || len(objs) != 1 {
		t.Errorf("YAML flow mapping: %v, %v", objs, err)
	}
}

func TestDecodeList(t *testing.T) {
	for name, manifest := range map[string]string{
		"yaml": `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: a}
- apiVersion: v1
  kind: Service
  metadata: {name: s, namespace: a}
  spec: {selector: {app: x}, ports: [{port: 1}]}
`,
		"json": `{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}},
  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "a"},
   "spec": {"selector": {"app": "x"}, "ports": [{"port": 1}]}}]}`,
		"typed list": `apiVersion: v1
kind: ServiceList
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: Service, metadata: {name: s, namespace: a}, spec: {selector: {app: x}, ports: [{port: 1}]}}
`,
	} {
		t.Run(name, func(t *testing.T) {
			objs, warnings, err := Decode([]byte(manifest), "")
			if err != nil || len(warnings) != 0 {
				t.Fatalf("err = %v, warnings = %q", err, warnings)
			}
			if len(objs) != 2 || ObjectKey(objs[0]) != "Namespace//a" || ObjectKey(objs[1]) != "Service/a/s" {
				t.Fatalf("objs = %v", objs)
			}
		})
	}
	_, warnings, err := Decode([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a, colour: red}\n"), "l.yaml")
	if err != nil || len(warnings) != 1 || warnings[0] != `l.yaml: document 1 (Namespace a): unknown field "items[0].metadata.colour" (line 6)` {
		t.Errorf("err = %v, warnings = %q", err, warnings)
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, m := range []string{"", "---\n", "# nothing\n---\n---\n", "\n\n", "null\n"} {
		objs, warnings, err := Decode([]byte(m), "e.yaml")
		if err != nil || len(objs) != 0 || len(warnings) != 1 || warnings[0] != "e.yaml: no objects found" {
			t.Errorf("Decode(%q) = %v, %q, %v", m, objs, warnings, err)
		}
	}
}

func TestDecodeWarnings(t *testing.T) {
	manifest := `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
  sessionAffinity: ClientIP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  managedFields: []
  Labels: {a: b}
spec:
  template:
    metadata:
      labels: {app: web}
    spec:
      volumes: [{name: data, emptyDir: {}}]
      securityContext: {runAsUser: 1000, sysctls: [{name: net.core.somaxconn, value: "1024"}]}
      containers:
      - name: web
        image: example/web:1
        imagePullSecretz: [{name: regcred}]
        imagePullPolicy: Always
        volumeMounts: [{name: data, mountPath: /data}]
        env:
        - name: A
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        resources:
          limits: {nvidia.com/gpu: 1}
        readinessProbe:
          httpGet: {port: 80}
          periodSecond: 5
status:
  replicas: 3
`
	objs, warnings, err := Decode([]byte(manifest), "app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 2 {
		t.Fatalf("got %d objects", len(objs))
	}
	want := []string{
		`app.yaml: document 2 (Deployment web): unknown field "metadata.Labels" (did you mean "labels"?) (line 14)`,
		`app.yaml: document 2 (Deployment web): unknown field "spec.template.spec.containers[0].imagePullSecretz" (line 25)`,
		`app.yaml: document 2 (Deployment web): unknown field "spec.template.spec.containers[0].readinessProbe.periodSecond" (did you mean "periodSeconds"?) (line 35)`,
		`app.yaml: document 2 (Deployment web): ignored field "spec.template.spec.securityContext.sysctls": chorus does not support it (line 21)`,
		`app.yaml: document 2 (Deployment web): ignored field "status": status is reported by chorus, not read from manifests (line 36)`,
		`app.yaml: document 2 (Deployment web): spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]: ignored: chorus knows only the resources cpu and memory (line 32)`,
	}
	if strings.Join(warnings, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
	d := objs[1].(*Deployment)
	if d.Status.Replicas != 0 {
		t.Errorf("status was read: %+v", d.Status)
	}
	if len(d.Metadata.Labels) != 0 {
		t.Errorf("Labels (capital L) was read as labels: %v", d.Metadata.Labels)
	}
}

func TestDecodeDuplicateKeyWarns(t *testing.T) {
	objs, warnings, err := Decode([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n"), "")
	if err != nil || len(objs) != 1 || objs[0].Meta().Name != "b" {
		t.Fatalf("objs = %v, err = %v", objs, err)
	}
	if len(warnings) != 1 || warnings[0] != `document 1: duplicate key "name"; the last value is used (line 5)` {
		t.Errorf("warnings = %q", warnings)
	}
}

func TestDefaults(t *testing.T) {
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: example/web:latest
        ports: [{containerPort: 80}]
        readinessProbe:
          httpGet: {port: 80}
        livenessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 3
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Namespace
metadata: {name: ns, namespace: other}
`
	objs, _, err := Decode([]byte(manifest), "")
	if err != nil {
		t.Fatal(err)
	}
	d := objs[0].(*Deployment)
	s := d.Spec
	if d.Metadata.Namespace != "default" {
		t.Errorf("namespace = %q", d.Metadata.Namespace)
	}
	if *s.Replicas != 1 || *s.RevisionHistoryLimit != 10 {
		t.Errorf("replicas %d, revisionHistoryLimit %d", *s.Replicas, *s.RevisionHistoryLimit)
	}
	if s.Selector == nil || len(s.Selector.MatchLabels) != 1 || s.Selector.MatchLabels["app"] != "web" {
		t.Errorf("selector = %+v", s.Selector)
	}
	if s.Strategy.Type != "RollingUpdate" || *s.Strategy.RollingUpdate.MaxUnavailable != FromString("25%") || *s.Strategy.RollingUpdate.MaxSurge != FromString("25%") {
		t.Errorf("strategy = %+v %+v", s.Strategy, s.Strategy.RollingUpdate)
	}
	ps := s.Template.Spec
	if ps.RestartPolicy != "Always" || *ps.TerminationGracePeriodSeconds != 30 {
		t.Errorf("restartPolicy %q, grace %d", ps.RestartPolicy, *ps.TerminationGracePeriodSeconds)
	}
	c := ps.Containers[0]
	if c.Ports[0].Protocol != "TCP" || c.ImagePullPolicy != "Always" {
		t.Errorf("container = %+v", c)
	}
	wantProbe := Probe{HTTPGet: &HTTPGetAction{Path: "/", Port: FromInt(80), Scheme: "HTTP"}, TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
	if got := *c.ReadinessProbe; got.TimeoutSeconds != 1 || got.PeriodSeconds != 10 || got.SuccessThreshold != 1 || got.FailureThreshold != 3 || *got.HTTPGet != *wantProbe.HTTPGet {
		t.Errorf("readinessProbe = %+v %+v", got, got.HTTPGet)
	}
	if c.LivenessProbe.PeriodSeconds != 3 {
		t.Errorf("livenessProbe periodSeconds = %d, want 3 kept", c.LivenessProbe.PeriodSeconds)
	}
	svc := objs[1].(*Service)
	if svc.Spec.Type != "ClusterIP" || svc.Spec.Ports[0].Protocol != "TCP" || svc.Spec.Ports[0].TargetPort != FromInt(80) || svc.Metadata.Namespace != "default" {
		t.Errorf("service = %+v", svc)
	}
	ns := objs[2].(*Namespace)
	if ns.Metadata.Namespace != "" || ns.APIVersion != "v1" || ns.Kind != "Namespace" {
		t.Errorf("namespace = %+v", ns)
	}
	// Defaulting twice changes nothing.
	again := DeepCopy(d)
	SetDefaults(again)
	if TemplateHash(&again.Spec.Template) != TemplateHash(&d.Spec.Template) {
		t.Error("SetDefaults is not idempotent")
	}
	// Recreate gets no rollingUpdate.
	r := &Deployment{Spec: DeploymentSpec{Strategy: DeploymentStrategy{Type: "Recreate"}}}
	SetDefaults(r)
	if r.Spec.Strategy.RollingUpdate != nil {
		t.Error("Recreate got rollingUpdate defaults")
	}
}

func TestExampleManifest(t *testing.T) {
	data, err := os.ReadFile("../examples/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, warnings, err := Decode(data, "app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings: %q", warnings)
	}
	if len(objs) != 4 {
		t.Fatalf("got %d objects, want a ConfigMap, a Deployment, a Service and an Ingress", len(objs))
	}
	if cm, ok := objs[0].(*ConfigMap); !ok || cm.Data["greeting"] == "" {
		t.Fatalf("first object: %+v", objs[0])
	}
	if _, ok := objs[3].(*Ingress); !ok {
		t.Fatalf("last object: %+v", objs[3])
	}
	objs = objs[1:3]
	d, ok := objs[0].(*Deployment)
	if !ok || ObjectKey(d) != "Deployment/default/web" || *d.Spec.Replicas != 3 {
		t.Fatalf("first object: %+v", objs[0])
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "example/web:1" || c.Ports[0].ContainerPort != 8080 || c.Env[0] != (EnvVar{Name: "PORT", Value: "8080"}) ||
		c.Env[1].ValueFrom == nil || c.Env[1].ValueFrom.ConfigMapKeyRef.Name != "web-config" {
		t.Errorf("container = %+v", c)
	}
	if p := c.ReadinessProbe; p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != FromInt(8080) || p.PeriodSeconds != 2 {
		t.Errorf("readinessProbe = %+v", p)
	}
	if p := c.LivenessProbe; p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port != FromInt(8080) {
		t.Errorf("livenessProbe = %+v", p)
	}
	if r := c.Resources; r.Requests["cpu"] != "50m" || r.Requests["memory"] != "32Mi" || r.Limits["cpu"] != "200m" || r.Limits["memory"] != "64Mi" {
		t.Errorf("resources = %+v", r)
	}
	s, ok := objs[1].(*Service)
	if !ok || ObjectKey(s) != "Service/default/web" || s.Spec.Type != "NodePort" || s.Spec.Ports[0].Port != 8080 || s.Spec.Ports[0].TargetPort != FromInt(8080) {
		t.Errorf("second object: %+v", objs[1])
	}
	pods := PodsForDeployment(d)
	if len(pods) != 3 || !SelectorMatches(s.Spec.Selector, pods[0].Metadata.Labels) {
		t.Errorf("the service does not select the deployment's pods")
	}
}

// The other examples decode without a warning.
func TestOtherExamples(t *testing.T) {
	for file, kinds := range map[string][]string{
		"batch.yaml":    {KindJob, KindCronJob},
		"stateful.yaml": {KindService, KindStatefulSet},
	} {
		data, err := os.ReadFile("../examples/" + file)
		if err != nil {
			t.Fatal(err)
		}
		objs, warnings, err := Decode(data, file)
		if err != nil || len(warnings) != 0 {
			t.Fatalf("%s: %v, warnings %q", file, err, warnings)
		}
		var got []string
		for _, o := range objs {
			got = append(got, o.GetKind())
		}
		if strings.Join(got, ",") != strings.Join(kinds, ",") {
			t.Errorf("%s: kinds %v, want %v", file, got, kinds)
		}
	}
}

// An ignored field that is empty (kubectl's `status: {}` of a claim
// template) warns of nothing; one with a value still does.
func TestEmptyIgnoredFieldsDoNotWarn(t *testing.T) {
	doc := []byte(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, finalizers: []}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: web:1}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
    status: {}
status: {replicas: 3}
`)
	_, warns, err := Decode(doc, "db.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(warns)
	if strings.Contains(got, "volumeClaimTemplates[0].status") || strings.Contains(got, "finalizers") || !strings.Contains(got, `ignored field "status"`) {
		t.Fatalf("warnings: %s", got)
	}
}
