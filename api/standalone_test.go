package api

import (
	"strings"
	"testing"
)

// A Pod as `kubectl run once --image=example/web:1 --restart=Never -- /app
// echo hi` sends it decodes; what is wrong with one names its field.
func TestDecodeStandalonePod(t *testing.T) {
	const run = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"once","labels":{"run":"once"}},
"spec":{"containers":[{"name":"once","image":"example/web:1","args":["/app","echo","hi"],"resources":{}}],
"restartPolicy":"Never","dnsPolicy":"ClusterFirst"},"status":{}}`
	objs, _, err := Decode([]byte(run), "run")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := objs[0].(*Pod)
	if !ok || p.Spec.RestartPolicy != RestartNever || p.Metadata.Namespace != DefaultNamespace {
		t.Fatalf("decoded %#v", objs[0])
	}

	for _, c := range []struct{ name, doc, want string }{
		{"restart policy", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"restartPolicy":"Sometimes","containers":[{"name":"c","image":"i:1"}]}}`,
			`spec.restartPolicy: unsupported value "Sometimes"`},
		{"no containers", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}`, "spec.containers"},
		{"no name", `{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":{"containers":[{"name":"c","image":"i:1"}]}}`, "metadata.name: required"},
		{"reserved label", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"chorus.io/deployment":"web"}},"spec":{"containers":[{"name":"c","image":"i:1"}]}}`,
			"metadata.labels[chorus.io/deployment]: reserved"},
		{"apiVersion", `{"apiVersion":"apps/v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i:1"}]}}`,
			`apiVersion: "apps/v1" is not supported for Pod`},
	} {
		if _, _, err := Decode([]byte(c.doc), ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

// A bound pod keeps its node: an update may not change spec.nodeName.
func TestValidateUpdatePodNodeName(t *testing.T) {
	pod := func(node string) *Pod {
		return &Pod{Metadata: ObjectMeta{Name: "p", Namespace: DefaultNamespace},
			Spec: PodSpec{NodeName: node, Containers: []Container{{Name: "c", Image: "i:1"}}}}
	}
	if errs := ValidateUpdate(pod(""), pod("n1")); len(errs) != 0 {
		t.Errorf("binding an unbound pod: %v", errs)
	}
	if errs := ValidateUpdate(pod("n1"), pod("n1")); len(errs) != 0 {
		t.Errorf("same node: %v", errs)
	}
	for _, next := range []string{"n2", ""} {
		errs := ValidateUpdate(pod("n1"), pod(next))
		if len(errs) != 1 || errs[0].Field != "spec.nodeName" {
			t.Errorf("n1 -> %q: %v", next, errs)
		}
	}
}
