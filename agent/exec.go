package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
)

// execLinger bounds how long the agent waits, after the last frame of an
// exec, for the client to close the connection first (so that nothing the
// client sent stays unread when the agent closes, which would reset the
// connection under the last frame).
const execLinger = 5 * time.Second

// handleExec runs a command in a container of a pod, as kubectl exec does
// without a TTY: `chorus exec`. The query holds the command (command, once
// per argument), the container (container; none for a pod's only one) and
// whether the client sends stdin (stdin=true). A pod this peer does not run
// is passed to the peer that runs it. Otherwise the connection is upgraded
// (Upgrade: chorus-exec) and speaks the framed protocol of api.ExecProtocol:
// stdin frames in, stdout and stderr frames out, then the exit code or an
// error. Closing the connection kills the command.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	command := q["command"]
	if len(command) == 0 || command[0] == "" {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "exec needs a command: give it as query parameters command, one per argument")
		return
	}
	withStdin := false
	if v := q.Get("stdin"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("query parameter stdin must be true or false, not %q", v))
			return
		}
		withStdin = b
	}
	container := q.Get("container")
	if _, err := a.pods.ExecContainer(ns, name, container); err != nil {
		switch {
		case errors.Is(err, runtime.ErrPodNotHere):
			if a.forwardToPod(w, r, ns, name) {
				return
			}
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found on any alive peer", name))
		case errors.Is(err, runtime.ErrNoContainer):
			writeStatus(w, http.StatusNotFound, "NotFound", err.Error())
		default:
			writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error())
		}
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.ExecProtocol) {
		writeStatus(w, http.StatusBadRequest, "BadRequest",
			"exec needs an upgraded connection: send the headers 'Connection: Upgrade' and 'Upgrade: "+api.ExecProtocol+"'")
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		writeStatus(w, http.StatusInternalServerError, "InternalError", "connection cannot be taken over")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	_ = conn.SetDeadline(time.Time{}) // the server's, if any, were for the request
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.ExecProtocol + "\r\nConnection: Upgrade\r\n\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return
	}
	// What the client sent past the request may already be buffered.
	var in io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(b), conn)
	}
	log := a.log.With("pod", ns+"/"+name, "container", container, "command", command)
	log.Debug("exec")
	serveExec(r.Context(), conn, in, withStdin, log,
		func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
			return a.pods.Exec(ctx, ns, name, container, command, stdin, stdout, stderr)
		})
}

// execFunc runs a command with its streams and returns its exit code.
type execFunc func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error)

// serveExec speaks the agent's side of the exec protocol on an upgraded
// connection whose input is in: it runs the command (with the stdin frames
// as stdin when withStdin), sends its output, then its exit code or error,
// and closes conn. The command's context ends when the client goes away or
// breaks the protocol.
func serveExec(ctx context.Context, conn net.Conn, in io.Reader, withStdin bool, log *slog.Logger, run execFunc) {
	defer conn.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := &execFrames{w: conn, broken: cancel}
	pr, pw := io.Pipe()
	var stdin io.Reader
	if withStdin {
		stdin = pr
	} else {
		pr.Close() // stdin frames, which the client should not send, are dropped
	}
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		readExecInput(in, pw, cancel)
	}()

	code, err := run(ctx, stdin, execStream{out, api.ExecStdout}, execStream{out, api.ExecStderr})
	pr.CloseWithError(errors.New("the command has ended")) // ends a Read of stdin left in progress
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		log.Debug("exec failed", "err", err)
		_ = out.send(api.ExecError, []byte(err.Error()))
	} else {
		log.Debug("exec ended", "code", code)
		_ = out.sendExit(code)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(execLinger))
	<-inputDone
}

// execStdinQueue is how many stdin frames may wait for the command to read
// them while the agent reads on (to notice the client leave); past it the
// client is slowed down.
const execStdinQueue = 16

// readExecInput reads the client's frames until the connection ends,
// writing stdin frames to stdin; then, or at a protocol error, it cancels
// the command.
func readExecInput(in io.Reader, stdin *io.PipeWriter, cancel context.CancelCauseFunc) {
	queue := make(chan []byte, execStdinQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range queue {
			// This fails once stdin is closed or the command has ended:
			// the frame is dropped.
			_, _ = stdin.Write(p)
		}
		stdin.Close()
	}()
	queued := true
	defer func() {
		if queued {
			close(queue)
		}
		<-done
	}()
	for {
		stream, p, err := api.ReadExecFrame(in)
		if err == nil && stream != api.ExecStdin {
			err = fmt.Errorf("%w: the client sent a frame on stream %d", api.ErrExecFrame, stream)
		}
		if err != nil {
			if errors.Is(err, api.ErrExecFrame) {
				err = fmt.Errorf("exec protocol: %w", err)
			} else {
				err = fmt.Errorf("the client connection ended: %w", err)
			}
			stdin.CloseWithError(err) // before the queue's Close, and ends a blocked Write
			cancel(err)
			return
		}
		switch {
		case !queued:
			// stdin was closed: drop the frame.
		case len(p) == 0:
			close(queue)
			queued = false
		default:
			queue <- p
		}
	}
}

// execFrames writes frames to the client, one at a time. The first failed
// write calls broken: the client is gone.
type execFrames struct {
	mu     sync.Mutex
	w      io.Writer
	err    error
	broken context.CancelCauseFunc
}

func (f *execFrames) send(stream byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if err := api.WriteExecFrame(f.w, stream, p); err != nil {
		f.err = fmt.Errorf("write to the client: %w", err)
		f.broken(f.err)
		return f.err
	}
	return nil
}

func (f *execFrames) sendExit(code int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if err := api.WriteExecExit(f.w, code); err != nil {
		f.err = err
		return err
	}
	return nil
}

// execStream is the command's stdout or stderr: each write is sent as
// frames of that stream.
type execStream struct {
	f      *execFrames
	stream byte
}

func (s execStream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.f.send(s.stream, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
