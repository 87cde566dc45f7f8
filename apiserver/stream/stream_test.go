package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	utilexec "k8s.io/client-go/util/exec"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// fakeExec runs a few commands in memory, as a container would:
//
//	echo ARGS...  prints ARGS to stdout and "to stderr" to stderr
//	cat           copies stdin to stdout, then "N bytes" to stderr
//	fail N        exits with N
//	broken        fails to run (an error, not an exit code)
//	missing       fails with a NotFound status
//	tty           prints each terminal size received and each line stdin
//	              sends, until stdin ends or sends ^D
type fakeExec struct {
	mu   sync.Mutex
	reqs []ExecRequest
}

func (f *fakeExec) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) (int, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	switch req.Command[0] {
	case "echo":
		fmt.Fprintln(stdout, strings.Join(req.Command[1:], " "))
		if stderr != nil {
			fmt.Fprintln(stderr, "to stderr")
		}
		return 0, nil
	case "cat":
		n, err := io.Copy(stdout, stdin)
		fmt.Fprintf(stderr, "%d bytes\n", n)
		return 0, err
	case "fail":
		n, err := strconv.Atoi(req.Command[1])
		return n, err
	case "broken":
		return -1, errors.New("no such binary")
	case "missing":
		return -1, apierrors.NewNotFound(podsResource, req.Pod)
	case "tty":
		if !req.TTY || resize == nil || stderr != nil {
			return 1, fmt.Errorf("tty: %+v, resize %v, stderr %v", req, resize != nil, stderr != nil)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdin)
			sc.Split(terminalLines)
			for sc.Scan() {
				select {
				case lines <- sc.Text():
				case <-ctx.Done():
					return
				}
			}
		}()
		for {
			select {
			case sz := <-resize:
				fmt.Fprintf(stdout, "size %dx%d\r\n", sz.Width, sz.Height)
			case l, ok := <-lines:
				if !ok {
					return 0, nil
				}
				fmt.Fprintf(stdout, "got %s\r\n", l)
			case <-ctx.Done():
				return -1, ctx.Err()
			}
		}
	}
	return 127, nil
}

// terminalLines splits what a terminal in raw mode sends into lines ended by
// \r (Enter) or \n; ^D ends the input.
func terminalLines(data []byte, atEOF bool) (int, []byte, error) {
	for i, b := range data {
		switch b {
		case '\r', '\n':
			return i + 1, data[:i], nil
		case 4:
			if i > 0 {
				return i, data[:i], nil
			}
			return 0, nil, bufio.ErrFinalToken
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

var podsResource = schema.GroupResource{Resource: "pods"}

func newServer(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	s.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func execURL(t *testing.T, srv *httptest.Server, q url.Values) *url.URL {
	t.Helper()
	u, err := url.Parse(srv.URL + "/api/v1/namespaces/ns1/pods/web/exec?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func execQuery(stdin, tty bool, cmd ...string) url.Values {
	q := url.Values{"container": {"app"}, "command": cmd, "stdout": {"true"}}
	if stdin {
		q.Set("stdin", "true")
	}
	if tty {
		q.Set("tty", "true")
	} else {
		q.Set("stderr", "true")
	}
	return q
}

// executors are the three ways kubectl 1.32 runs exec: WebSocket (v5), the
// SPDY fallback alone, and the fallback executor it builds of both.
var executors = []struct {
	name string
	new  func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error)
}{
	{"websocket", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}},
	{"spdy", func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
		return remotecommand.NewSPDYExecutor(cfg, "POST", u)
	}},
	{"fallback", newFallbackExecutor},
}

// newFallbackExecutor builds the executor as kubectl exec does.
func newFallbackExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	sp, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, sp, shouldFallback)
}

// shouldFallback is kubectl's test for falling back to SPDY. The client-go
// here returns k8s.io/streaming's errors, kubectl 1.32's apimachinery's:
// either counts.
func shouldFallback(err error) bool {
	return streamhttp.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err) ||
		httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
}

type sizeQueue struct {
	sizes chan *remotecommand.TerminalSize
}

func (q sizeQueue) Next() *remotecommand.TerminalSize { return <-q.sizes }

func TestExec(t *testing.T) {
	fe := &fakeExec{}
	srv := newServer(t, &Server{Execer: fe})
	cfg := &rest.Config{Host: srv.URL}
	for _, ex := range executors {
		t.Run(ex.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			run := func(q url.Values, opts remotecommand.StreamOptions) error {
				t.Helper()
				e, err := ex.new(cfg, execURL(t, srv, q))
				if err != nil {
					t.Fatal(err)
				}
				return e.StreamWithContext(ctx, opts)
			}

			var out, errOut bytes.Buffer
			if err := run(execQuery(false, false, "echo", "hello", "world"), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut}); err != nil {
				t.Fatalf("echo: %v", err)
			}
			if out.String() != "hello world\n" || errOut.String() != "to stderr\n" {
				t.Fatalf("echo: stdout %q, stderr %q", out.String(), errOut.String())
			}
			fe.mu.Lock()
			got := fe.reqs[len(fe.reqs)-1]
			fe.mu.Unlock()
			if got.Namespace != "ns1" || got.Pod != "web" || got.Container != "app" || got.Stdin || !got.Stdout || !got.Stderr || got.TTY {
				t.Fatalf("request: %+v", got)
			}

			// Stdin, more than any buffer holds, and its end reaches the command.
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			out.Reset()
			errOut.Reset()
			if err := run(execQuery(true, false, "cat"), remotecommand.StreamOptions{Stdin: bytes.NewReader(big), Stdout: &out, Stderr: &errOut}); err != nil {
				t.Fatalf("cat: %v", err)
			}
			if !bytes.Equal(out.Bytes(), big) || errOut.String() != fmt.Sprintf("%d bytes\n", len(big)) {
				t.Fatalf("cat: %d bytes out, stderr %q", out.Len(), errOut.String())
			}

			// The exit code reaches the client as kubectl reads it.
			err := run(execQuery(false, false, "fail", "3"), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
			var exitErr utilexec.ExitError
			if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 3 {
				t.Fatalf("fail 3: %v (%T)", err, err)
			}

			// A failure to run is an error without an exit code.
			err = run(execQuery(false, false, "broken"), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
			if err == nil || errors.As(err, &exitErr) || !strings.Contains(err.Error(), "no such binary") {
				t.Fatalf("broken: %v", err)
			}

			// TTY: sizes and input reach the command, output comes back.
			sizes := make(chan *remotecommand.TerminalSize, 2)
			sizes <- &remotecommand.TerminalSize{Width: 80, Height: 24}
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- run(execQuery(true, true, "tty"), remotecommand.StreamOptions{Stdin: inR, Stdout: outW, Tty: true, TerminalSizeQueue: sizeQueue{sizes}})
				outW.Close()
			}()
			sc := bufio.NewScanner(outR)
			expect := func(want string) {
				t.Helper()
				if !sc.Scan() {
					t.Fatalf("tty: output ended (%v), want %q", sc.Err(), want)
				}
				if sc.Text() != want {
					t.Fatalf("tty: got %q, want %q", sc.Text(), want)
				}
			}
			expect("size 80x24")
			fmt.Fprintln(inW, "first")
			expect("got first")
			sizes <- &remotecommand.TerminalSize{Width: 120, Height: 40}
			expect("size 120x40")
			fmt.Fprintln(inW, "second")
			expect("got second")
			inW.Close()
			close(sizes) // Next returns nil: no more sizes
			go func() { _, _ = io.Copy(io.Discard, outR) }()
			if err := <-done; err != nil {
				t.Fatalf("tty: %v", err)
			}
		})
	}
}

func TestExecStatusOverWebSocket(t *testing.T) {
	srv := newServer(t, &Server{Execer: &fakeExec{}})
	e, err := remotecommand.NewWebSocketExecutor(&rest.Config{Host: srv.URL}, "GET", execURL(t, srv, execQuery(false, false, "missing")).String())
	if err != nil {
		t.Fatal(err)
	}
	err = e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
	// The client keeps only the message: the status's own, not wrapped in
	// an internal error.
	if err == nil || err.Error() != `pods "web" not found` {
		t.Fatalf("an error carrying a status reaches the client as that status: %v", err)
	}
}

// TestExecFallsBackToSPDY: behind something that refuses WebSocket
// upgrades, kubectl's executor falls back to SPDY and still works.
func TestExecFallsBackToSPDY(t *testing.T) {
	mux := http.NewServeMux()
	(&Server{Execer: &fakeExec{}}).Mount(mux)
	var websockets int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			websockets++
			http.Error(w, "no websockets here", http.StatusBadRequest)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e, err := newFallbackExecutor(&rest.Config{Host: srv.URL}, execURL(t, srv, execQuery(false, false, "fail", "7")))
	if err != nil {
		t.Fatal(err)
	}
	err = e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
	var exitErr utilexec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitStatus() != 7 || websockets != 1 {
		t.Fatalf("fallback: %v, %d websocket attempts", err, websockets)
	}
}

func TestExecBadRequests(t *testing.T) {
	srv := newServer(t, &Server{Execer: &fakeExec{}})
	for _, tc := range []struct {
		query, want string
		code        int
	}{
		{"stdout=true", "query parameter command: required", 400},
		{"command=x&stdout=maybe", `query parameter stdout: \"maybe\" is not a boolean`, 400},
		{"command=x", "at least one must be true", 400},
	} {
		resp, err := http.Post(srv.URL+"/api/v1/namespaces/ns1/pods/web/exec?"+tc.query, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) || !strings.Contains(string(body), `"kind":"Status"`) {
			t.Errorf("%s: %d %s", tc.query, resp.StatusCode, body)
		}
	}
	// No Attacher: attach is not served.
	resp, err := http.Post(srv.URL+"/api/v1/namespaces/ns1/pods/web/attach?stdout=true", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("attach without an Attacher: %d", resp.StatusCode)
	}
}

type fakeAttach struct{}

func (fakeAttach) Attach(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan TerminalSize) error {
	if len(req.Command) != 0 {
		return fmt.Errorf("attach with a command %v", req.Command)
	}
	fmt.Fprintf(stdout, "attached to %s/%s %s\n", req.Namespace, req.Pod, req.Container)
	_, err := io.Copy(stdout, stdin)
	return err
}

func TestAttach(t *testing.T) {
	srv := newServer(t, &Server{Attacher: fakeAttach{}})
	cfg := &rest.Config{Host: srv.URL}
	q := url.Values{"container": {"app"}, "stdin": {"true"}, "stdout": {"true"}, "stderr": {"true"}}
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns1/pods/web/attach?" + q.Encode())
	for _, ex := range executors {
		t.Run(ex.name, func(t *testing.T) {
			e, err := ex.new(cfg, u)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdin: strings.NewReader("typed\n"), Stdout: &out, Stderr: io.Discard}); err != nil {
				t.Fatal(err)
			}
			if out.String() != "attached to ns1/web app\ntyped\n" {
				t.Fatalf("attach: %q", out.String())
			}
		})
	}
}

// echoForwarder answers each connection to a port with "port N\n" and then
// echoes what it reads; port 9 has nothing listening.
type echoForwarder struct{ namespace string }

func (f echoForwarder) PortForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	if namespace != f.namespace || pod != "web" {
		return fmt.Errorf("wrong pod %s/%s", namespace, pod)
	}
	if port == 9 {
		return fmt.Errorf("connect to port 9: connection refused")
	}
	if _, err := fmt.Fprintf(stream, "port %d\n", port); err != nil {
		return err
	}
	_, err := io.Copy(stream, stream)
	return err
}

// dialers are the ways kubectl 1.32 connects for port-forward: SPDY tunnelled
// in a WebSocket (its first choice), SPDY, and the fallback of the two.
var dialers = []struct {
	name string
	new  func(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer
}{
	{"tunnel", func(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer {
		d, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
	{"spdy", spdyDialer},
	{"fallback", func(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer {
		d, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return portforward.NewFallbackDialer(d, spdyDialer(t, cfg, u), shouldFallback)
	}},
}

func spdyDialer(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer {
	t.Helper()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
}

func TestPortForward(t *testing.T) {
	srv := newServer(t, &Server{PortForwarder: echoForwarder{"ns1"}})
	cfg := &rest.Config{Host: srv.URL}
	u, _ := url.Parse(srv.URL + "/api/v1/namespaces/ns1/pods/web/portforward")
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			stop, ready := make(chan struct{}), make(chan struct{})
			// client-go writes to these from several goroutines.
			fw, err := portforward.New(d.new(t, cfg, u), []string{"0:8080", "0:9090", "0:9"}, stop, ready, io.Discard, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- fw.ForwardPorts() }()
			defer close(stop)
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("ForwardPorts: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatal("not ready")
			}
			ports, err := fw.GetPorts()
			if err != nil {
				t.Fatal(err)
			}
			local := map[uint16]uint16{}
			for _, p := range ports {
				local[p.Remote] = p.Local
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for _, remote := range []uint16{8080, 9090} {
				for range 2 { // two connections to each port at once
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs <- roundTrip(local[remote], remote)
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			// A port the pod refuses: the connection ends without data, the
			// error reaches the client, and kubectl (client-go) then ends
			// the whole forwarding, as it does against a kubelet.
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local[9]))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("refused port: read %d, %v", n, err)
			}
			c.Close()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "lost connection to pod") {
					t.Errorf("ForwardPorts after a refused port: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("ForwardPorts still running after a refused port")
			}
		})
	}
}

// roundTrip connects to a forwarded local port, reads the greeting and has
// 256 KiB echoed.
func roundTrip(local, remote uint16) error {
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", local))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || line != fmt.Sprintf("port %d\n", remote) {
		return fmt.Errorf("port %d: greeting %q, %v", remote, line, err)
	}
	data := bytes.Repeat([]byte(fmt.Sprintf("%05d", remote)), 256<<10/5)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r, got); err != nil {
		return fmt.Errorf("port %d: echo: %w", remote, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("port %d: write: %w", remote, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("port %d: echo differs", remote)
	}
	return nil
}

func TestParseExecRequest(t *testing.T) {
	q, _ := url.ParseQuery("container=c&command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&stderr=true&tty=true")
	req, err := ParseExecRequest(q, "ns", "p", false)
	if err != nil {
		t.Fatal(err)
	}
	want := ExecRequest{Namespace: "ns", Pod: "p", Container: "c", Command: []string{"sh", "-c", "echo hi"}, Stdin: true, Stdout: true, TTY: true}
	if fmt.Sprint(req) != fmt.Sprint(want) {
		t.Fatalf("got %+v, want %+v", req, want)
	}
	for query, wantErr := range map[string]string{
		"stdout=1&command=x&command=y&container=a&container=b": "query parameter container: given 2 times, want one",
		"stdout=1&stdout=0&command=x":                          "query parameter stdout: given 2 times, want one",
		"stdout=1&command=":                                    "query parameter command: the first (the program) is empty",
		"stdout=1&tty=yes&command=x":                           `query parameter tty: "yes" is not a boolean`,
		"stderr=true&tty=true&command=x":                       "query parameters stdin, stdout, stderr: at least one must be true",
	} {
		q, _ := url.ParseQuery(query)
		if _, err := ParseExecRequest(q, "ns", "p", false); err == nil || err.Error() != wantErr {
			t.Errorf("%s: %v, want %s", query, err, wantErr)
		}
	}
	q, _ = url.ParseQuery("stdout=1&command=x")
	if _, err := ParseExecRequest(q, "ns", "p", true); err == nil || !strings.Contains(err.Error(), "attach runs no command") {
		t.Errorf("attach with a command: %v", err)
	}
}

func FuzzParseExecRequest(f *testing.F) {
	for _, s := range []string{"command=ls&stdout=true", "command=sh&stdin=1&tty=1", "stdin=true", "%zz", "command=&stdout=0"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, query string, attach bool) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		req, err := ParseExecRequest(q, "ns", "p", attach)
		if err != nil {
			return
		}
		if !req.Stdin && !req.Stdout && !req.Stderr {
			t.Fatalf("no stream: %+v", req)
		}
		if req.TTY && req.Stderr {
			t.Fatalf("tty with stderr: %+v", req)
		}
		if attach != (len(req.Command) == 0) || (!attach && req.Command[0] == "") {
			t.Fatalf("command %q for attach=%v", req.Command, attach)
		}
	})
}
