package api

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

func FuzzDecode(f *testing.F) {
	if example, err := os.ReadFile("../examples/app.yaml"); err == nil {
		f.Add(example)
	}
	for _, seed := range []string{
		"",
		"---\n---\n",
		deployment("web", "        ports: [{containerPort: 80, name: http}]\n        readinessProbe: {httpGet: {port: http}}\n"),
		goodService,
		goodIngress,
		strings.Replace(goodService, "spec:\n", "spec:\n  type: LoadBalancer\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n", 1),
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + goodService,
		`{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}}`,
		`{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}]}`,
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n",
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\n",
		strings.Replace(deployment("web", ""), "spec:\n  template:", "spec:\n  replicas: three\n  template:", 1),
		deployment("web", "        resources: {limits: {cpu: 1, memory: 1GB}, requests: {cpu: 2}}\n"),
		deployment("web", "        livenessProbe: {exec: {command: [x]}, tcpSocket: {port: 1}}\n"),
		securityDeployment("      hostUsers: false\n      securityContext: {runAsUser: 1000, runAsNonRoot: true, supplementalGroups: [1], fsGroup: 2, seccompProfile: {type: RuntimeDefault}}\n",
			"        securityContext: {privileged: false, readOnlyRootFilesystem: true, capabilities: {add: [cap_net_raw], drop: [ALL]}, seccompProfile: {type: Localhost, localhostProfile: p}}\n"),
		strings.Replace(goodService, "spec:\n", "spec:\n  type: NodePort\n", 1) + "    nodePort: 30001\n",
		"a: b\n c: d\n",
		"a: &a [*a]\n",
		"a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: &l {team: x}\n  annotations: *l\n",
		"metadata:\n  labels:\n    ? [a]\n    : b\n",
		"- 1\n- 2\n",
		"{\"kind\": ",
		"--- {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nimmutable: true\ndata: {a: b}\nbinaryData: {c: AAEC}\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: eA==}\nstringData: {tls.key: k}\n",
		deployment("web", "        env: [{name: A, valueFrom: {secretKeyRef: {name: s, key: a, optional: true}}}, {name: B, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}]\n        envFrom: [{prefix: P_, configMapRef: {name: c}}]\n        volumeMounts: [{name: v, mountPath: /v, subPath: a, readOnly: true}]\n      volumes: [{name: v, projected: {sources: [{configMap: {name: c, items: [{key: a, path: a}]}}, {downwardAPI: {items: [{path: n, fieldRef: {fieldPath: metadata.name}}]}}]}}]\n"),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, _, err := Decode(data, "fuzz.yaml")
		if err != nil {
			var me *ManifestError
			if !errors.As(err, &me) || len(me.Errors) == 0 {
				t.Fatalf("error %v is not a non-empty *ManifestError", err)
			}
			if objs != nil {
				t.Fatal("objs not nil with an error")
			}
			return
		}
		for _, o := range objs {
			if errs := Validate(o); len(errs) != 0 {
				t.Fatalf("decoded object does not validate: %v", errs)
			}
			// What Decode accepted, it accepts again as JSON, unchanged.
			b, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			again, _, err := Decode(b, "")
			if err != nil {
				t.Fatalf("re-decoding %s: %v", b, err)
			}
			b2, _ := json.Marshal(again[0])
			if len(again) != 1 || string(b2) != string(b) {
				t.Fatalf("round trip changed the object:\n%s\n%s", b, b2)
			}
			if d, ok := o.(*Deployment); ok {
				PodsForDeployment(d)
			}
		}
	})
}
