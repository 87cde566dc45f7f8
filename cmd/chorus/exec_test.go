package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// serveFakeExec answers exec requests as the agent does, running a few fake
// commands: echo ARGS, fail (exit 3), cat (stdin to stdout), err (an error
// frame), drop (no last frame), garbage (a malformed frame) and hang (it
// sends "started" on hang, then "left" once the client has left).
func serveFakeExec(t *testing.T, f *fakeAgent, hang chan<- string) {
	f.mux.HandleFunc("POST /chorus/v1/namespaces/default/pods/{name}/exec", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if c := q.Get("container"); c != "" && c != "web" {
			writeStatus(w, http.StatusNotFound, "NotFound", `container "`+c+`" is not in pod "default/`+r.PathValue("name")+`"`)
			return
		}
		if r.Header.Get("Upgrade") != api.ExecProtocol || r.Header.Get("Connection") != "Upgrade" {
			writeStatus(w, http.StatusBadRequest, "BadRequest", "not an upgrade")
			return
		}
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + api.ExecProtocol + "\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		cmd := q["command"]
		out := func(stream byte, s string) { _ = api.WriteExecFrame(conn, stream, []byte(s)) }
		switch cmd[0] {
		case "echo":
			out(api.ExecStdout, r.PathValue("name")+": "+strings.Join(cmd[1:], " ")+"\n")
			_ = api.WriteExecExit(conn, 0)
		case "fail":
			out(api.ExecStdout, "partial\n")
			out(api.ExecStderr, "bad\n")
			_ = api.WriteExecExit(conn, 3)
		case "cat":
			if q.Get("stdin") != "true" {
				out(api.ExecStderr, "no stdin\n")
				_ = api.WriteExecExit(conn, 0)
				return
			}
			for {
				s, p, err := api.ReadExecFrame(brw.Reader)
				if err != nil || s != api.ExecStdin {
					out(api.ExecError, "bad stdin")
					return
				}
				if len(p) == 0 {
					break
				}
				out(api.ExecStdout, string(p))
			}
			_ = api.WriteExecExit(conn, 0)
		case "err":
			out(api.ExecError, "exec [err] in default_web-0_web: executable file not found in $PATH")
		case "drop":
			out(api.ExecStdout, "some\n")
		case "garbage":
			_, _ = conn.Write([]byte{9, 0, 0, 0, 0})
		case "hang":
			hang <- "started"
			_, _ = io.Copy(io.Discard, brw.Reader)
			hang <- "left"
		}
	})
}

func TestExecUsageErrors(t *testing.T) {
	f := newFakeAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"exec"}, "POD or TYPE/NAME is required"},
		{[]string{"exec", "web-0"}, "you must specify a command to run after --"},
		{[]string{"exec", "web-0", "--"}, "you must specify a command to run after --"},
		{[]string{"exec", "web-0", "ls", "/tmp"}, "the command must follow --, as in 'chorus exec web-0 -- ls /tmp'"},
		{[]string{"exec", "--", "ls"}, "POD or TYPE/NAME is required before --"},
		{[]string{"exec", "web-0", "web-1", "--", "ls"}, `expected one POD or TYPE/NAME before --, got "web-0 web-1"`},
		{[]string{"exec", "-it", "web-0", "--", "sh"}, "chorus exec has no TTY"},
		{[]string{"exec", "namespace/default", "--", "ls"}, "cannot exec into namespaces: use a pod, a deployment or a service"},
	} {
		r := f.run(tc.args...)
		if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: %+v, want %q", tc.args, r, tc.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for usage errors", n)
	}
	if r := f.run("exec", "web-0"); !strings.Contains(r.stderr, "See 'chorus exec --help' for usage.") {
		t.Errorf("no pointer to the help: %q", r.stderr)
	}
}

func TestExec(t *testing.T) {
	f := newFakeAgent(t)
	hang := make(chan string, 2)
	serveFakeExec(t, f, hang)
	f.list("GET /chorus/v1/namespaces/default/pods", runningPod("web-young", "n1", "", time.Minute), runningPod("web-old", "n2", "", time.Hour))

	r := f.run("exec", "web-0", "--", "echo", "hello", "-n", "--world")
	if r.code != 0 || r.stdout != "web-0: hello -n --world\n" || r.stderr != "" {
		t.Fatalf("echo: %+v", r)
	}
	req := f.requests()[0]
	q, _ := url.ParseQuery(req.query)
	if req.method != http.MethodPost || req.path != "/chorus/v1/namespaces/default/pods/web-0/exec" ||
		strings.Join(q["command"], "|") != "echo|hello|-n|--world" || q.Has("container") || q.Has("stdin") {
		t.Fatalf("request %+v", req)
	}

	// TYPE/NAME picks a pod; -c names the container.
	r = f.run("exec", "deployment/web", "-c", "web", "--", "echo", "hi")
	if r.code != 0 || r.stdout != "web-old: hi\n" || r.stderr != "Found 2 pods, using pod/web-old\n" {
		t.Fatalf("deployment/web: %+v", r)
	}
	reqs := f.requests()
	if q, _ := url.ParseQuery(reqs[len(reqs)-1].query); q.Get("container") != "web" {
		t.Fatalf("query %v", q)
	}

	// A failing command: its streams, kubectl's message, its exit code.
	r = f.run("exec", "web-0", "--", "fail")
	if r.code != 3 || r.stdout != "partial\n" || r.stderr != "bad\ncommand terminated with exit code 3\n" {
		t.Fatalf("fail: %+v", r)
	}

	// -i sends stdin, to its end; without -i nothing is sent.
	big := strings.Repeat("0123456789", 20000)
	r = f.runStdin(big, "exec", "-i", "web-0", "--", "cat")
	if r.code != 0 || r.stdout != big || r.stderr != "" {
		t.Fatalf("cat: code %d, %d bytes out, stderr %q", r.code, len(r.stdout), r.stderr)
	}
	reqs = f.requests()
	if q, _ := url.ParseQuery(reqs[len(reqs)-1].query); q.Get("stdin") != "true" {
		t.Fatalf("query %v", q)
	}
	r = f.runStdin("ignored", "exec", "web-0", "--", "cat")
	if r.code != 0 || r.stdout != "" || r.stderr != "no stdin\n" {
		t.Fatalf("cat without -i: %+v", r)
	}

	// Errors: before the upgrade, from the agent after it, a broken stream.
	r = f.run("exec", "web-0", "-c", "nope", "--", "ls")
	if r.code != 1 || r.stderr != "Error from server (NotFound): container \"nope\" is not in pod \"default/web-0\"\n" {
		t.Fatalf("unknown container: %+v", r)
	}
	r = f.run("exec", "web-0", "--", "err")
	if r.code != 1 || r.stderr != "error: exec [err] in default_web-0_web: executable file not found in $PATH\n" {
		t.Fatalf("error frame: %+v", r)
	}
	r = f.run("exec", "web-0", "--", "drop")
	if r.code != 1 || r.stdout != "some\n" || !strings.HasPrefix(r.stderr, "error: exec: the connection to the agent ended before the command did") {
		t.Fatalf("dropped: %+v", r)
	}
	r = f.run("exec", "web-0", "--", "garbage")
	if r.code != 1 || !strings.Contains(r.stderr, "malformed exec frame") {
		t.Fatalf("garbage: %+v", r)
	}

	// Ctrl-C closes the connection (the agent then kills the command).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan cliResult, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(ctx, []string{"-s", f.addr(), "exec", "web-0", "--", "hang"}, strings.NewReader(""), &out, &errOut)
		done <- cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
	}()
	select {
	case <-hang:
	case <-time.After(10 * time.Second):
		t.Fatal("no hang request")
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 130 || r.stderr != "" {
			t.Fatalf("interrupted: %+v", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not end at Ctrl-C")
	}
	select {
	case <-hang:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection stayed open after Ctrl-C")
	}
}
