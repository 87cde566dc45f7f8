package state

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// Every write path validates what it leaves as apply does: a scale to
// 2^31-1 replicas is refused (422, naming spec.replicas) and stores
// nothing.
func TestScaleValidatesAsApply(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.crdt"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply([]api.Object{deployment(2, "web:1")}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	key := Key(api.KindDeployment, "default", "web")
	for _, n := range []int32{10001, 2147483647} {
		_, err := s.Scale(key, n)
		var ie *InvalidError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), "spec.replicas") || !strings.Contains(err.Error(), "at most 10000") {
			t.Fatalf("scale to %d: %v, want an invalid spec.replicas", n, err)
		}
	}
	if r, err := s.Scale(key, 10000); err != nil || r.Action != "scaled" {
		t.Fatalf("scale to 10000: %+v %v", r, err)
	}
	o, _ := s.Get(key)
	if got := *o.(*api.Deployment).Spec.Replicas; got != 10000 {
		t.Fatalf("replicas %d", got)
	}
}

// A value no write path accepts, read from the peer's own disk (an older
// version wrote it, or the disk was damaged), does not reach anything: the
// store leaves the object out and reports it, once per version.
func TestPoisonedStateIsReportedNotUsed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.crdt")
	s, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	good := deployment(1, "web:1")
	bad := deployment(1, "web:1")
	bad.Metadata.Name = "bad"
	if _, err := s.Apply([]api.Object{good, bad}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	// Written behind the store's back, as a disk would hold it.
	next := s.st.Clone()
	next.PutFields(Key(api.KindDeployment, "default", "bad"), map[string]json.RawMessage{"spec.replicas": json.RawMessage("2147483647")}, s.Now())
	next.PutFields(Key(api.KindDeployment, "default", "junk"), map[string]json.RawMessage{"kind": json.RawMessage(`"Deployment"`), "spec": json.RawMessage(`{"replicas":"many"}`)}, s.Now())
	if err := next.Save(path); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var reported []string
	s2.ReportInvalid(func(b api.InvalidObject) { reported = append(reported, b.Key) })
	for range 3 {
		deps := s2.List(api.KindDeployment, "")
		if len(deps) != 1 || deps[0].Meta().Name != "web" {
			t.Fatalf("listed %d deployments, want only web", len(deps))
		}
	}
	bads := s2.checked.list()
	if len(bads) != 2 || bads[0].Key != "Deployment/default/bad" || !strings.Contains(bads[0].Reason, "spec.replicas") {
		t.Fatalf("invalid objects %+v", bads)
	}
	if len(reported) != 2 {
		t.Fatalf("reported %v, want each invalid object once", reported)
	}
	// A valid write replaces it; a delete removes it.
	if _, err := s2.Apply([]api.Object{bad}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if _, ok := s2.Get(Key(api.KindDeployment, "default", "bad")); !ok {
		t.Fatal("re-applied deployment missing")
	}
	if _, err := s2.Remove([]string{"Deployment/default/junk"}); err != nil {
		t.Fatal(err)
	}
	s2.List(api.KindDeployment, "")
	if bads := s2.Invalid(); len(bads) != 0 {
		t.Fatalf("still invalid: %+v", bads)
	}
}

// A state file that is not one (truncated, overwritten) is set aside and
// the peer starts with an empty state instead of failing.
func TestCorruptStateFileSetAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.crdt")
	if err := os.WriteFile(path, []byte("CHORUSgarbage\x00\x01"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, "n1")
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if s.SetAside() == "" || len(s.List(api.KindDeployment, "")) != 0 {
		t.Fatalf("setAside %q", s.SetAside())
	}
	m, _ := filepath.Glob(path + ".corrupt-*")
	if len(m) != 1 {
		t.Fatalf("set-aside files %v", m)
	}
	if _, err := s.Apply([]api.Object{deployment(1, "web:1")}, time.Now(), false); err != nil {
		t.Fatalf("write after set-aside: %v", err)
	}
}
