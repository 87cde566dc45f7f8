package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/apiserver/stream"
	"github.com/chorus-sh/chorus/runtime"
)

// kubeStreams serves pods/exec, pods/attach and pods/portforward of the
// Kubernetes API (kubectl exec -it, port-forward). A request for a pod
// another peer runs is passed, upgrade and all, to that peer.
type kubeStreams struct {
	a   *Agent
	srv *stream.Server
}

func newKubeStreams(a *Agent) *kubeStreams {
	k := &kubeStreams{a: a}
	k.srv = &stream.Server{Execer: k, Attacher: k, PortForwarder: k, Logger: a.log.With("component", "streams")}
	return k
}

// local reports whether this peer runs the pod; if another peer does, the
// request has been passed to it and handled is true.
func (k *kubeStreams) local(w http.ResponseWriter, r *http.Request) (ns, name string, handled bool) {
	ns, name = r.PathValue("namespace"), r.PathValue("name")
	if _, err := k.a.pods.ExecContainer(ns, name, ""); errors.Is(err, runtime.ErrPodNotHere) {
		if k.a.forwardToPod(w, r, ns, name) {
			return ns, name, true
		}
		writeError(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name))
		return ns, name, true
	}
	return ns, name, false
}

func (k *kubeStreams) exec(w http.ResponseWriter, r *http.Request) {
	if ns, name, handled := k.local(w, r); !handled {
		k.srv.ServeExec(w, r, ns, name)
	}
}

func (k *kubeStreams) attach(w http.ResponseWriter, r *http.Request) {
	if ns, name, handled := k.local(w, r); !handled {
		k.srv.ServeAttach(w, r, ns, name)
	}
}

func (k *kubeStreams) portForward(w http.ResponseWriter, r *http.Request) {
	if ns, name, handled := k.local(w, r); !handled {
		k.srv.ServePortForward(w, r, ns, name)
	}
}

// Exec runs a command in a container of a pod this peer runs.
func (k *kubeStreams) Exec(ctx context.Context, req stream.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan stream.TerminalSize) (int, error) {
	if _, err := k.a.pods.ExecContainer(req.Namespace, req.Pod, req.Container); err != nil {
		if errors.Is(err, runtime.ErrNoContainer) {
			return 0, apierrors.NewBadRequest(err.Error())
		}
		return 0, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, req.Pod)
	}
	if stdin == nil {
		stdin = eofReader{}
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if !req.TTY {
		if stderr == nil {
			stderr = io.Discard
		}
		return k.a.pods.Exec(ctx, req.Namespace, req.Pod, req.Container, req.Command, stdin, stdout, stderr)
	}
	// The stream server closes resize when the session ends; until then
	// every size is passed on, or dropped once the command has returned.
	sizes := make(chan runtime.TerminalSize)
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The connection hands over its messages in order, each once its
	// stream's reader takes it: input kubectl sent before its terminal's
	// size (a keystroke, its terminal's EOF) held the size back until the
	// command started, and the command was started once the size came or
	// after 2 s, so it saw a 0x0 terminal. Input is read ahead instead.
	stdin = readAhead(ectx, stdin)
	go func() {
		for sz := range resize {
			select {
			case sizes <- runtime.TerminalSize{Width: sz.Width, Height: sz.Height}:
			case <-ectx.Done():
			}
		}
	}()
	return k.a.pods.ExecTTY(ctx, req.Namespace, req.Pod, req.Container, req.Command, stdin, stdout, sizes)
}

// Attach streams what a running container writes from now on, until it
// exits or the client goes away (kubectl attach). A container's output goes
// to its log file (so it outlives the agent), which Attach follows. Its
// stdin is not kept open (containers run without one: the fields stdin
// and tty of a container are ignored), so an attach with stdin is refused.
func (k *kubeStreams) Attach(ctx context.Context, req stream.ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan stream.TerminalSize) error {
	if req.Stdin {
		return apierrors.NewBadRequest("attach with stdin: chorus runs containers without a stdin to attach to (their stdin and tty fields are ignored); attach without -i follows the output, kubectl exec -it runs a shell")
	}
	logPath := func() (string, error) {
		if _, err := k.a.pods.ExecContainer(req.Namespace, req.Pod, req.Container); err != nil {
			return "", err // not running
		}
		return k.a.pods.LogPath(req.Namespace, req.Pod, req.Container, false)
	}
	path, err := logPath()
	if err != nil {
		if errors.Is(err, runtime.ErrPodNotHere) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, req.Pod)
		}
		return apierrors.NewBadRequest(err.Error())
	}
	out := stdout
	if out == nil {
		out = io.Discard
	}
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return err
		}
	} else {
		f = nil // not written yet
	}
	// Until the container ends (it exited, its pod is gone, or a restart
	// opened another log).
	followFile(ctx, out, path, f, nil, func() bool {
		now, err := logPath()
		return err != nil || now != path
	})
	return nil
}

type eofReader struct{}

// readAhead reads r in the background, up to 64 reads ahead of the
// returned reader, until r ends or ctx does (then the reader ends too).
func readAhead(ctx context.Context, r io.Reader) io.Reader {
	a := &aheadReader{ch: make(chan []byte, 64)}
	go func() {
		defer close(a.ch)
		for {
			buf := make([]byte, 4<<10) // a keystroke, or a paste's piece
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case a.ch <- buf[:n]:
				case <-ctx.Done():
					a.err = ctx.Err()
					return
				}
			}
			if err != nil {
				a.err = err
				return
			}
		}
	}()
	return a
}

// aheadReader reads what readAhead's goroutine read; err is set before ch
// is closed.
type aheadReader struct {
	ch  chan []byte
	err error
	buf []byte
}

func (a *aheadReader) Read(p []byte) (int, error) {
	for len(a.buf) == 0 {
		b, ok := <-a.ch
		if !ok {
			return 0, a.err
		}
		a.buf = b
	}
	n := copy(p, a.buf)
	a.buf = a.buf[n:]
	return n, nil
}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// PortForward joins stream to a port of a pod this peer runs.
func (k *kubeStreams) PortForward(ctx context.Context, ns, pod string, port int32, s io.ReadWriteCloser) error {
	defer s.Close()
	p := k.a.findClusterPod(ns, pod, func(p *api.Pod) bool { return p.Spec.NodeName == k.a.cfg.Name })
	if p == nil || p.Status.PodIP == "" {
		return fmt.Errorf("pod %s/%s has no address on this peer", ns, pod)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("pod %s/%s port %d: %w", ns, pod, port, err)
	}
	defer c.Close()
	errc := make(chan error, 2)
	go func() { _, err := io.Copy(c, s); _ = c.(*net.TCPConn).CloseWrite(); errc <- err }()
	go func() { _, err := io.Copy(s, c); errc <- err }()
	<-errc
	<-errc
	return nil
}
