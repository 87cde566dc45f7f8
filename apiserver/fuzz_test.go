package apiserver

import (
	"net/http/httptest"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// FuzzRequestBody: whatever a client sends as an object or a patch, of
// any content type, is either applied or refused with an error; never a
// panic.
func FuzzRequestBody(f *testing.F) {
	for _, seed := range []string{
		`{"spec":{"replicas":2}}`,
		`[{"op":"replace","path":"/spec/replicas","value":3}]`,
		`[{"op":"copy","from":"/spec","path":"/metadata/x"}]`,
		"metadata:\n  labels: {a: b}\n",
		`{"spec":{"template":{"spec":{"containers":[{"name":"c","$patch":"delete"}]}}}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a"},"spec":{"bogus":1}}`,
		"\x0a\x02k8s\x00",
	} {
		for i := range 5 {
			f.Add(seed, uint8(i))
		}
	}
	types := []string{"application/json", "application/merge-patch+json", "application/json-patch+json",
		"application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	reg := newRegistry(Resources())
	res, _ := reg.resource("apps", "v1", "deployments")
	cur := deployment("a", 1, `{"x":"1"}`)
	s, err := New(newMem(), Options{Peer: "p"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string, typ uint8) {
		r := httptest.NewRequest("PATCH", "/apis/apps/v1/namespaces/default/deployments/a", strings.NewReader(body))
		r.Header.Set("Content-Type", types[int(typ)%len(types)])
		w := httptest.NewRecorder()
		b, err := s.readBody(w, r)
		if err != nil {
			return
		}
		out, err := applyPatch(r, res, &appsv1.Deployment{}, cur, b)
		if err != nil {
			return
		}
		if obj, _, err := decodeObject(r, res, out); err == nil {
			_ = checkIdentity(obj, res, "default", "a")
		}
	})
}
