package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestProcessAlive: Reset refuses to clean up after a peer whose recorded
// pid is a running chorus-agent (what `chorus agent` execs) or an older
// `chorus agent`, and not after another program that reused the pid.
func TestProcessAlive(t *testing.T) {
	dir := t.TempDir()
	// `chorus agent` stands for a shell that runs the script ./agent.
	if err := os.WriteFile(filepath.Join(dir, "agent"), []byte("sleep 60\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func(prog, name string, args ...string) string {
		t.Helper()
		from, err := exec.LookPath(prog)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name)
		if err := exec.Command("cp", from, path).Run(); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(path, args...)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		// Start returns once the child is forked; until it has exec'd, its
		// /proc/PID/cmdline is still this test's.
		pid := strconv.Itoa(cmd.Process.Pid)
		for deadline := time.Now().Add(10 * time.Second); ; {
			b, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			if argv0, _, _ := strings.Cut(string(b), "\x00"); filepath.Base(argv0) == name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %s) did not exec in 10 s: cmdline %q", name, pid, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return pid + "\n"
	}
	for _, c := range []struct {
		prog, name string
		args       []string
		want       bool
	}{
		{"sleep", "chorus-agent", []string{"60"}, true},
		{"sh", "chorus", []string{"agent"}, true},
		{"sleep", "ssh-agent", []string{"60"}, false},
		{"sleep", "chorus", []string{"60"}, false},
	} {
		pid := start(c.prog, c.name, c.args...)
		if got := processAlive(pid); got != c.want {
			t.Errorf("%s %v (pid %s): processAlive %v, want %v", c.name, c.args, pid, got, c.want)
		}
	}
	if processAlive("0") || processAlive("x") || processAlive("") {
		t.Error("processAlive of no pid")
	}
}
