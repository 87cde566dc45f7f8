package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain runs the test binary as chorus itself when CHORUS_TEST_AS_CHORUS
// is set: TestAgentExecsChorusAgent runs it under the name chorus, next to
// a stand-in chorus-agent.
func TestMain(m *testing.M) {
	if os.Getenv("CHORUS_TEST_AS_CHORUS") == "1" {
		fmt.Printf("chorus pid %d\n", os.Getpid())
		main() // exits
	}
	os.Exit(m.Run())
}

// TestAgentExecsChorusAgent: `chorus agent ARGS` becomes the chorus-agent
// next to chorus, in the same process (same pid), with ARGS untouched
// (--help included) and the environment; a missing or unrunnable
// chorus-agent is an error naming its path.
func TestAgentExecsChorusAgent(t *testing.T) {
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	chorus := filepath.Join(dir, "chorus")
	if err := os.Link(self, chorus); err != nil {
		copyFile(t, self, chorus)
	}
	agentPath := filepath.Join(dir, "chorus-agent")
	runChorus := func() (stdout, stderr string, code int) {
		cmd := exec.Command(chorus, "agent", "--name", "a b", "--help")
		cmd.Env = append(os.Environ(), "CHORUS_TEST_AS_CHORUS=1", "CHORUS_NAME=n9")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	_, stderr, code := runChorus()
	if want := "error: chorus agent runs " + agentPath + ", which is missing: stat " + agentPath + ": no such file or directory"; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("no chorus-agent: exit %d, stderr %q, want %q", code, stderr, want)
	}

	script := "#!/bin/sh\necho \"chorus-agent pid $$ args $# $*\"\necho \"env $CHORUS_NAME\"\n"
	if err := os.WriteFile(agentPath, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runChorus()
	if want := "error: chorus agent: run " + agentPath + ": permission denied"; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("chorus-agent not executable: exit %d, stderr %q, want %q", code, stderr, want)
	}

	if err := os.Chmod(agentPath, 0o755); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runChorus()
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var pid int
	if code != 0 || stderr != "" || len(lines) != 3 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := fmt.Sscanf(lines[0], "chorus pid %d", &pid); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if want := fmt.Sprintf("chorus-agent pid %d args 3 --name a b --help", pid); lines[1] != want {
		t.Errorf("chorus-agent printed %q, want %q (the same process, the same arguments)", lines[1], want)
	}
	if lines[2] != "env n9" {
		t.Errorf("chorus-agent printed %q, want the environment's CHORUS_NAME n9", lines[2])
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
