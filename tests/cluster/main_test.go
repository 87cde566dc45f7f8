// Package cluster holds the multi-peer end-to-end tests: several real
// `chorus agent` processes on 127.0.0.x addresses that gossip membership and
// replicate the desired state.
package cluster

import (
	"fmt"
	"os"
	"testing"

	"github.com/chorus-sh/chorus/tests/harness"
)

// bin is the chorus binary TestMain builds for every test of the package.
var bin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := harness.CheckEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "chorus-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if bin, err = harness.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
