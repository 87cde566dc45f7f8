package state

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// TestListSharedFollowsChanges: ListShared gives what List gives, decodes
// an unchanged object once, and sees every change: a write, an older
// register merged after a newer one, a delete.
func TestListSharedFollowsChanges(t *testing.T) {
	s := newTestStore(t, "a")
	defer s.Close()
	if _, err := s.Apply([]api.Object{deployment(2, "web:1")}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	same := func(when string) []api.Object {
		t.Helper()
		got, want := s.ListShared(api.KindDeployment), s.List(api.KindDeployment, "")
		if len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: ListShared %+v, List %+v", when, got, want)
		}
		return got
	}
	first := same("after the apply")
	if again := s.ListShared(api.KindDeployment); again[0] != first[0] {
		t.Error("an unchanged object was decoded again")
	}
	if _, err := s.Apply([]api.Object{deployment(3, "web:2")}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if got := same("after an update"); *got[0].(*api.Deployment).Spec.Replicas != 3 {
		t.Fatalf("replicas %d after the update, want 3", *got[0].(*api.Deployment).Spec.Replicas)
	}
	// A label's register older than the object's newest, merged now.
	labels, _ := json.Marshal(map[string]string{"late": "yes"})
	changed, err := s.Merge(crdt.Delta{Entries: []crdt.Entry{{Key: "Deployment/default/web", Field: "metadata.labels",
		Reg: crdt.Register{Value: labels, Stamp: crdt.Stamp{Wall: 1, Node: "b"}}}}})
	if err != nil || !changed {
		t.Fatalf("merge of an older register of a new field: changed %v, %v", changed, err)
	}
	if got := same("after an older register merged"); got[0].Meta().Labels["late"] != "yes" {
		t.Fatalf("labels %v after the merge, want late=yes", got[0].Meta().Labels)
	}
	if _, err := s.Remove([]string{"Deployment/default/web"}); err != nil {
		t.Fatal(err)
	}
	if got := same("after the delete"); len(got) != 0 {
		t.Fatalf("%d deployments after the delete", len(got))
	}
}
