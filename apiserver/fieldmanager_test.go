package apiserver

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestServerSideApply(t *testing.T) {
	b := newMem()
	_, hs := start(t, b, "p1")
	u := hs.URL + "/apis/apps/v1/namespaces/default/deployments/web"
	const ssa = "application/apply-patch+yaml"
	manifest := func(replicas string, labels string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {` + labels + `}
spec:
  replicas: ` + replicas + `
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1"}]
`
	}
	// Apply creates, recording its manager.
	code, body := do(t, "PATCH", u+"?fieldManager=alice", ssa, manifest("2", "team: a, tier: web"))
	if code != 201 || !strings.Contains(body, `"manager":"alice"`) || !strings.Contains(body, `"operation":"Apply"`) {
		t.Fatalf("apply of a new object: %d %s", code, body)
	}
	// Another manager setting a field alice owns to another value: 409.
	code, body = do(t, "PATCH", u+"?fieldManager=bob", ssa, manifest("3", ""))
	if code != 409 || !strings.Contains(body, `conflict with \"alice\"`) || !strings.Contains(body, ".spec.replicas") {
		t.Fatalf("conflicting apply: %d %s", code, body)
	}
	// The same value is shared, not a conflict; force takes the field.
	if code, body = do(t, "PATCH", u+"?fieldManager=bob", ssa, manifest("2", "")); code != 200 {
		t.Fatalf("apply of the same value: %d %s", code, body)
	}
	if code, body = do(t, "PATCH", u+"?fieldManager=bob&force=true", ssa, manifest("3", "")); code != 200 || !strings.Contains(body, `"replicas":3`) {
		t.Fatalf("forced apply: %d %s", code, body)
	}
	// A field alice alone owned and no longer applies is removed; one she
	// still applies stays.
	code, body = do(t, "PATCH", u+"?fieldManager=alice", ssa, manifest("4", "team: a"))
	if code != 409 { // replicas is bob's now: alice must drop it or force
		t.Fatalf("alice applying bob's replicas: %d %s", code, body)
	}
	noReplicas := strings.Replace(manifest("1", "team: a"), "  replicas: 1\n", "", 1)
	if code, body = do(t, "PATCH", u+"?fieldManager=alice", ssa, noReplicas); code != 200 {
		t.Fatalf("alice without replicas: %d %s", code, body)
	}
	var d struct {
		Metadata struct {
			Labels        map[string]string
			ManagedFields []struct{ Manager, Operation string }
		}
		Spec struct{ Replicas int }
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Metadata.Labels["tier"] != "" || d.Metadata.Labels["team"] != "a" || d.Spec.Replicas != 3 {
		t.Fatalf("after alice's last apply: labels %v, replicas %d", d.Metadata.Labels, d.Spec.Replicas)
	}
	// An update (merge patch) is recorded under its manager, as an Update.
	if code, body = do(t, "PATCH", u+"?fieldManager=kubectl-edit", "application/merge-patch+json", `{"spec":{"minReadySeconds":5}}`); code != 200 ||
		!strings.Contains(body, `"manager":"kubectl-edit","operation":"Update"`) {
		t.Fatalf("merge patch: %d %s", code, body)
	}
	// Apply without a manager is refused, as kube-apiserver does.
	if code, body = do(t, "PATCH", u, ssa, manifest("3", "")); code != 400 || !strings.Contains(body, "fieldManager") {
		t.Fatalf("apply without fieldManager: %d %s", code, body)
	}
}
