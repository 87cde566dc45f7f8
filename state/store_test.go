package state

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deployment is a rolling deployment "web" in namespace default.
func deployment(replicas int32, image string, surge, unavailable string) *api.Deployment {
	d := &api.Deployment{
		Metadata: api.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: api.DeploymentSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: api.PodTemplateSpec{
				Metadata: api.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:     api.PodSpec{Containers: []api.Container{{Name: "web", Image: image}}},
			},
		},
	}
	su, un := api.FromString(surge), api.FromString(unavailable)
	d.Spec.Strategy = api.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &api.RollingUpdateDeployment{MaxSurge: &su, MaxUnavailable: &un}}
	return d
}

func decodeAll(t *testing.T, m string) []api.Object {
	t.Helper()
	objs, _, err := api.Decode([]byte(m), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestStoreDurableAndAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.crdt")
	s, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	d := deployment(3, "web:1", "25%", "25%")
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
	other := deployment(1, "x:1", "25%", "25%")
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
	dd := deployment(1, "x:1", "25%", "25%")
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
