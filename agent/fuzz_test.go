package agent

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/reconcile"
	"github.com/chorus-sh/chorus/state"
)

// FuzzStoredObject: whatever bytes a stored object holds (from the disk or
// from another peer), decoding and validating it never panics, and what
// validates can be turned into its pods without allocating beyond the
// replica limit.
func FuzzStoredObject(f *testing.F) {
	for _, seed := range []string{
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":2147483647,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:1"}]}}}}`,
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","namespace":"default"},"spec":{"ports":[{"port":80}]}}`,
		`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"dev"}}`,
		`{"kind":"DaemonSet","spec":{"template":{"spec":{"containers":[{}]}}}}`,
		`{"kind":"Deployment","spec":{"replicas":"many"}}`,
		`{"kind":"Pod"}`,
		`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"default"},"type":"kubernetes.io/tls","data":{"tls.crt":"eA==","tls.key":"!!"}}`,
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default"},"data":{"a":"b"},"binaryData":{"a":"AA=="}}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		o, err := state.Decode(raw)
		if err != nil {
			return
		}
		if d, ok := o.(*api.Deployment); ok {
			if d.Spec.Replicas != nil && *d.Spec.Replicas > 10000 {
				t.Fatalf("%d replicas validated", *d.Spec.Replicas)
			}
			// One peer takes at most 110 pods: Plan makes no more.
			_ = reconcile.Plan(reconcile.Desired{Deployments: []*api.Deployment{d}},
				reconcile.Observed{Nodes: []placement.Node{{Name: "n1", Labels: map[string]string{}}}}, "n1")
		}
		if _, err := json.Marshal(o); err != nil {
			t.Fatalf("a valid object does not encode: %v", err)
		}
	})
}

// FuzzSameOrigin: the cross-site checks never panic on any Host, Origin
// and Content-Type, and never let a simple-typed POST through.
func FuzzSameOrigin(f *testing.F) {
	f.Add("127.0.0.1:7070", "", "application/json")
	f.Add("evil.example", "http://evil.example", "text/plain")
	f.Add("[::1]:1", "null", "multipart/form-data; boundary=\"x\"")
	f.Add("n1.", "http://n1.", "TEXT/PLAIN ; charset=x")
	a := testAgent()
	h := a.checkSameOrigin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	f.Fuzz(func(t *testing.T, host, origin, ct string) {
		r, err := http.NewRequest(http.MethodPost, "http://x/api/v1/namespaces", strings.NewReader("{}"))
		if err != nil {
			t.Skip()
		}
		r.Host = host
		r.Header.Set("Origin", origin)
		r.Header.Set("Content-Type", ct)
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code == http.StatusOK && browserSimpleType(ct) {
			t.Fatalf("POST with Content-Type %q passed", ct)
		}
	})
}
