package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// TerminalSize is a terminal's size in characters, as kubectl sends it when
// its terminal is resized.
type TerminalSize = remotecommand.TerminalSize

// ExecRequest says what to run (exec) or attach to (attach), and which
// streams the client opened.
type ExecRequest struct {
	Namespace string
	Pod       string
	// Container is the container named by the client; empty when it named
	// none (the pod's only or default container is then meant).
	Container string
	// Command is the command to run; empty for attach.
	Command []string
	// Stdin, Stdout and Stderr say which streams the client opened; a stream
	// not opened is passed as nil. With TTY, Stderr is false: the terminal
	// carries both outputs.
	Stdin, Stdout, Stderr bool
	// TTY asks for a terminal; then resize carries its size changes.
	TTY bool
}

// Execer runs a command in a container of a pod.
type Execer interface {
	// Exec runs req.Command in the container and copies the streams until
	// the command exits, and returns its exit code. stdin, stdout and stderr
	// are nil when the client did not open them; stdin ends when the client
	// closes its input. resize is nil without a TTY; otherwise it delivers
	// the terminal's size, first as soon as the client sends it. ctx ends
	// when the client goes away (on WebSocket; over SPDY it ends with the
	// request): the command should then be killed. A non-zero exit code with
	// a nil error is the command's own failure and reaches the client as
	// such; an error is a failure to run it (an error that carries a
	// Kubernetes status, such as one of k8s.io/apimachinery/pkg/api/errors,
	// is passed on as that status over WebSocket).
	Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) (exitCode int, err error)
}

// Attacher attaches to the main process of a running container.
type Attacher interface {
	// Attach copies the streams to and from the container's process until
	// the client or the process ends; req.Command is empty. The streams and
	// resize are as for Execer.Exec.
	Attach(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) error
}

// PortForwarder connects a client's stream to a port of a pod.
type PortForwarder interface {
	// PortForward copies bytes both ways between stream and the pod's port
	// until either side ends, and closes nothing but what it opened: the
	// stream is closed by the caller after PortForward returns. ctx is not
	// cancelled when the client goes away (the stream's Read then fails):
	// PortForward must return when the stream ends. A returned error is
	// shown to the client.
	PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error
}

// Default timeouts, the kubelet's.
const (
	DefaultIdleTimeout           = 4 * time.Hour
	DefaultStreamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// Server serves exec, attach and port-forward. A nil Execer, Attacher or
// PortForwarder makes its subresource answer 501 Not Implemented, as a
// Status. The caller authenticates the request and checks that the pod
// exists (answering 404 as it answers for the pod) before calling.
type Server struct {
	Execer        Execer
	Attacher      Attacher
	PortForwarder PortForwarder
	// Logger receives one line per failed stream; nil logs to slog.Default.
	Logger *slog.Logger
	// IdleTimeout closes a connection on which nothing was sent for so long;
	// zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// StreamCreationTimeout bounds the time a SPDY client takes to open its
	// streams; zero means DefaultStreamCreationTimeout.
	StreamCreationTimeout time.Duration
}

// Paths that Mount registers; {namespace} and {name} are the pod's.
const (
	ExecPath        = "/api/v1/namespaces/{namespace}/pods/{name}/exec"
	AttachPath      = "/api/v1/namespaces/{namespace}/pods/{name}/attach"
	PortForwardPath = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
)

// Mount registers the three subresources on mux, for GET (WebSocket) and
// POST (SPDY), at ExecPath, AttachPath and PortForwardPath.
func (s *Server) Mount(mux *http.ServeMux) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		mux.HandleFunc(m+" "+ExecPath, func(w http.ResponseWriter, r *http.Request) {
			s.ServeExec(w, r, r.PathValue("namespace"), r.PathValue("name"))
		})
		mux.HandleFunc(m+" "+AttachPath, func(w http.ResponseWriter, r *http.Request) {
			s.ServeAttach(w, r, r.PathValue("namespace"), r.PathValue("name"))
		})
		mux.HandleFunc(m+" "+PortForwardPath, func(w http.ResponseWriter, r *http.Request) {
			s.ServePortForward(w, r, r.PathValue("namespace"), r.PathValue("name"))
		})
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) streamCreationTimeout() time.Duration {
	if s.StreamCreationTimeout > 0 {
		return s.StreamCreationTimeout
	}
	return DefaultStreamCreationTimeout
}

// ParseExecRequest reads the query parameters of PodExecOptions (attach
// false) or PodAttachOptions (attach true), as kubectl sends them:
// container, command (repeated; exec only), stdin, stdout, stderr and tty
// (booleans: true, false, 1, 0). The error names the parameter at fault.
func ParseExecRequest(q url.Values, namespace, pod string, attach bool) (ExecRequest, error) {
	req := ExecRequest{Namespace: namespace, Pod: pod}
	switch c := q["container"]; len(c) {
	case 0:
	case 1:
		req.Container = c[0]
	default:
		return ExecRequest{}, fmt.Errorf("query parameter container: given %d times, want one", len(c))
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"stdin", &req.Stdin}, {"stdout", &req.Stdout}, {"stderr", &req.Stderr}, {"tty", &req.TTY}} {
		v := q[b.name]
		if len(v) == 0 {
			continue
		}
		if len(v) > 1 {
			return ExecRequest{}, fmt.Errorf("query parameter %s: given %d times, want one", b.name, len(v))
		}
		x, err := strconv.ParseBool(v[0])
		if err != nil {
			return ExecRequest{}, fmt.Errorf("query parameter %s: %q is not a boolean", b.name, v[0])
		}
		*b.dst = x
	}
	if req.TTY {
		req.Stderr = false // the terminal carries both outputs, as on a kubelet
	}
	if !req.Stdin && !req.Stdout && !req.Stderr {
		return ExecRequest{}, fmt.Errorf("query parameters stdin, stdout, stderr: at least one must be true")
	}
	cmd := q["command"]
	if attach {
		if len(cmd) > 0 {
			return ExecRequest{}, fmt.Errorf("query parameter command: attach runs no command")
		}
		return req, nil
	}
	if len(cmd) == 0 {
		return ExecRequest{}, fmt.Errorf("query parameter command: required")
	}
	if cmd[0] == "" {
		return ExecRequest{}, fmt.Errorf("query parameter command: the first (the program) is empty")
	}
	req.Command = cmd
	return req, nil
}

// writeStatus answers a request that was not upgraded with st as JSON.
func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.Kind, st.APIVersion = "Status", "v1"
	st.Status = metav1.StatusFailure
	b, err := json.Marshal(st)
	if err != nil { // a Status always encodes; keep the code anyway
		http.Error(w, st.Message, int(st.Code))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	_, _ = w.Write(b)
}

func badRequest(w http.ResponseWriter, err error) {
	writeStatus(w, apierrors.NewBadRequest(err.Error()).ErrStatus)
}

func notImplemented(w http.ResponseWriter, what string) {
	writeStatus(w, metav1.Status{Code: http.StatusNotImplemented, Message: what + " is not served by this peer"})
}
