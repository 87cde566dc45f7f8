// Package e2e holds the single-peer end-to-end tests: a real `chorus agent`
// with its private containerd, runc and CNI networking, driven through the
// chorus CLI as a user would.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// env is what TestMain prepares once for every test of the package.
type env struct {
	bin    string            // the chorus binary
	images map[string]string // test image name -> archive path
}

var testEnv env

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := harness.CheckEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "chorus-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := harness.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	imgs, err := images.BuildAll(context.Background(), filepath.Join(os.TempDir(), "chorus-test-images"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	testEnv = env{bin: bin, images: imgs}
	return m.Run()
}
