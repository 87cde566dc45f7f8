package agent

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
	"go.uber.org/goleak"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestStore(t *testing.T, node string) *state.Store {
	t.Helper()
	s, err := state.Open(filepath.Join(t.TempDir(), "state.crdt"), node)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// kubeError serves each refusal of the store as Kubernetes does: the
// store's domain errors, as the store returns them, become 404, 409 and
// 422 statuses, wrapped or not.
func TestKubeErrorMapsStateErrors(t *testing.T) {
	s := newTestStore(t, "n1")
	now := time.Now()
	d := deployment(1, "web:1", "25%", "25%")
	if _, err := s.Apply([]api.Object{d}, now, false); err != nil {
		t.Fatal(err)
	}
	_, exists := s.Apply([]api.Object{d}, now, true)
	missing := deployment(1, "web:1", "25%", "25%")
	missing.Metadata.Name = "missing"
	_, notFound := s.Update(missing, missing, now)
	_, invalid := s.Scale(state.Key(api.KindDeployment, "default", "web"), 2147483647)
	for _, c := range []struct {
		name   string
		err    error
		is     error
		code   int32
		reason metav1.StatusReason
	}{
		{"exists", exists, state.ErrExists, http.StatusConflict, metav1.StatusReasonAlreadyExists},
		{"not found", notFound, state.ErrNotFound, http.StatusNotFound, metav1.StatusReasonNotFound},
		{"invalid", invalid, state.ErrInvalid, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid},
		{"conflict", fmt.Errorf("write: %w", state.ErrConflict), state.ErrConflict, http.StatusConflict, metav1.StatusReasonConflict},
		{"wrapped not found", fmt.Errorf("update: %w", notFound), state.ErrNotFound, http.StatusNotFound, metav1.StatusReasonNotFound},
	} {
		if !errors.Is(c.err, c.is) {
			t.Fatalf("%s: %v is not %v", c.name, c.err, c.is)
		}
		var se *apierrors.StatusError
		if !errors.As(kubeError(c.err), &se) || se.ErrStatus.Code != c.code || se.ErrStatus.Reason != c.reason {
			t.Fatalf("%s: %v served as %+v, want %d %s", c.name, c.err, kubeError(c.err), c.code, c.reason)
		}
	}
	if se := kubeError(exists).(*apierrors.StatusError); se.ErrStatus.Message != `deployments.apps "web" already exists` {
		t.Fatalf("exists: message %q", se.ErrStatus.Message)
	}
	if se := kubeError(notFound).(*apierrors.StatusError); se.ErrStatus.Message != `deployments.apps "missing" not found` {
		t.Fatalf("not found: message %q", se.ErrStatus.Message)
	}
}
