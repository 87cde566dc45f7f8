package crdt

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const sampleDeployment = `{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {
    "name": "web",
    "namespace": "shop",
    "uid": "6f1c",
    "resourceVersion": "12",
    "generation": 3,
    "creationTimestamp": "2024-05-01T10:00:00Z",
    "labels": {"app": "web"},
    "annotations": {"note": "hi"}
  },
  "spec": {
    "replicas": 3,
    "selector": {"matchLabels": {"app": "web"}},
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
    "template": {
      "metadata": {"labels": {"app": "web"}},
      "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
    }
  },
  "status": {"replicas": 3, "readyReplicas": 2}
}`

const sampleService = `{
  "apiVersion": "v1",
  "kind": "Service",
  "metadata": {"name": "web", "labels": {"app": "web"}},
  "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}]}
}`

const sampleNamespace = `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}, "status": {"phase": "Active"}}`

// normalize decodes a JSON document into generic values, without what
// Split leaves out.
func normalize(t *testing.T, doc string) any {
	t.Helper()
	var m map[string]any
	check(t, json.Unmarshal([]byte(doc), &m))
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "resourceVersion")
		delete(md, "generation")
	}
	return m
}

func TestSplitJoin(t *testing.T) {
	for _, tc := range []struct {
		key, doc string
		fields   []string
	}{
		{"Deployment/shop/web", sampleDeployment, []string{"apiVersion", "kind", "metadata.annotations", "metadata.creationTimestamp", "metadata.labels", "metadata.uid", "spec.replicas", "spec.selector", "spec.strategy", "spec.template"}},
		{"Service/default/web", sampleService, []string{"apiVersion", "kind", "metadata.labels", "spec.ports", "spec.selector", "spec.type"}},
		{"Namespace//shop", sampleNamespace, []string{"apiVersion", "kind"}},
	} {
		fields, err := Split([]byte(tc.doc))
		check(t, err)
		if got := sortedKeys(fields); !reflect.DeepEqual(got, tc.fields) {
			t.Errorf("%s: fields %v, want %v", tc.key, got, tc.fields)
		}
		s := New()
		s.Put(tc.key, fields, Stamp{Wall: 1, Node: "a"})
		got, ok := s.Get(tc.key)
		if !ok || !reflect.DeepEqual(got, fields) {
			t.Fatalf("%s: Get = %s, want %s", tc.key, got, fields)
		}
		doc, err := Join(tc.key, got)
		check(t, err)
		want := normalize(t, tc.doc)
		if tc.key == "Service/default/web" { // the namespace comes from the key
			want.(map[string]any)["metadata"].(map[string]any)["namespace"] = "default"
		}
		if back := normalize(t, string(doc)); !reflect.DeepEqual(back, want) {
			t.Errorf("%s: round trip\n got %s\nwant %v", tc.key, doc, want)
		}
		// Joined documents split into the same fields again.
		again, err := Split(doc)
		check(t, err)
		if !reflect.DeepEqual(again, fields) {
			t.Errorf("%s: split(join) = %s", tc.key, again)
		}
	}
}

// Removing a field from a manifest and applying it again removes it.
func TestReapplyWithoutField(t *testing.T) {
	const key = "Deployment/shop/web"
	f1, err := Split([]byte(sampleDeployment))
	check(t, err)
	s := New()
	s.Put(key, f1, Stamp{Wall: 1, Node: "a"})
	f2, err := Split([]byte(strings.Replace(sampleDeployment,
		`"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},`, "", 1)))
	check(t, err)
	s.Put(key, f2, Stamp{Wall: 2, Node: "a"})
	got, _ := s.Get(key)
	doc, err := Join(key, got)
	check(t, err)
	if strings.Contains(string(doc), "strategy") {
		t.Fatalf("strategy survived: %s", doc)
	}
	if !strings.Contains(string(doc), `"replicas":3`) {
		t.Fatalf("replicas lost: %s", doc)
	}
}

func TestSplitErrors(t *testing.T) {
	for _, doc := range []string{
		``, `null`, `[]`, `"x"`, `{`, `{"spec": 1}`, `{"spec": []}`, `{"metadata": "x"}`,
		`{"": 1}`, `{"spec.replicas": 1}`, `{"metadata.labels": {}}`,
	} {
		if f, err := Split([]byte(doc)); err == nil {
			t.Errorf("Split(%s) = %s, want an error", doc, f)
		}
	}
	f, err := Split([]byte(`{"kind":"Namespace","metadata":null,"spec":null,"data":{"a": 1}}`))
	check(t, err)
	if !reflect.DeepEqual(f, map[string]json.RawMessage{"kind": raw(`"Namespace"`), "data": raw(`{"a":1}`)}) {
		t.Errorf("Split = %s", f)
	}
}

func TestJoin(t *testing.T) {
	doc, err := Join("Namespace//shop", map[string]json.RawMessage{
		"": raw("true"), "apiVersion": raw(`"v1"`), "metadata.labels": raw(`null`), "spec.x": raw(`null`),
	})
	check(t, err)
	if string(doc) != `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}` {
		t.Errorf("Join = %s", doc)
	}
	for _, tc := range []struct {
		key    string
		fields map[string]json.RawMessage
	}{
		{"Deployment/web", nil},
		{"/default/web", nil},
		{"Deployment/default/", nil},
		{"Deployment/default/web", map[string]json.RawMessage{"spec.replicas": raw("{")}},
		{"Deployment/default/web", map[string]json.RawMessage{"spec": raw("{}")}},
	} {
		if doc, err := Join(tc.key, tc.fields); err == nil {
			t.Errorf("Join(%q, %s) = %s, want an error", tc.key, tc.fields, doc)
		}
	}
	kind, ns, name, err := SplitKey("Deployment/default/web")
	if kind != "Deployment" || ns != "default" || name != "web" || err != nil {
		t.Errorf("SplitKey = %q %q %q %v", kind, ns, name, err)
	}
}
