package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// WebSocket subprotocols of exec and attach, newest first.
const (
	protoV5       = remotecommand.StreamProtocolV5Name // v5.channel.k8s.io: v4 and the close signal
	protoV4       = remotecommand.StreamProtocolV4Name // v4.channel.k8s.io: v1 and a Status on the error channel
	protoV4Base64 = "v4." + wsstream.Base64ChannelWebSocketProtocol
	protoV1       = wsstream.ChannelWebSocketProtocol
	protoV1Base64 = wsstream.Base64ChannelWebSocketProtocol
)

// WebSocket channel numbers.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// ServeExec serves kubectl exec for the pod namespace/name: the command and
// streams are read from the query (see ParseExecRequest).
func (s *Server) ServeExec(w http.ResponseWriter, r *http.Request, namespace, pod string) {
	if s.Execer == nil {
		notImplemented(w, "pods/exec")
		return
	}
	req, err := ParseExecRequest(r.URL.Query(), namespace, pod, false)
	if err != nil {
		badRequest(w, err)
		return
	}
	run := func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) (int, error) {
		return s.Execer.Exec(ctx, req, stdin, stdout, stderr, resize)
	}
	s.serve(w, r, req, "exec", run)
}

// ServeAttach serves kubectl attach for the pod namespace/name.
func (s *Server) ServeAttach(w http.ResponseWriter, r *http.Request, namespace, pod string) {
	if s.Attacher == nil {
		notImplemented(w, "pods/attach")
		return
	}
	req, err := ParseExecRequest(r.URL.Query(), namespace, pod, true)
	if err != nil {
		badRequest(w, err)
		return
	}
	run := func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) (int, error) {
		return 0, s.Attacher.Attach(ctx, req, stdin, stdout, stderr, resize)
	}
	s.serve(w, r, req, "attach", run)
}

type runFunc func(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) (int, error)

func (s *Server) serve(w http.ResponseWriter, r *http.Request, req ExecRequest, verb string, run runFunc) {
	opts := &remotecommand.Options{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, TTY: req.TTY}
	if wsstream.IsWebSocketRequest(r) {
		s.serveWebSocket(w, r, req, verb, opts, run)
		return
	}
	// SPDY: the kubelet's server, with an exit code turned into the error
	// it reports as a NonZeroExitCode Status.
	a := adapter{run: run, verb: verb, req: req, log: s}
	if verb == "attach" {
		remotecommand.ServeAttach(w, r, a, req.Pod, "", req.Container, opts, s.idleTimeout(), s.streamCreationTimeout(), remotecommand.SupportedStreamingProtocols)
		return
	}
	remotecommand.ServeExec(w, r, a, req.Pod, "", req.Container, req.Command, opts, s.idleTimeout(), s.streamCreationTimeout(), remotecommand.SupportedStreamingProtocols)
}

// adapter turns a runFunc into the kubelet server's Executor and Attacher.
type adapter struct {
	run  runFunc
	verb string
	req  ExecRequest
	log  *Server
}

func (a adapter) ExecInContainer(ctx context.Context, _, _, _ string, _ []string, in io.Reader, out, errOut io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	code, err := a.run(ctx, readerOrNil(in), writerOrNil(out), writerOrNil(errOut), resize)
	if err != nil {
		a.log.logger().Warn("stream: "+a.verb+" failed", "pod", a.req.Namespace+"/"+a.req.Pod, "container", a.req.Container, "err", err)
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (a adapter) AttachContainer(ctx context.Context, _, _, _ string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.ExecInContainer(ctx, "", "", "", nil, in, out, errOut, tty, resize, 0)
}

// readerOrNil and writerOrNil turn a nil stream of the kubelet server's
// interface types into a nil of ours (not an interface holding a nil).
func readerOrNil(r io.Reader) io.Reader {
	if r == nil {
		return nil
	}
	return r
}

func writerOrNil(w io.WriteCloser) io.Writer {
	if w == nil {
		return nil
	}
	return w
}

// wsSettle is how long a WebSocket exec or attach waits after the
// handshake before it writes anything (see serveWebSocket).
const wsSettle = 100 * time.Millisecond

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, req ExecRequest, verb string, opts *remotecommand.Options, run runFunc) {
	channel := func(open bool, t wsstream.ChannelType) wsstream.ChannelType {
		if open {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chanStdin:  channel(opts.Stdin, wsstream.ReadChannel),
		chanStdout: channel(opts.Stdout, wsstream.WriteChannel),
		chanStderr: channel(opts.Stderr, wsstream.WriteChannel),
		chanError:  wsstream.WriteChannel,
		chanResize: wsstream.ReadChannel,
	}
	binary := wsstream.ChannelProtocolConfig{Binary: true, Channels: channels}
	base64 := wsstream.ChannelProtocolConfig{Binary: false, Channels: channels}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		protoV5: binary, protoV4: binary, protoV4Base64: base64,
		protoV1: binary, protoV1Base64: base64, "": binary,
	})
	conn.SetIdleTimeout(s.idleTimeout())
	proto, streams, err := conn.Open(w, r)
	if err != nil {
		// The handshake has answered the client (400 for a protocol it
		// does not share, which kubectl takes as the cue to fall back).
		s.logger().Info("stream: websocket upgrade failed", "pod", req.Namespace+"/"+req.Pod, "err", err)
		return
	}
	// kubectl 1.32 starts reading the connection before it has made its
	// streams, and drops what arrives for a stream not yet made (client-go
	// fixed it later): a command that fails at once would lose its error
	// (kubectl said "closed all streams"). Give it a moment first.
	select {
	case <-time.After(wsSettle):
	case <-r.Context().Done():
		_ = conn.Close()
		return
	}
	// An empty message on the first channel the client reads tells it the
	// streams are ready.
	switch {
	case opts.Stdout:
		_, err = streams[chanStdout].Write(nil)
	case opts.Stderr:
		_, err = streams[chanStderr].Write(nil)
	default:
		_, err = streams[chanError].Write(nil)
	}
	if err != nil {
		_ = conn.Close()
		return
	}

	// The resize channel ends only when the connection does (no client
	// closes it alone): that ends ctx, so a command whose client went away
	// is stopped.
	ctx, cancel := context.WithCancel(r.Context())
	var resize chan TerminalSize
	if req.TTY {
		resize = make(chan TerminalSize)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		readResizes(ctx, streams[chanResize], resize)
	}()

	var stdin io.Reader
	var stdout, stderr io.Writer
	if opts.Stdin {
		stdin = streams[chanStdin]
	}
	if opts.Stdout {
		stdout = streams[chanStdout]
	}
	if opts.Stderr {
		stderr = streams[chanStderr]
	}
	code, runErr := run(ctx, stdin, stdout, stderr, resize)

	st := resultStatus(verb, code, runErr)
	if runErr != nil {
		s.logger().Warn("stream: "+verb+" failed", "pod", req.Namespace+"/"+req.Pod, "container", req.Container, "err", runErr)
	}
	if err := writeStreamStatus(streams[chanError], proto, st); err != nil {
		s.logger().Info("stream: writing the "+verb+" status", "pod", req.Namespace+"/"+req.Pod, "err", err)
	}
	_ = conn.Close()
	cancel()
	wg.Wait()
}

// readResizes decodes the sizes the client sends (JSON objects, one after
// the other) onto resize until the stream ends; with a nil resize it only
// waits for the end.
func readResizes(ctx context.Context, stream io.Reader, resize chan<- TerminalSize) {
	if resize == nil {
		_, _ = io.Copy(io.Discard, stream)
		return
	}
	dec := json.NewDecoder(stream)
	for {
		var size TerminalSize
		if err := dec.Decode(&size); err != nil {
			// A malformed size ends the decoding; drain so that the end
			// of the connection is still seen.
			_, _ = io.Copy(io.Discard, stream)
			return
		}
		select {
		case resize <- size:
		case <-ctx.Done():
			_, _ = io.Copy(io.Discard, stream)
			return
		}
	}
}

// resultStatus is the Status reporting how an exec or attach ended.
func resultStatus(verb string, code int, err error) metav1.Status {
	var apiStatus apierrors.APIStatus
	switch {
	case err != nil && errors.As(err, &apiStatus):
		return apiStatus.Status()
	case err != nil:
		what := "executing command in"
		if verb == "attach" {
			what = "attaching to"
		}
		return apierrors.NewInternalError(fmt.Errorf("error %s container: %w", what, err)).ErrStatus
	case code != 0:
		return metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: command terminated with exit code %d", code),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type:    remotecommand.ExitCodeCauseType,
				Message: fmt.Sprint(code),
			}}},
		}
	}
	return metav1.Status{Status: metav1.StatusSuccess}
}

// writeStreamStatus sends st on the error channel: as JSON from v4 on, as
// the bare message (and nothing on success) before.
func writeStreamStatus(w io.Writer, proto string, st metav1.Status) error {
	switch proto {
	case protoV5, protoV4, protoV4Base64:
		st.Kind, st.APIVersion = "Status", "v1"
		b, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("encode status: %w", err)
		}
		_, err = w.Write(b)
		return err
	}
	if st.Status == metav1.StatusSuccess {
		return nil
	}
	_, err := io.WriteString(w, st.Message)
	return err
}
