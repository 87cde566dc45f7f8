package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// TestKubectlDefectsStayFixed: the defects issue 11 found in the CLI chorus
// had before kubectl was built in stay fixed. `create deployment` and
// `expose` print no warning about their own output; `exec` and `logs` on
// deployment/NAME pick the new template's pod while an old one is still
// terminating; `delete -f` of a file that also holds a kind chorus does
// not serve deletes the rest and names that kind.
func TestKubectlDefectsStayFixed(t *testing.T) {
	p := startPeer(t, "e2e-defects", "127.0.0.30")
	// run returns stdout and stderr together: kubectl's warnings are on
	// stderr.
	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := p.Command(ctx, args...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	for _, c := range [][]string{
		{"create", "deployment", "web", "--image=example/web:1", "--port=8080"},
		{"expose", "deployment", "web", "--port=8080"},
	} {
		if out := must(c...); strings.Contains(out, "Warning") || strings.Contains(out, "ignored") {
			t.Errorf("%s printed a warning:\n%s", strings.Join(c, " "), out)
		}
	}
	// Old pods take 25 s to stop (a preStop hook), so a rollout leaves one
	// terminating next to the new one for a while.
	must("patch", "deployment", "web", "--type=strategic", "-p",
		`{"spec":{"template":{"spec":{"terminationGracePeriodSeconds":40,"containers":[{"name":"web",`+
			`"lifecycle":{"preStop":{"sleep":{"seconds":25}}},"readinessProbe":{"httpGet":{"path":"/ready","port":8080},"periodSeconds":1}}]}}}}`)
	must("rollout", "status", "deployment/web", "--timeout=90s")
	old := strings.TrimSpace(must("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].metadata.name}"))
	must("set", "env", "deployment/web", "V=2")
	var fresh string
	// Until the new pod is Ready both are (make-before-break), and exec
	// then rightly picks the older; the old one stops being Ready when it
	// starts to terminate, which is the case this checks.
	harness.Eventually(t, 60*time.Second, "a new pod Ready while "+old+" terminates", func() (bool, string) {
		out, _ := run("get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
		oldTerminating := false
		fresh = ""
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) != 2:
			case f[0] == old:
				oldTerminating = f[1] != "True"
			case f[1] == "True":
				fresh = f[0]
			}
		}
		return oldTerminating && fresh != "", out
	})
	if got := strings.TrimSpace(must("exec", "deployment/web", "--", "/app", "hostname")); got != fresh {
		t.Errorf("exec deployment/web ran in %s, want the new pod %s (%s terminates)", got, fresh, old)
	}
	if out := must("logs", "deployment/web"); strings.Contains(out, "pod/"+old) {
		t.Errorf("logs deployment/web read the terminating pod %s:\n%s", old, out)
	}
	if out, _ := run("get", "pods", "-l", "app=web", "-o", "name"); !strings.Contains(out, old) {
		t.Fatalf("%s was gone before exec and logs ran: the check proves nothing\n%s", old, out)
	}

	// delete -f with a kind chorus does not serve: the rest is deleted.
	f := filepath.Join(t.TempDir(), "mixed.yaml")
	if err := os.WriteFile(f, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n"+
		"apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run("delete", "-f", f)
	if err == nil || !strings.Contains(out, `service "web" deleted`) || !strings.Contains(out, "PodDisruptionBudget") {
		t.Fatalf("delete -f with an unserved kind: %v\n%s", err, out)
	}
	if out, err := run("get", "service", "web"); err == nil {
		t.Fatalf("service web still there:\n%s", out)
	}
}
