package state

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func newTestStore(t *testing.T, node string) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.crdt"), node)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// linkedStores returns two stores whose writes are delivered to each other
// when flush is called.
func linkedStores(t *testing.T) (a, b *Store, flush func()) {
	a, b = newTestStore(t, "a"), newTestStore(t, "b")
	deliver := func(from, to *Store) {
		for {
			select {
			case d := <-from.Local():
				if _, err := to.Merge(d); err != nil {
					t.Fatal(err)
				}
			default:
				return
			}
		}
	}
	return a, b, func() {
		t.Helper()
		deliver(a, b)
		deliver(b, a)
	}
}

func getDeployment(t *testing.T, s *Store, name string) *api.Deployment {
	t.Helper()
	o, ok := s.Get(Key(api.KindDeployment, "default", name))
	if !ok {
		t.Fatalf("deployment %s not found", name)
	}
	return o.(*api.Deployment)
}

// revisions returns image by revision number, and the current revision.
func revisions(t *testing.T, s *Store) (map[int64]string, int64) {
	t.Helper()
	revs, cur := s.History(getDeployment(t, s, "web"))
	out := map[int64]string{}
	for _, r := range revs {
		out[r.Revision] = r.Data.Spec.Containers[0].Image
	}
	return out, cur
}

func TestHistoryFollowsTemplateChanges(t *testing.T) {
	s := newTestStore(t, "n1")
	now := time.Now()
	apply := func(d *api.Deployment) {
		t.Helper()
		if _, err := s.Apply([]api.Object{d}, now, false); err != nil {
			t.Fatal(err)
		}
	}
	apply(deployment(3, "web:1"))
	apply(deployment(5, "web:1")) // a scale is no new revision
	if revs, cur := revisions(t, s); len(revs) != 1 || cur != 1 || revs[1] != "web:1" {
		t.Fatalf("after a scale: %v current %d", revs, cur)
	}
	d2 := deployment(5, "web:2")
	d2.Metadata.Annotations = map[string]string{api.AnnotationChangeCause: "ship v2"}
	apply(d2)
	revs, cur := revisions(t, s)
	if len(revs) != 2 || cur != 2 || revs[2] != "web:2" {
		t.Fatalf("after web:2: %v current %d", revs, cur)
	}
	hist, _ := s.History(getDeployment(t, s, "web"))
	if hist[1].Metadata.Annotations[api.AnnotationChangeCause] != "ship v2" {
		t.Fatalf("change cause not recorded: %+v", hist[1].Metadata)
	}

	// An update back to revision 1's template (kubectl rollout undo's
	// patch, through the Kubernetes API) makes it revision 3.
	base := getDeployment(t, s, "web")
	back := getDeployment(t, s, "web")
	back.Spec.Template = hist[0].Data
	if _, err := s.Update(base, back, now); err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, s, "web")
	if d.Spec.Template.Spec.Containers[0].Image != "web:1" || *d.Spec.Replicas != 5 {
		t.Fatalf("after undo: image %s replicas %d", d.Spec.Template.Spec.Containers[0].Image, *d.Spec.Replicas)
	}
	if revs, cur := revisions(t, s); len(revs) != 2 || cur != 3 || revs[3] != "web:1" || revs[2] != "web:2" {
		t.Fatalf("after undo: %v current %d", revs, cur)
	}
}

func TestHistoryLimitAndRecreate(t *testing.T) {
	s := newTestStore(t, "n1")
	now := time.Now()
	for _, img := range []string{"web:1", "web:2", "web:3", "web:4", "web:5"} {
		d := deployment(1, img)
		limit := int32(2)
		d.Spec.RevisionHistoryLimit = &limit
		if _, err := s.Apply([]api.Object{d}, now, false); err != nil {
			t.Fatal(err)
		}
	}
	revs, cur := revisions(t, s)
	if len(revs) != 3 || cur != 5 || revs[3] != "web:3" || revs[5] != "web:5" {
		t.Fatalf("history with limit 2: %v current %d", revs, cur)
	}
	// A deleted and re-created deployment starts a new history.
	if _, err := s.Remove([]string{Key(api.KindDeployment, "default", "web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply([]api.Object{deployment(1, "web:9")}, now, false); err != nil {
		t.Fatal(err)
	}
	if revs, cur := revisions(t, s); len(revs) != 1 || cur != 1 || revs[1] != "web:9" {
		t.Fatalf("re-created: %v current %d", revs, cur)
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	s := newTestStore(t, "n1")
	now := time.Now()
	if _, err := s.Apply([]api.Object{deployment(1, "web:1")}, now, true); err != nil {
		t.Fatal(err)
	}
	svc := &api.Service{Metadata: api.ObjectMeta{Name: "web", Namespace: "default"}, Spec: api.ServiceSpec{Ports: []api.ServicePort{{Port: 80, Protocol: "TCP"}}}}
	_, err := s.Apply([]api.Object{svc, deployment(2, "web:2")}, now, true)
	var ee *ExistsError
	if !errors.As(err, &ee) || ee.Name != "web" {
		t.Fatalf("got %v, want the deployment's existsError", err)
	}
	if !errors.Is(err, ErrExists) {
		t.Fatalf("%v is not ErrExists", err)
	}
	if _, ok := s.Get(Key(api.KindService, "default", "web")); ok {
		t.Fatal("a refused create stored the service")
	}
	if d := getDeployment(t, s, "web"); *d.Spec.Replicas != 1 {
		t.Fatal("a refused create changed the deployment")
	}
}

// A scale on one peer and a set image on another, at the same time, both
// survive, and the image change is in the history on both peers.
func TestRolloutMergesWithConcurrentScale(t *testing.T) {
	a, b, flush := linkedStores(t)
	now := time.Now()
	if _, err := a.Apply([]api.Object{deployment(2, "web:1")}, now, false); err != nil {
		t.Fatal(err)
	}
	flush()
	key := Key(api.KindDeployment, "default", "web")
	if _, err := a.Scale(key, 7); err != nil {
		t.Fatal(err)
	}
	base := getDeployment(t, b, "web")
	img := getDeployment(t, b, "web")
	img.Spec.Template.Spec.Containers[0].Image = "web:2" // kubectl set image, through b's API
	if _, err := b.Update(base, img, now); err != nil {
		t.Fatal(err)
	}
	flush()
	for name, s := range map[string]*Store{"a": a, "b": b} {
		d := getDeployment(t, s, "web")
		if *d.Spec.Replicas != 7 || d.Spec.Template.Spec.Containers[0].Image != "web:2" {
			t.Fatalf("%s: replicas %d image %s", name, *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
		}
		if revs, cur := revisions(t, s); cur != 2 || revs[1] != "web:1" {
			t.Fatalf("%s: history %v current %d", name, revs, cur)
		}
	}
}

// An apply that finds its objects unchanged still wins over a delete it has
// not seen yet that came before it: found by the chaos tests, where a
// service vanished while its deployment, re-applied with it, stayed.
func TestUnchangedApplyWinsOverEarlierDelete(t *testing.T) {
	a, b, flush := linkedStores(t)
	svc := &api.Service{Metadata: api.ObjectMeta{Name: "web", Namespace: "default"}, Spec: api.ServiceSpec{Ports: []api.ServicePort{{Port: 80, Protocol: "TCP"}}}}
	objs := []api.Object{deployment(2, "web:1"), svc}
	if _, err := a.Apply(objs, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	flush()
	keys := []string{Key(api.KindDeployment, "default", "web"), Key(api.KindService, "default", "web")}
	if _, err := b.Remove(keys); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // a's apply comes after b's delete
	res, err := a.Apply(objs, time.Now(), false)
	if err != nil || res[0].Action != "unchanged" || res[1].Action != "unchanged" {
		t.Fatalf("re-apply: %+v %v", res, err)
	}
	flush()
	for name, s := range map[string]*Store{"a": a, "b": b} {
		for _, k := range keys {
			if _, ok := s.Get(k); !ok {
				t.Fatalf("%s lost %s, applied after its delete", name, k)
			}
		}
	}
}

// A daemon set's and a stateful set's templates are kept as a deployment's
// are, under their own keys, and go with them.
func TestSetHistories(t *testing.T) {
	s := newTestStore(t, "a")
	now := time.Now()
	for _, kind := range []string{"DaemonSet", "StatefulSet"} {
		key := Key(kind, "default", "x")
		for _, img := range []string{"web:1", "web:2", "web:1"} {
			objs := decode("apiVersion: apps/v1\nkind: " + kind + "\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {app: x}}\n" +
				"  template:\n    metadata: {labels: {app: x}}\n    spec:\n      containers: [{name: c, image: " + img + "}]\n")
			if _, err := s.Apply(objs, now, false); err != nil {
				t.Fatal(err)
			}
		}
		o, ok := s.Get(key)
		if !ok {
			t.Fatalf("%s not stored", kind)
		}
		revs, cur := s.History(o)
		if len(revs) != 2 || cur != 3 || revs[0].Data.Spec.Containers[0].Image != "web:2" || revs[1].Data.Spec.Containers[0].Image != "web:1" {
			t.Fatalf("%s history: current %d, %+v", kind, cur, revs)
		}
		if _, ok := s.st.Get(historyKeyOf(key)); !ok {
			t.Fatalf("%s: no history stored at %s", kind, historyKeyOf(key))
		}
		if _, err := s.Remove([]string{key}); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.st.Get(historyKeyOf(key)); ok {
			t.Fatalf("%s: the history outlived the set", kind)
		}
	}
}
