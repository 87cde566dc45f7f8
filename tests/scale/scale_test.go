package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests, with the
// grace gossip's tests give memberlist (a probe in flight at Shutdown ends
// by itself within a few seconds).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestScaleSmall runs the harness small (16 peers in this process, on
// 127.0.9.x, ports chosen by the kernel, each connected to its neighbours
// only, as in a large cluster) and checks what must hold at any
// size: membership and every write converge on every peer, every replica
// runs on exactly one peer once settled, and a killed peer's replicas run
// elsewhere as every survivor sees it. The waits are bounded (2 minutes
// each, generous: a liveness bound, not a figure); the figures go to
// docs/BENCHMARKS.md.
func TestScaleSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 16 peers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, Options{
		Peers: 16, Objects: 200, Pods: 40, Writes: 10, WriteEvery: 50 * time.Millisecond,
		Window: time.Second, Failover: true, Timeout: 2 * time.Minute,
		Net: [2]byte{0, 9}, Dir: t.TempDir(),
		// Not a full mesh: every peer connects to its neighbours only, as
		// in a cluster of more than 32, so that path runs here too.
		FullMeshUpTo: 6,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.DuplicatePods != 0 || res.MissingPods != 0 {
		t.Errorf("after failover: %d pods running on two peers, %d running nowhere; want 0 and 0", res.DuplicatePods, res.MissingPods)
	}
	if res.FailoverPods == 0 {
		t.Error("the killed peer ran no pod: failover not exercised")
	}
	if res.ConvergeP50Ms <= 0 || res.ConvergeMaxMs < res.ConvergeP50Ms {
		t.Errorf("convergence latencies %v/%v ms: not measured", res.ConvergeP50Ms, res.ConvergeMaxMs)
	}
}
