package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
)

// fakeRuntime runs pods without containers; ExecStream calls exec.
type fakeRuntime struct {
	exec func(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

func (f *fakeRuntime) ImportImage(context.Context, io.Reader) ([]runtime.Image, error) {
	return nil, nil
}
func (f *fakeRuntime) Images(context.Context) ([]runtime.Image, error) { return nil, nil }
func (f *fakeRuntime) HasImage(context.Context, string) (bool, error)  { return true, nil }
func (f *fakeRuntime) SetupNetwork(_ context.Context, id string) (runtime.PodNetwork, error) {
	return runtime.PodNetwork{NetNSPath: "/fake/" + id, IP: "10.0.0.2"}, nil
}
func (f *fakeRuntime) TeardownNetwork(context.Context, string, runtime.PodNetwork) error { return nil }
func (f *fakeRuntime) StartContainer(context.Context, runtime.ContainerConfig) error     { return nil }
func (f *fakeRuntime) Wait(context.Context, string) (<-chan runtime.ExitStatus, error) {
	return make(chan runtime.ExitStatus), nil
}
func (f *fakeRuntime) StopContainer(context.Context, string, time.Duration) error { return nil }
func (f *fakeRuntime) RemoveContainer(context.Context, string) error              { return nil }
func (f *fakeRuntime) SetLabels(context.Context, string, map[string]string) error { return nil }
func (f *fakeRuntime) Exec(context.Context, string, []string) (int, []byte, error) {
	return 0, nil, nil
}
func (f *fakeRuntime) Containers(context.Context) ([]runtime.ContainerRecord, error) { return nil, nil }
func (f *fakeRuntime) ContainerStats(context.Context, string) (runtime.ContainerStats, error) {
	return runtime.ContainerStats{}, nil
}
func (f *fakeRuntime) ExecStream(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return f.exec(ctx, id, cmd, stdin, stdout, stderr)
}

// execAgent serves handleExec of an agent running pod web-0 (container web)
// and pod two-0 (containers a and b) on a fake runtime.
func execAgent(t *testing.T, exec func(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)) string {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	pm := runtime.NewPodManager(&fakeRuntime{exec: exec}, runtime.Options{Node: "n1", StateDir: t.TempDir(), Log: log})
	if err := pm.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, ctrs ...string) api.Pod {
		p := api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default"}}
		for _, c := range ctrs {
			p.Spec.Containers = append(p.Spec.Containers, api.Container{Name: c, Image: "example/web:1"})
		}
		return p
	}
	pm.Sync([]api.Pod{pod("web-0", "web"), pod("two-0", "a", "b")})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err1 := pm.ExecContainer("default", "web-0", "")
		_, err2 := pm.ExecContainer("default", "two-0", "a")
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containers not running: %v, %v", err1, err2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := &Agent{log: log, pods: pm}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/pods/{name}/exec", a.handleExec)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		pm.Sync(nil)
		for len(pm.Pods()) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		pm.Close()
	})
	return srv.Listener.Addr().String()
}

// execClient is a test client of the exec protocol.
type execClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialExec sends an exec request; it returns the response when it is not
// an upgrade.
func dialExec(t *testing.T, addr, path string, upgrade bool) (*execClient, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 0\r\n"
	if upgrade {
		req += "Connection: Upgrade\r\nUpgrade: " + api.ExecProtocol + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, resp
	}
	if resp.Header.Get("Upgrade") != api.ExecProtocol {
		t.Fatalf("upgraded to %q", resp.Header.Get("Upgrade"))
	}
	return &execClient{conn: conn, br: br}, nil
}

func (c *execClient) send(t *testing.T, stream byte, p string) {
	t.Helper()
	if err := api.WriteExecFrame(c.conn, stream, []byte(p)); err != nil {
		t.Fatal(err)
	}
}

// result reads frames up to the last one, and checks the agent ends the
// connection after it.
func (c *execClient) result(t *testing.T) (stdout, stderr string, code int, errText string) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out, errb bytes.Buffer
	for {
		s, p, err := api.ReadExecFrame(c.br)
		if err != nil {
			t.Fatalf("after stdout %q, stderr %q: %v", out.String(), errb.String(), err)
		}
		switch s {
		case api.ExecStdout:
			out.Write(p)
		case api.ExecStderr:
			errb.Write(p)
		case api.ExecExit, api.ExecError:
			if _, _, err := api.ReadExecFrame(c.br); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
			c.conn.Close()
			if s == api.ExecExit {
				return out.String(), errb.String(), api.ExecExitCode(p), ""
			}
			return out.String(), errb.String(), -1, string(p)
		default:
			t.Fatalf("frame on stream %d from the agent", s)
		}
	}
}

const execPath = "/chorus/v1/namespaces/default/pods/"

func TestExecProtocol(t *testing.T) {
	ended := make(chan error, 1)
	addr := execAgent(t, func(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
		switch cmd[0] {
		case "echo":
			fmt.Fprintf(stdout, "%s: %s\n", id, strings.Join(cmd[1:], " "))
			return 0, nil
		case "fail":
			fmt.Fprintln(stdout, "out")
			fmt.Fprintln(stderr, "bad")
			return 3, nil
		case "cat":
			if stdin == nil {
				fmt.Fprintln(stderr, "no stdin")
				return 0, nil
			}
			_, err := io.Copy(stdout, stdin)
			return 0, err
		case "big":
			_, err := stdout.Write(bytes.Repeat([]byte("z"), 3*api.MaxExecFrame/2))
			return 0, err
		case "hang":
			<-ctx.Done()
			ended <- context.Cause(ctx)
			return -1, ctx.Err()
		}
		return -1, errors.New("exec: " + cmd[0] + ": executable file not found in $PATH")
	})

	c, _ := dialExec(t, addr, execPath+"web-0/exec?command=echo&command=hello&command=world", true)
	if out, errOut, code, e := c.result(t); out != "default_web-0_web: hello world\n" || errOut != "" || code != 0 || e != "" {
		t.Fatalf("echo: %q %q %d %q", out, errOut, code, e)
	}
	c, _ = dialExec(t, addr, execPath+"two-0/exec?container=b&command=fail", true)
	if out, errOut, code, e := c.result(t); out != "out\n" || errOut != "bad\n" || code != 3 || e != "" {
		t.Fatalf("fail: %q %q %d %q", out, errOut, code, e)
	}
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=big", true)
	if out, _, code, _ := c.result(t); len(out) != 3*api.MaxExecFrame/2 || code != 0 {
		t.Fatalf("big: %d bytes, exit %d", len(out), code)
	}
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=nosuch", true)
	if _, _, _, e := c.result(t); e != "exec: nosuch: executable file not found in $PATH" {
		t.Fatalf("error frame %q", e)
	}

	// Stdin: frames in, an empty one closes it.
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=cat&stdin=true", true)
	c.send(t, api.ExecStdin, "line 1\n")
	c.send(t, api.ExecStdin, "line 2\n")
	c.send(t, api.ExecStdin, "")
	if out, _, code, e := c.result(t); out != "line 1\nline 2\n" || code != 0 || e != "" {
		t.Fatalf("cat: %q %d %q", out, code, e)
	}
	// Without stdin=true the command has none, and stdin frames are dropped.
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=cat", true)
	c.send(t, api.ExecStdin, "ignored")
	if out, errOut, code, _ := c.result(t); out != "" || errOut != "no stdin\n" || code != 0 {
		t.Fatalf("cat without stdin: %q %q %d", out, errOut, code)
	}

	// A client that leaves, or breaks the protocol, ends the command.
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=hang&stdin=true", true)
	c.send(t, api.ExecStdin, "x")
	c.conn.Close()
	select {
	case err := <-ended:
		if !strings.Contains(err.Error(), "the client connection ended") {
			t.Fatalf("cause %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end when the client left")
	}
	c, _ = dialExec(t, addr, execPath+"web-0/exec?command=hang", true)
	c.send(t, api.ExecStdout, "not from a client")
	if _, _, _, e := c.result(t); !strings.Contains(e, "exec protocol") {
		t.Fatalf("protocol error: %q", e)
	}
	<-ended
}

func TestExecErrors(t *testing.T) {
	addr := execAgent(t, func(context.Context, string, []string, io.Reader, io.Writer, io.Writer) (int, error) {
		t.Error("exec ran")
		return 0, nil
	})
	for _, tc := range []struct {
		path    string
		upgrade bool
		code    int
		msg     string
	}{
		{"web-0/exec", true, 400, "exec needs a command"},
		{"web-0/exec?container=web", true, 400, "exec needs a command"},
		{"web-0/exec?command=ls&stdin=maybe", true, 400, `query parameter stdin must be true or false, not "maybe"`},
		{"nope-0/exec?command=ls", true, 404, `pods "nope-0" not found on any alive peer`},
		{"web-0/exec?command=ls&container=side", true, 404, `container "side" is not in pod "default/web-0"`},
		{"two-0/exec?command=ls", true, 400, `pod "default/two-0" has several containers: choose one of [a b]`},
		{"web-0/exec?command=ls", false, 400, "exec needs an upgraded connection"},
	} {
		_, resp := dialExec(t, addr, execPath+tc.path, tc.upgrade)
		if resp == nil {
			t.Fatalf("%s: upgraded", tc.path)
		}
		var st status
		err := json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.code || st.Code != tc.code || st.Kind != "Status" || !strings.Contains(st.Message, tc.msg) {
			t.Errorf("%s: %d %+v %v, want %d %q", tc.path, resp.StatusCode, st, err, tc.code, tc.msg)
		}
	}
}
