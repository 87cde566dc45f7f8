package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A peer that was killed and not yet reaped (a zombie) is not running:
// `cluster create` starts it again.
func TestRunningPidZombie(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	file := filepath.Join(t.TempDir(), "peer.pid")
	if err := os.WriteFile(file, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 100 { // until it has exited (not reaped: a zombie)
		if zombie(pid) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !zombie(pid) {
		t.Fatalf("process %d never became a zombie", pid)
	}
	if _, ok := runningPid(file); ok {
		t.Fatal("a zombie counted as running")
	}
	_ = cmd.Wait()
	if _, ok := runningPid(file); ok {
		t.Fatal("a reaped process counted as running")
	}
	if err := os.WriteFile(file, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := runningPid(file); !ok {
		t.Fatal("this process does not count as running")
	}
}
