package cluster

import (
	"os"
	"strings"
	"testing"
)

// The helpers a test makes for the kubectl of kubectlFor.

// kubectlMust returns must for t: it fails t when a kubectl command
// failed, and returns the command's output.
func kubectlMust(t *testing.T) func(out string, err error) string {
	return func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("kubectl: %v\n%s", err, out)
		}
		return out
	}
}

// kubectlApply returns apply for t: it applies manifest with k (kubectl
// apply -f), failing t if that fails.
func kubectlApply(t *testing.T) func(k func(...string) (string, error), manifest string) {
	must := kubectlMust(t)
	return func(k func(...string) (string, error), manifest string) {
		t.Helper()
		dir := t.TempDir()
		f := dir + "/m.yaml"
		if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
			t.Fatal(err)
		}
		must(k("apply", "-f", f))
	}
}

// kubectlJSONPath returns jsonpath for t: it runs k with args, failing t if
// that fails, and returns the output trimmed (as a -o jsonpath value).
func kubectlJSONPath(t *testing.T) func(k func(...string) (string, error), args ...string) string {
	must := kubectlMust(t)
	return func(k func(...string) (string, error), args ...string) string {
		t.Helper()
		return strings.TrimSpace(must(k(args...)))
	}
}
