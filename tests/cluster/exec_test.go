package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// chorusExec runs `chorus -s <peer> args...` with stdin and returns what it
// printed and its exit code.
func chorusExec(t *testing.T, p *harness.Peer, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.Command(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("chorus %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// TestExecAcrossPeers: `chorus exec` through one peer into a pod it runs and
// into a pod the other peer runs: output, stdin, exit codes, errors.
func TestExecAcrossPeers(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	peers := startCluster(t, 2, 94, "x")
	x1, x2 := peers[0], peers[1]
	for _, p := range peers {
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := x1.CLI("apply", "-f", manifest(t, harness.WebDeployment("shell", 2))); err != nil {
		t.Fatal(err)
	}
	byNode := map[string]string{} // node -> a ready pod of shell on it
	harness.Eventually(t, 90*time.Second, "a ready pod of shell on each peer", func() (bool, string) {
		pods, err := x1.Pods("default")
		if err != nil {
			return false, err.Error()
		}
		clear(byNode)
		for _, p := range pods {
			if p.Metadata.Labels[api.LabelDeployment] == "shell" && harness.IsReady(&p) {
				byNode[p.Spec.NodeName] = p.Metadata.Name
			}
		}
		return byNode["x1"] != "" && byNode["x2"] != "", fmt.Sprint(byNode)
	})

	for _, node := range []string{"x1", "x2"} {
		pod := byNode[node]
		where := fmt.Sprintf("%s (on %s) through x1", pod, node)

		out, errOut, code := chorusExec(t, x1, "", "exec", pod, "--", "/app", "echo", "hello", "from", "exec")
		if code != 0 || out != "hello from exec\n" || errOut != "" {
			t.Fatalf("echo in %s: %d %q %q", where, code, out, errOut)
		}
		// It ran in that very pod (the hostname is the pod's name).
		out, errOut, code = chorusExec(t, x1, "", "exec", pod, "-c", "web", "--", "/app", "hostname")
		if code != 0 || out != pod+"\n" {
			t.Fatalf("hostname in %s: %d %q %q", where, code, out, errOut)
		}

		// -i: stdin reaches the command, whose stdout and stderr both come back.
		input := strings.Repeat("some input line\n", 10000)
		out, errOut, code = chorusExec(t, x1, input, "exec", "-i", pod, "--", "/app", "cat")
		if code != 0 || out != input || errOut != fmt.Sprintf("%d bytes\n", len(input)) {
			t.Fatalf("cat in %s: exit %d, %d bytes out, stderr %q", where, code, len(out), errOut)
		}
		// Without -i the command reads no stdin.
		out, errOut, code = chorusExec(t, x1, "not sent", "exec", pod, "--", "/app", "cat")
		if code != 0 || out != "" || errOut != "0 bytes\n" {
			t.Fatalf("cat without -i in %s: %d %q %q", where, code, out, errOut)
		}

		// A non-zero exit code is the CLI's, as kubectl's is.
		out, errOut, code = chorusExec(t, x1, "", "exec", pod, "--", "/app", "fail", "7", "it", "failed")
		if code != 7 || out != "" || errOut != "it failed\ncommand terminated with exit code 7\n" {
			t.Fatalf("fail in %s: %d %q %q", where, code, out, errOut)
		}

		// Errors.
		_, errOut, code = chorusExec(t, x1, "", "exec", pod, "-c", "nope", "--", "/app", "echo")
		if want := fmt.Sprintf("error: container nope is not valid for pod %s out of: web\n", pod); code != 1 || errOut != want {
			t.Fatalf("unknown container in %s: %d %q, want %q", where, code, errOut, want)
		}
		_, errOut, code = chorusExec(t, x1, "", "exec", pod, "--", "/no/such/binary")
		if code != 1 || !strings.HasPrefix(errOut, "error: ") || !strings.Contains(errOut, "/no/such/binary") {
			t.Fatalf("missing binary in %s: %d %q", where, code, errOut)
		}

		// Ctrl-C ends the command in the pod.
		interruptExec(t, x1, pod, where)
	}

	// Through the other peer too, and by deployment.
	out, errOut, code := chorusExec(t, x2, "", "exec", "deployment/shell", "--", "/app", "echo", "via", "x2")
	if code != 0 || out != "via x2\n" || errOut != "" {
		t.Fatalf("exec deployment/shell through x2: %d %q %q", code, out, errOut)
	}
	_, errOut, code = chorusExec(t, x1, "", "exec", "nosuch-0", "--", "/app", "echo")
	if code != 1 || errOut != "Error from server (NotFound): pods \"nosuch-0\" not found\n" {
		t.Fatalf("unknown pod: %d %q", code, errOut)
	}
	_, errOut, code = chorusExec(t, x1, "", "exec", byNode["x2"], "/app", "echo")
	if code != 1 || !strings.Contains(errOut, "exec [POD] [COMMAND] is not supported anymore") {
		t.Fatalf("no --: %d %q", code, errOut)
	}
}

// interruptExec runs `chorus exec -i POD -- /app cat TAG` through p with a
// stdin left open, checks the command runs (in the host's process list,
// by its unique TAG), interrupts the CLI and checks the command is gone.
func interruptExec(t *testing.T, p *harness.Peer, pod, where string) {
	t.Helper()
	tag := "interrupt-" + pod
	cmd := p.Command(context.Background(), "exec", "-i", pod, "--", "/app", "cat", tag)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "ping\n"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(stdout, got); err != nil || string(got) != "ping\n" {
		_ = cmd.Process.Kill()
		t.Fatalf("cat in %s: %q %v: %s", where, got, err, errb.String())
	}
	if n := processesWith("/app", "cat", tag); n != 1 {
		t.Fatalf("%d processes of the exec in %s", n, where)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	// As kubectl: killed by the signal (a shell says 130).
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
		t.Fatalf("interrupted exec in %s: %v, stderr %q", where, err, errb.String())
	}
	harness.Eventually(t, 15*time.Second, "the interrupted command in "+where+" ends", func() (bool, string) {
		n := processesWith("/app", "cat", tag)
		return n == 0, fmt.Sprint(n, " left")
	})
}

// processesWith counts the host's processes whose command line is exactly
// args (the processes of containers are the host's too).
func processesWith(args ...string) int {
	want := strings.Join(args, "\x00") + "\x00"
	n := 0
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && string(b) == want {
			n++
		}
	}
	return n
}
