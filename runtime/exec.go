package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// TerminalSize is the size of an exec's terminal, in characters.
type TerminalSize struct {
	Width, Height uint16
}

// TTYExecer is implemented by runtimes that run commands with a terminal
// (Containerd does).
type TTYExecer interface {
	// ExecTTY runs cmd inside the running container with a terminal, as
	// kubectl exec -t does: stdin (nil for none) is typed into the terminal,
	// and the terminal's output (the process's stdout and stderr both) is
	// written to stdout. The terminal takes each size received on resize
	// (nil for none) until the process exits; the caller keeps sending
	// until ExecTTY returns or stops by closing resize. The end of stdin is
	// not an end of file for the process (a terminal sends that as ^D); the
	// rest is as ExecStream: the exit code once the process has exited and
	// its output is written, the process killed when ctx ends.
	ExecTTY(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout io.Writer, resize <-chan TerminalSize) (int, error)
}

// execIO is the streams of one exec.
type execIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool
	resize         <-chan TerminalSize
}

// ExecTTY implements TTYExecer.
func (c *Containerd) ExecTTY(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout io.Writer, resize <-chan TerminalSize) (int, error) {
	if stdout == nil {
		stdout = io.Discard // a terminal always has an output
	}
	return c.exec(ctx, id, cmd, execIO{stdin: stdin, stdout: stdout, tty: true, resize: resize})
}

// firstSize waits at most wait for the first size on resize; it reports
// false when none comes, the channel closes or ctx ends. A 0x0 size (a
// client that cannot read its terminal yet, or at all) is passed over: a
// real size may follow it within the wait.
func firstSize(ctx context.Context, resize <-chan TerminalSize, wait time.Duration) (TerminalSize, bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case sz, ok := <-resize:
			if !ok {
				return TerminalSize{}, false
			}
			if sz.Width > 0 && sz.Height > 0 {
				return sz, true
			}
		case <-t.C:
			return TerminalSize{}, false
		case <-ctx.Done():
			return TerminalSize{}, false
		}
	}
}

// resizeTerminal gives proc's terminal each size received on resize, until
// resize is closed or the returned stop is called; stop returns once no
// resize is in progress.
func resizeTerminal(ctx context.Context, proc containerd.Process, resize <-chan TerminalSize) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case sz, ok := <-resize:
				if !ok {
					return
				}
				if sz.Width == 0 || sz.Height == 0 {
					continue // kubectl sends 0x0 when it cannot read its terminal
				}
				// A failed resize (the process has just exited) leaves the
				// terminal as it was: nothing to undo.
				_ = proc.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// ExecTTY runs cmd with a terminal in a container of a pod this peer runs,
// as kubectl exec -it does (see TTYExecer.ExecTTY). The container is
// resolved as ExecContainer does, with the same errors.
func (m *PodManager) ExecTTY(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout io.Writer, resize <-chan TerminalSize) (int, error) {
	name, err := m.ExecContainer(namespace, pod, container)
	if err != nil {
		return -1, err
	}
	t, ok := m.rt.(TTYExecer)
	if !ok {
		return -1, fmt.Errorf("exec with a terminal in %s/%s: the runtime has no terminals", namespace, pod)
	}
	key := namespace + "/" + pod
	m.opts.Log.Debug("exec", "pod", key, "container", name, "command", cmd, "tty", true)
	return t.ExecTTY(ctx, containerID(key, name), cmd, stdin, stdout, resize)
}
