package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// TestExecStream runs commands in a running pod's containers through the
// PodManager: output on both streams, exit codes, stdin, a pod of two
// containers, errors, and a command cut short by its context.
func TestExecStream(t *testing.T) {
	r := newRig(t, "exec")
	r.loadImage(t, "web")
	pod := webPod("web-x")
	side := api.Container{Name: "side", Image: "example/web:1", Env: []api.EnvVar{{Name: "PORT", Value: "8081"}}}
	pod.Spec.Containers = append(pod.Spec.Containers, side)
	r.pm.Sync([]api.Pod{pod})
	waitFor(t, 30*time.Second, "web-x running", func() (bool, string) {
		p := r.pod(t, "web-x")
		return p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) == 2 &&
			p.Status.ContainerStatuses[0].Ready && p.Status.ContainerStatuses[1].State.Running != nil, fmt.Sprintf("%+v", p.Status)
	})
	ctx := context.Background()
	exec := func(container string, stdin io.Reader, cmd ...string) (int, string, string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		code, err := r.pm.Exec(ctx, "default", "web-x", container, cmd, stdin, &out, &errb)
		return code, out.String(), errb.String(), err
	}

	code, out, errOut, err := exec("web", nil, "/app", "echo", "hello", "world")
	if err != nil || code != 0 || out != "hello world\n" || errOut != "" {
		t.Fatalf("echo: %d %q %q %v", code, out, errOut, err)
	}
	// PATH=/ in the image: the bare name works too, in the other container.
	code, out, _, err = exec("side", nil, "app", "echo", "from side")
	if err != nil || code != 0 || out != "from side\n" {
		t.Fatalf("echo in side: %d %q %v", code, out, err)
	}
	code, out, errOut, err = exec("web", nil, "/app", "fail", "3", "it", "broke")
	if err != nil || code != 3 || out != "" || errOut != "it broke\n" {
		t.Fatalf("fail: %d %q %q %v", code, out, errOut, err)
	}

	// Stdin reaches the command, and its end closes the command's stdin.
	code, out, errOut, err = exec("web", strings.NewReader("some input\n"), "/app", "cat")
	if err != nil || code != 0 || out != "some input\n" || errOut != "11 bytes\n" {
		t.Fatalf("cat: %d %q %q %v", code, out, errOut, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB, more than any pipe holds
	code, out, errOut, err = exec("web", bytes.NewReader(big), "/app", "cat")
	if err != nil || code != 0 || out != string(big) || errOut != fmt.Sprintf("%d bytes\n", len(big)) {
		t.Fatalf("cat of 1 MiB: %d, %d bytes out, %q %v", code, len(out), errOut, err)
	}
	// Without stdin, the command reads end of file at once.
	code, out, errOut, err = exec("web", nil, "/app", "cat")
	if err != nil || code != 0 || out != "" || errOut != "0 bytes\n" {
		t.Fatalf("cat without stdin: %d %q %q %v", code, out, errOut, err)
	}
	// Stdin that ends before the command starts reading.
	code, out, _, err = exec("web", strings.NewReader(""), "/app", "cat")
	if err != nil || code != 0 || out != "" {
		t.Fatalf("cat of empty stdin: %d %q %v", code, out, err)
	}

	// The buffered Exec of exec probes still works.
	code, combined, err := r.ctd.Exec(ctx, containerID("default/web-x", "web"), []string{"/app", "fail", "5"})
	if err != nil || code != 5 || string(combined) != "failing with 5\n" {
		t.Fatalf("buffered exec: %d %q %v", code, combined, err)
	}

	// Errors.
	if _, _, _, err := exec("", nil, "/app", "echo"); err == nil || !strings.Contains(err.Error(), "choose one of [web side]") {
		t.Fatalf("no container named in a pod of two: %v", err)
	}
	if _, _, _, err := exec("nope", nil, "/app", "echo"); !errors.Is(err, ErrNoContainer) || err.Error() != `container "nope" is not in pod "default/web-x"` {
		t.Fatalf("unknown container: %v", err)
	}
	if _, err := r.pm.Exec(ctx, "default", "web-y", "", []string{"/app"}, nil, io.Discard, io.Discard); !errors.Is(err, ErrPodNotHere) {
		t.Fatalf("unknown pod: %v", err)
	}
	if _, _, _, err := exec("web", nil, "/no/such/binary"); err == nil || !strings.Contains(err.Error(), "/no/such/binary") {
		t.Fatalf("missing binary: %v", err)
	}

	// A command still running when its context ends is killed.
	pr, pw := io.Pipe()
	defer pw.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	var out2 bytes.Buffer
	_, err = r.pm.Exec(cctx, "default", "web-x", "web", []string{"/app", "cat"}, pr, &out2, io.Discard)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second {
		t.Fatalf("cut short: %v after %s", err, time.Since(start))
	}
	pw.Close() // ends the Read of stdin left in progress
	if p := r.pod(t, "web-x"); p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("exec restarted the container: %+v", p.Status.ContainerStatuses[0])
	}
}

// firstSize takes the client's first real size, passing over 0x0, and
// gives up on a closed channel or none within the wait.
func TestFirstSize(t *testing.T) {
	ctx := context.Background()
	ch := make(chan TerminalSize, 2)
	ch <- TerminalSize{Width: 80, Height: 24}
	if sz, ok := firstSize(ctx, ch, time.Second); !ok || sz.Width != 80 || sz.Height != 24 {
		t.Fatalf("first size %v %v", sz, ok)
	}
	ch <- TerminalSize{}
	ch <- TerminalSize{Width: 100, Height: 30}
	if sz, ok := firstSize(ctx, ch, time.Second); !ok || sz.Width != 100 || sz.Height != 30 {
		t.Fatalf("0x0 then 100x30: got %v %v, want the real size", sz, ok)
	}
	ch <- TerminalSize{}
	if _, ok := firstSize(ctx, ch, 50*time.Millisecond); ok {
		t.Fatal("0x0 taken as a size")
	}
	if _, ok := firstSize(ctx, ch, 10*time.Millisecond); ok {
		t.Fatal("a size when none came")
	}
	close(ch)
	if _, ok := firstSize(ctx, ch, time.Second); ok {
		t.Fatal("a size from a closed channel")
	}
}
