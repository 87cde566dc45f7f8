// Package e2e holds the single-peer end-to-end tests: a real `chorus agent`
// with its private containerd, runc and CNI networking, driven through the
// chorus CLI as a user would.
package e2e

import (
	"context"
	"fmt"
	"os"
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
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEnv.images = imgs
	os.Exit(harness.Main(m, &testEnv.bin))
}
