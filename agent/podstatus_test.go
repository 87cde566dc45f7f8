package agent

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/state"
)

// TestPeerPodsDecodedOncePerVersion: a peer's published pods are decoded
// again only when its NodeStatus object changed, a change is seen at the
// next read, and what a reader changes in a copy does not reach the cache.
func TestPeerPodsDecodedOncePerVersion(t *testing.T) {
	s, err := state.Open(filepath.Join(t.TempDir(), "state.json"), "p1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	publish := func(fields map[string]string) {
		t.Helper()
		f := map[string]json.RawMessage{"apiVersion": json.RawMessage(`"chorus.io/v1"`), "kind": json.RawMessage(`"NodeStatus"`)}
		for k, v := range fields {
			f[k] = json.RawMessage(v)
		}
		if err := s.WriteFields(nodeStatusKey("p2"), f); err != nil {
			t.Fatal(err)
		}
	}
	publish(map[string]string{"spec.default_a": `{"metadata":{"name":"a","namespace":"default","labels":{"app":"x"}},"status":{"phase":"Running"}}`})
	a := &Agent{cfg: Config{Name: "p1"}, store: s}
	c := &a.peerPods
	first := c.pods(s, "p2")
	if len(first) != 1 || first[0].Metadata.Name != "a" || first[0].Spec.NodeName != "p2" || first[0].Status.Phase != "Running" {
		t.Fatalf("decoded %+v, want pod a Running on p2", first)
	}
	if again := c.pods(s, "p2"); &again[0] != &first[0] {
		t.Error("an unchanged object was decoded again")
	}
	publish(map[string]string{"spec.default_a": `{"metadata":{"name":"a","namespace":"default","labels":{"app":"y"}},"status":{"phase":"Failed"}}`, "spec.default_b": `{"metadata":{"name":"b","namespace":"default"}}`})
	now := c.pods(s, "p2")
	phases := map[string]string{}
	for _, p := range now {
		phases[p.Metadata.Name] = p.Status.Phase
	}
	if len(now) != 2 || phases["a"] != "Failed" {
		t.Fatalf("after the change: %v, want a Failed and b", phases)
	}
	// A register older than the object's newest (a field written earlier,
	// delivered later: another route, anti-entropy) is a change too.
	old := crdt.Stamp{Wall: 1, Node: "p2"}
	if _, err := s.Merge(crdt.Delta{Entries: []crdt.Entry{{Key: nodeStatusKey("p2"), Field: "spec.default_c",
		Reg: crdt.Register{Value: json.RawMessage(`{"metadata":{"name":"c","namespace":"default"}}`), Stamp: old}}}}); err != nil {
		t.Fatal(err)
	}
	if got := c.pods(s, "p2"); len(got) != 3 {
		t.Fatalf("after an older register of a new field merged: %d pods, want 3", len(got))
	}

	got := a.podsOf(nil, []string{"p1", "p2"}, true)
	if len(got) != 3 || got[0].Metadata.Name != "a" || got[1].Metadata.Name != "b" || got[2].Metadata.Name != "c" {
		t.Fatalf("cluster pods %+v, want p2's a, b and c, sorted", got)
	}
	got[0].Metadata.Labels["app"] = "changed"
	for _, p := range a.podsOf(nil, []string{"p1", "p2"}, true) {
		if p.Metadata.Labels["app"] == "changed" {
			t.Fatalf("a reader's change reached the cache: %+v", p)
		}
	}
}
