// Package cluster holds the multi-peer end-to-end tests: several real
// `chorus agent` processes on 127.0.0.x addresses that gossip membership,
// replicate the desired state, place replicas and serve services.
package cluster

import (
	"os"
	"testing"

	"github.com/chorus-sh/chorus/tests/harness"
)

// bin is the chorus binary TestMain builds for every test of the package.
var bin string

func TestMain(m *testing.M) { os.Exit(harness.Main(m, &bin)) }
