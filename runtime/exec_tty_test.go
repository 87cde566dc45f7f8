package runtime

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// TestExecTTY runs commands with a terminal in a real container: the
// terminal echoes what is typed and ends lines with \r\n (which no pipe
// does), ^D is the end of file, the process's stderr comes out of the
// terminal too, sizes are taken while it runs, and exit codes come back.
func TestExecTTY(t *testing.T) {
	r := newRig(t, "exectty")
	r.loadImage(t, "web")
	r.pm.Sync([]api.Pod{webPod("web-t")})
	waitFor(t, 30*time.Second, "web-t running", func() (bool, string) {
		p := r.pod(t, "web-t")
		return p.Status.Phase == api.PodRunning && len(p.Status.ContainerStatuses) == 1 &&
			p.Status.ContainerStatuses[0].State.Running != nil, fmt.Sprintf("%+v", p.Status)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	inR, inW := io.Pipe()
	defer inW.Close()
	out := &lockedWriter{w: &bytes.Buffer{}}
	resize := make(chan TerminalSize)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := r.pm.ExecTTY(ctx, "default", "web-t", "", []string{"/app", "cat"}, inR, out, resize)
		done <- result{code, err}
	}()
	// Each size is taken while the command runs.
	for _, sz := range []TerminalSize{{Width: 100, Height: 30}, {Width: 0, Height: 0}, {Width: 132, Height: 43}} {
		select {
		case resize <- sz:
		case res := <-done:
			t.Fatalf("cat ended before taking the size %v: %d %v, output %q", sz, res.code, res.err, out.bytes())
		}
	}
	if _, err := io.WriteString(inW, "hello\n"); err != nil {
		t.Fatal(err)
	}
	// The terminal's echo of the line, then cat's copy of it.
	waitFor(t, 20*time.Second, "echo and output", func() (bool, string) {
		s := string(out.bytes())
		return s == "hello\r\nhello\r\n", fmt.Sprintf("%q", s)
	})
	if _, err := io.WriteString(inW, "\x04"); err != nil { // ^D: end of file
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err != nil || res.code != 0 {
			t.Fatalf("cat: %d %v", res.code, res.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("cat did not end at ^D; output %q", out.bytes())
	}
	// cat's count goes to its stderr, which is the terminal.
	if s := string(out.bytes()); s != "hello\r\nhello\r\n6 bytes\r\n" {
		t.Fatalf("cat output %q", s)
	}

	// Without stdin or resizes; the exit code comes back.
	out2 := &lockedWriter{w: &bytes.Buffer{}}
	code, err := r.pm.ExecTTY(ctx, "default", "web-t", "web", []string{"/app", "fail", "4"}, nil, out2, nil)
	if err != nil || code != 4 || string(out2.bytes()) != "failing with 4\r\n" {
		t.Fatalf("fail 4: %d %v %q", code, err, out2.bytes())
	}

	// The client's first size is the terminal's from the start: a program
	// that reads it at once sees it, not 0x0.
	sized := make(chan TerminalSize, 1)
	sized <- TerminalSize{Width: 123, Height: 41}
	out4 := &lockedWriter{w: &bytes.Buffer{}}
	if code, err := r.pm.ExecTTY(ctx, "default", "web-t", "", []string{"/app", "tty"}, nil, out4, sized); err != nil || code != 0 ||
		!strings.Contains(string(out4.bytes()), "tty=true rows=41 cols=123") {
		t.Fatalf("tty with a first size: %d %v %q", code, err, out4.bytes())
	}

	// A command cut short by its context is killed.
	inR3, inW3 := io.Pipe()
	defer inW3.Close()
	cctx, ccancel := context.WithTimeout(ctx, time.Second)
	defer ccancel()
	start := time.Now()
	if _, err := r.pm.ExecTTY(cctx, "default", "web-t", "", []string{"/app", "cat"}, inR3, io.Discard, nil); err == nil ||
		!strings.Contains(err.Error(), context.DeadlineExceeded.Error()) || time.Since(start) > 10*time.Second {
		t.Fatalf("cut short: %v after %s", err, time.Since(start))
	}

	if _, err := r.pm.ExecTTY(ctx, "default", "web-t", "nope", []string{"/app", "echo"}, nil, io.Discard, nil); err == nil ||
		!strings.Contains(err.Error(), `container "nope" is not in pod "default/web-t"`) {
		t.Fatalf("unknown container: %v", err)
	}
}
