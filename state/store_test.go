package state

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deployment is the Deployment "web" of namespace default (rolling, 25%
// surge and unavailable), as apply decodes it.
func deployment(replicas int32, image string) *api.Deployment {
	return decode(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 25%%, maxUnavailable: 25%%}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: %q}]
`, replicas, image))[0].(*api.Deployment)
}

// decode decodes a manifest as apply does; the manifests of these tests
// are constants, so an error is the test's own: it panics.
func decode(m string) []api.Object {
	objs, _, err := api.Decode([]byte(m), "test.yaml")
	if err != nil {
		panic(fmt.Sprintf("%v\n%s", err, m))
	}
	return objs
}

func TestStoreDurableAndAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.crdt")
	s, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	d := deployment(3, "web:1")
	res, err := s.Apply([]api.Object{d}, time.Now(), false)
	if err != nil || res[0].Action != "created" {
		t.Fatalf("apply: %+v %v", res, err)
	}
	res, _ = s.Apply([]api.Object{d}, time.Now(), false)
	if res[0].Action != "unchanged" {
		t.Fatalf("second apply: %+v", res)
	}
	*d.Spec.Replicas = 5
	res, _ = s.Apply([]api.Object{d}, time.Now(), false)
	if res[0].Action != "configured" {
		t.Fatalf("changed apply: %+v", res)
	}
	// A namespace that does not exist rejects the whole apply.
	other := deployment(1, "x:1")
	other.Metadata.Name, other.Metadata.Namespace = "other", "missing"
	svc := &api.Service{Metadata: api.ObjectMeta{Name: "svc", Namespace: "default"}}
	if _, err := s.Apply([]api.Object{svc, other}, time.Now(), false); err == nil {
		t.Fatal("apply into a missing namespace succeeded")
	}
	// Reopened from disk: the same state, nothing of the rejected apply.
	s2, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.Get(Key(api.KindDeployment, "default", "web"))
	if !ok || *got.(*api.Deployment).Spec.Replicas != 5 {
		t.Fatalf("reloaded %+v", got)
	}
	if _, ok := s2.Get(Key(api.KindService, "default", "svc")); ok {
		t.Fatal("service of a rejected apply was stored")
	}
	// Deleting a namespace deletes what it holds.
	ns := &api.Namespace{Metadata: api.ObjectMeta{Name: "dev"}}
	dd := deployment(1, "x:1")
	dd.Metadata.Namespace = "dev"
	if _, err := s2.Apply([]api.Object{ns, dd}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Remove([]string{Key(api.KindNamespace, "", "dev")}); err != nil {
		t.Fatal(err)
	}
	if len(s2.List(api.KindDeployment, "dev")) != 0 {
		t.Fatal("deployment outlived its namespace")
	}
}
