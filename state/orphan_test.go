package state

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// jobWithPod stores a job and a pod that the job owns, and returns the
// pod's key.
func jobWithPod(t *testing.T, s *Store, name string) string {
	t.Helper()
	now := time.Now()
	if _, err := s.Apply(decode(fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata: {name: %s}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: web:1}]
`, name)), now, false); err != nil {
		t.Fatal(err)
	}
	o, ok := s.Get(Key(api.KindJob, "default", name))
	if !ok {
		t.Fatal("the job is not stored")
	}
	uid := o.Meta().UID
	if _, err := s.Apply(decode(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s-pod
  ownerReferences: [{apiVersion: batch/v1, kind: Job, name: %s, uid: %q, controller: true}, {apiVersion: v1, kind: ConfigMap, name: keep, uid: other}]
spec:
  containers: [{name: c, image: web:1}]
`, name, name, uid)), now, false); err != nil {
		t.Fatal(err)
	}
	return Key(api.KindPod, "default", name+"-pod")
}

func TestDeleteCascadesAndOrphans(t *testing.T) {
	s := newTestStore(t, "a")

	// Background (the default): the job's pod goes with it, in the same write.
	pod := jobWithPod(t, s, "bg")
	if _, err := s.Remove([]string{Key(api.KindJob, "default", "bg")}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get(pod); ok {
		t.Fatal("the pod of a deleted job is still stored")
	}

	// Orphan: the pod stays, without the job's reference (others kept).
	pod = jobWithPod(t, s, "keep")
	if _, ok := s.st.Get(JobProgressKey("default", "keep")); !ok {
		if err := s.WriteProgress(JobProgressKey("default", "keep"), KindJobProgress, "u", map[string]any{"active": 1}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.RemoveOrphaning(Key(api.KindJob, "default", "keep"))
	if err != nil || r.Action != "deleted" {
		t.Fatalf("orphaning delete: %+v %v", r, err)
	}
	if _, ok := s.Get(Key(api.KindJob, "default", "keep")); ok {
		t.Fatal("the job is still stored")
	}
	if _, ok := s.st.Get(JobProgressKey("default", "keep")); ok {
		t.Fatal("the job's progress outlived it")
	}
	o, ok := s.Get(pod)
	if !ok {
		t.Fatal("the orphaned pod was deleted")
	}
	refs := o.Meta().OwnerReferences
	if len(refs) != 1 || refs[0].Kind != "ConfigMap" {
		t.Fatalf("the orphan's references: %+v, want only the ConfigMap's", refs)
	}
	// Deleting it later does not touch what it no longer is owned by.
	if r, err := s.RemoveOrphaning(Key(api.KindJob, "default", "keep")); err != nil || r.Action != "notfound" {
		t.Fatalf("second delete: %+v %v", r, err)
	}

	// A deployment's pods are derived: orphaning is refused, nothing changes.
	if _, err := s.Apply([]api.Object{deployment(2, "web:1")}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveOrphaning(Key(api.KindDeployment, "default", "web")); !errors.Is(err, ErrCannotOrphan) {
		t.Fatalf("orphaning a deployment: %v, want ErrCannotOrphan", err)
	}
	getDeployment(t, s, "web")
}
