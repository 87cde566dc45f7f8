package state

import (
	"errors"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// The store's refusals are its domain errors, for errors.Is: not found
// (an update of an object that is not stored, an object in a namespace
// that does not exist), exists (a create over a stored object), invalid (a
// write that would leave an object apply refuses), cannot orphan.
func TestDomainErrors(t *testing.T) {
	s := newTestStore(t, "n1")
	now := time.Now()
	d := deployment(1, "web:1")
	if _, err := s.Apply([]api.Object{d}, now, false); err != nil {
		t.Fatal(err)
	}
	missing := deployment(1, "web:1")
	missing.Metadata.Name = "missing"
	_, updateMissing := s.Update(missing, missing, now)
	elsewhere := deployment(1, "web:1")
	elsewhere.Metadata.Namespace = "nowhere"
	_, noNamespace := s.Apply([]api.Object{elsewhere}, now, false)
	_, exists := s.Apply([]api.Object{d}, now, true)
	_, invalid := s.Scale(Key(api.KindDeployment, "default", "web"), 2147483647)
	_, orphan := s.RemoveOrphaning(Key(api.KindDeployment, "default", "web"))
	all := []error{ErrNotFound, ErrExists, ErrInvalid, ErrConflict, ErrCannotOrphan}
	for _, c := range []struct {
		name string
		err  error
		is   error
	}{
		{"update of a missing object", updateMissing, ErrNotFound},
		{"apply into a missing namespace", noNamespace, ErrNotFound},
		{"create over a stored object", exists, ErrExists},
		{"scale beyond the limit", invalid, ErrInvalid},
		{"orphaning a deployment", orphan, ErrCannotOrphan},
	} {
		for _, e := range all {
			if got := errors.Is(c.err, e); got != (e == c.is) {
				t.Errorf("%s: errors.Is(%v, %v) = %v", c.name, c.err, e, got)
			}
		}
	}
	var me *api.ManifestError
	if !errors.As(invalid, &me) || len(me.Errors) == 0 || me.Errors[0].Field != "spec.replicas" {
		t.Fatalf("invalid: %v does not carry the field errors", invalid)
	}
	var ee *ExistsError
	if !errors.As(exists, &ee) || ee.Resource != "deployments.apps" || ee.Name != "web" {
		t.Fatalf("exists: %+v", ee)
	}
	// Refused writes store nothing.
	if o, _ := s.Get(Key(api.KindDeployment, "default", "web")); *o.(*api.Deployment).Spec.Replicas != 1 {
		t.Fatal("a refused write changed the deployment")
	}
}
