package stream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// kubectlServer serves just enough of a kube-apiserver for kubectl exec,
// attach and port-forward on pod default/web (container app): discovery,
// GET of the pod, and the streaming subresources under test. It records in
// upgrades "SUBRESOURCE UPGRADE" for each upgrade asked for.
func kubectlServer(t *testing.T, s *Server, upgrades *sync.Map) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	s.Mount(mux)
	serveJSON := func(pattern, body string) {
		mux.HandleFunc("GET "+pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		})
	}
	serveJSON("/version", `{"major":"1","minor":"32","gitVersion":"v1.32.0","platform":"linux/amd64"}`)
	serveJSON("/api", `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}`)
	serveJSON("/apis", `{"kind":"APIGroupList","apiVersion":"v1","groups":[]}`)
	serveJSON("/api/v1", `{"kind":"APIResourceList","groupVersion":"v1","resources":[
		{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},
		{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]},
		{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},
		{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}`)
	serveJSON("/api/v1/namespaces/default/pods/web", `{"kind":"Pod","apiVersion":"v1",
		"metadata":{"name":"web","namespace":"default","uid":"0b4c3e0e-8d7e-4c2a-9a56-1f0c5e0e0001"},
		"spec":{"containers":[{"name":"app","image":"example/web:1","ports":[{"containerPort":8080}]}]},
		"status":{"phase":"Running","containerStatuses":[{"name":"app","ready":true,"restartCount":0,"image":"example/web:1","imageID":"","state":{"running":{"startedAt":"2026-01-01T00:00:00Z"}}}]}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if up := r.Header.Get("Upgrade"); up != "" {
			upgrades.Store(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]+" "+strings.ToLower(up), true)
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// kubectl returns a command running the kubectl on PATH against srv.
func kubectl(t *testing.T, ctx context.Context, srv *httptest.Server, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl (v1.32) is needed on PATH for this test: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, path, append([]string{"--server", srv.URL, "--cache-dir", filepath.Join(dir, "cache"), "-n", "default"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "KUBECONFIG="+filepath.Join(dir, "none"))
	return cmd
}

func TestKubectl(t *testing.T) {
	fe := &fakeExec{}
	var upgrades sync.Map
	srv := kubectlServer(t, &Server{Execer: fe, Attacher: fakeAttach{}, PortForwarder: echoForwarder{"default"}}, &upgrades)
	// kubectl 1.32 speaks WebSocket first, and SPDY only where told to.
	defer func() {
		var got []string
		upgrades.Range(func(k, _ any) bool {
			got = append(got, k.(string))
			return true
		})
		sort.Strings(got)
		if want := []string{"attach websocket", "exec spdy/3.1", "exec websocket", "portforward spdy/3.1", "portforward websocket"}; !slices.Equal(got, want) {
			t.Errorf("upgrades asked for: %v, want %v", got, want)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var env []string // for kubectl, besides its own
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		cmd := kubectl(t, ctx, srv, args...)
		cmd.Env = append(cmd.Env, env...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("kubectl %v: %v", args, err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	t.Run("exec", func(t *testing.T) {
		out, errOut, code := run("", "exec", "web", "--", "echo", "hello", "world")
		if out != "hello world\n" || errOut != "to stderr\n" || code != 0 {
			t.Fatalf("exec echo: %q %q %d", out, errOut, code)
		}
	})
	t.Run("exit code", func(t *testing.T) {
		out, errOut, code := run("", "exec", "web", "-c", "app", "--", "fail", "3")
		if code != 3 {
			t.Fatalf("exec fail 3: exit %d, %q %q", code, out, errOut)
		}
	})
	t.Run("stdin", func(t *testing.T) {
		out, errOut, code := run("some input\n", "exec", "-i", "web", "--", "cat")
		if out != "some input\n" || errOut != "11 bytes\n" || code != 0 {
			t.Fatalf("exec -i cat: %q %q %d", out, errOut, code)
		}
	})
	t.Run("exec over SPDY", func(t *testing.T) {
		env = []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}
		defer func() { env = nil }()
		out, errOut, code := run("over spdy", "exec", "-i", "web", "--", "cat")
		if out != "over spdy" || errOut != "9 bytes\n" || code != 0 {
			t.Fatalf("exec -i cat over SPDY: %q %q %d", out, errOut, code)
		}
		if _, _, code := run("", "exec", "web", "--", "fail", "5"); code != 5 {
			t.Fatalf("exec fail 5 over SPDY: exit %d", code)
		}
	})
	t.Run("error", func(t *testing.T) {
		_, errOut, code := run("", "exec", "web", "--", "broken")
		if code == 0 || !strings.Contains(errOut, "no such binary") {
			t.Fatalf("exec broken: %q %d", errOut, code)
		}
	})
	t.Run("attach", func(t *testing.T) {
		out, errOut, code := run("typed\n", "attach", "-i", "web")
		if !strings.Contains(out, "attached to default/web app\ntyped\n") || code != 0 {
			t.Fatalf("attach: %q %q %d", out, errOut, code)
		}
	})
	for _, spdy := range []bool{false, true} {
		t.Run(fmt.Sprintf("port-forward spdy=%v", spdy), func(t *testing.T) {
			testKubectlPortForward(t, ctx, srv, spdy)
		})
	}
	t.Run("tty", func(t *testing.T) {
		testKubectlTTY(t, ctx, srv, fe)
	})
}

// testKubectlPortForward forwards two ports with kubectl port-forward and
// has bytes echoed through each; over the SPDY tunnelled in a WebSocket
// (kubectl's default), or over SPDY.
func testKubectlPortForward(t *testing.T, ctx context.Context, srv *httptest.Server, spdy bool) {
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	cmd := kubectl(t, pctx, srv, "port-forward", "pod/web", "0:8080", "0:9090")
	if spdy {
		cmd.Env = append(cmd.Env, "KUBECTL_PORT_FORWARD_WEBSOCKETS=false")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		pcancel()
		_ = cmd.Wait()
	}()
	// "Forwarding from 127.0.0.1:PORT -> 8080", and the same for [::1].
	re := regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$`)
	local := map[uint16]uint16{}
	sc := bufio.NewScanner(stdout)
	for len(local) < 2 && sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			var l, r uint16
			fmt.Sscan(m[1], &l)
			fmt.Sscan(m[2], &r)
			local[r] = l
		}
	}
	if len(local) < 2 {
		t.Fatalf("port-forward did not start: %v %q", sc.Err(), errOut.String())
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	for _, remote := range []uint16{8080, 9090} {
		if err := roundTrip(local[remote], remote); err != nil {
			t.Errorf("port-forward: %v (kubectl: %q)", err, errOut.String())
		}
	}
}

// testKubectlTTY runs kubectl exec -it in a tmux window, as a person at a
// terminal would: the window's size reaches the command, and so does a
// resize of the window; what is typed goes in and the output shows.
func testKubectlTTY(t *testing.T, ctx context.Context, srv *httptest.Server, fe *fakeExec) {
	tmuxPath, err := exec.LookPath("tmux")
	if err != nil {
		t.Fatalf("tmux is needed on PATH for this test: %v", err)
	}
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, tmuxPath, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	cmd := kubectl(t, ctx, srv, "exec", "-it", "web", "--", "tty")
	// kubectl's own variables (HOME, KUBECONFIG) are the last two of its
	// environment; no argument has a space.
	line := "env " + strings.Join(cmd.Env[len(cmd.Env)-2:], " ") + " " + strings.Join(cmd.Args, " ")
	tmux("-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", line+"; echo kubectl exited $?; sleep 60")
	defer exec.Command(tmuxPath, "-S", sock, "kill-server").Run() //nolint:errcheck
	screen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := tmux("capture-pane", "-p")
			if strings.Contains(s, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("screen lacks %q:\n%s", want, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	screen("size 100x30")
	tmux("send-keys", "hello", "Enter")
	screen("got hello")
	tmux("resize-window", "-x", "120", "-y", "40")
	screen("size 120x40")
	tmux("send-keys", "C-d") // the fake's end of input: kubectl's stdin is the terminal, it never ends
	screen("kubectl exited 0")
	fe.mu.Lock()
	got := fe.reqs[len(fe.reqs)-1]
	fe.mu.Unlock()
	if !got.TTY || !got.Stdin || got.Stderr || got.Command[0] != "tty" {
		t.Fatalf("exec -it request: %+v", got)
	}
}
