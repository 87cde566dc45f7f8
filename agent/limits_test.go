package agent

import (
	"context"
	"fmt"
	"github.com/chorus-sh/chorus/apiserver"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// testAgent is an agent with no state whose Kubernetes API (not running)
// answers what needs none: version, discovery, OpenAPI.
func testAgent() *Agent {
	a := &Agent{cfg: Config{Name: "n1", Version: "v9"}, log: slog.New(slog.DiscardHandler)}
	kube, err := apiserver.New(kubeBackend{a}, apiserver.Options{Peer: a.cfg.Name, Version: a.cfg.Version, Log: a.log})
	if err != nil {
		panic(err)
	}
	a.kube = kube
	return a
}

// serve runs the API server of a on a loopback port with lim, until the
// test ends.
func serve(t *testing.T, a *Agent, lim serverLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, lln := a.newAPIServer(ctx, ln, lim)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lln)
	}()
	t.Cleanup(func() {
		cancel()
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(sctx)
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Idle connections, however many, never keep the API from answering: at
// the cap, a new connection closes the oldest idle one.
func TestIdleConnectionsDoNotStarveTheAPI(t *testing.T) {
	lim := defaultLimits()
	lim.MaxConns = 16
	addr := serve(t, testAgent(), lim)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 100 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	for range 5 {
		if code, body := get(t, "http://"+addr+"/version"); code != http.StatusOK || !strings.Contains(body, "chorus-9") {
			t.Fatalf("version with 100 idle connections open: %d %s", code, body)
		}
	}
	// Most idle connections were closed by the server.
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	if closed < 100-lim.MaxConns {
		t.Fatalf("%d idle connections closed, want at least %d", closed, 100-lim.MaxConns)
	}
}

// A body that trickles is cut off after BodyTimeout.
func TestTricklingBodyIsCut(t *testing.T) {
	lim := defaultLimits()
	lim.BodyTimeout = 300 * time.Millisecond
	addr := serve(t, testAgent(), lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /api/v1/namespaces HTTP/1.1\r\nHost: %s\r\nContent-Type: application/yaml\r\nContent-Length: 100000\r\n\r\n", addr)
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		b := make([]byte, 4096)
		for {
			if _, err := c.Read(b); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case d := <-closed:
			if d > 5*time.Second {
				t.Fatalf("trickling body cut after %s", d)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := c.Write([]byte("a")); err != nil || i > 100 {
			if i > 100 {
				t.Fatal("a trickling body was never cut")
			}
		}
	}
}

// Requests beyond MaxInFlight wait QueueWait, then get 429 with a Status.
func TestRequestsInFlightAreCapped(t *testing.T) {
	lim := defaultLimits()
	lim.MaxInFlight, lim.QueueWait = 2, 50*time.Millisecond
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(2)
	h := testAgent().limitRequests(lim, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started.Done()
			<-release
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, "http://"+ln.Addr().String()+"/slow")
		}()
	}
	started.Wait()
	code, body := get(t, "http://"+ln.Addr().String()+"/third")
	close(release)
	wg.Wait()
	if code != http.StatusTooManyRequests || !strings.Contains(body, `"reason": "TooManyRequests"`) {
		t.Fatalf("third request: %d %s", code, body)
	}
	if code, _ := get(t, "http://"+ln.Addr().String()+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz after: %d", code)
	}
}

// What a web page of another site could make a browser send is refused;
// what the chorus CLI and kubectl send passes.
func TestCrossSiteRequestsRefused(t *testing.T) {
	a := testAgent()
	a.cfg.APIHosts = []string{"chorus.example.lan"}
	h := a.checkSameOrigin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	for _, c := range []struct {
		method, host, ct, origin, upgrade string
		want                              int
	}{
		// a form or a no-cors fetch
		{"POST", "127.0.0.1:7070", "text/plain", "", "", http.StatusUnsupportedMediaType},
		{"POST", "127.0.0.1:7070", "text/plain; charset=utf-8", "", "", http.StatusUnsupportedMediaType},
		{"POST", "127.0.0.1:7070", "application/x-www-form-urlencoded", "", "", http.StatusUnsupportedMediaType},
		{"POST", "127.0.0.1:7070", "multipart/form-data; boundary=x", "", "", http.StatusUnsupportedMediaType},
		{"POST", "127.0.0.1:7070", "", "", "", http.StatusUnsupportedMediaType},
		{"POST", "127.0.0.1:7070", "application/json", "http://evil.example", "", http.StatusForbidden},
		{"POST", "127.0.0.1:7070", "application/json", "null", "", http.StatusForbidden},
		{"DELETE", "127.0.0.1:7070", "", "http://evil.example", "", http.StatusForbidden},
		// DNS rebinding: a name that is not this peer's
		{"GET", "evil.example:7070", "", "", "", http.StatusForbidden},
		{"POST", "rebind.evil.example", "application/json", "", "", http.StatusForbidden},
		// the CLI, kubectl, the dashboard
		{"POST", "127.0.0.1:7070", "application/json", "", "", http.StatusOK},
		{"POST", "127.0.0.1:7070", "application/yaml", "", "", http.StatusOK},
		{"POST", "127.0.0.1:7070", "application/x-tar", "", "", http.StatusOK},
		{"PATCH", "127.0.0.1:7070", "application/merge-patch+json", "", "", http.StatusOK},
		{"PATCH", "127.0.0.1:7070", "application/strategic-merge-patch+json", "", "", http.StatusOK},
		{"PATCH", "127.0.0.1:7070", "application/json-patch+json", "", "", http.StatusOK},
		{"PATCH", "127.0.0.1:7070", "application/apply-patch+yaml", "", "", http.StatusOK},
		{"DELETE", "127.0.0.1:7070", "", "", "", http.StatusOK},
		{"PUT", "[::1]:7070", "application/json", "", "", http.StatusOK},
		{"POST", "127.0.0.1:7070", "", "", "SPDY/3.1", http.StatusOK},
		{"POST", "127.0.0.1:7070", "application/json", "http://127.0.0.1:7070", "", http.StatusOK},
		{"GET", "localhost:7070", "", "", "", http.StatusOK},
		{"GET", "n1:7070", "", "", "", http.StatusOK},
		{"GET", "chorus.example.lan:7070", "", "", "", http.StatusOK},
		{"GET", "127.0.0.1:7070", "", "http://evil.example", "", http.StatusOK}, // the browser keeps the answer from it
	} {
		r, _ := http.NewRequest(c.method, "http://x/api/v1/namespaces", strings.NewReader("{}"))
		r.Host = c.host
		if c.ct != "" {
			r.Header.Set("Content-Type", c.ct)
		}
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.upgrade != "" {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", c.upgrade)
		}
		w := &recorder{header: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != c.want {
			t.Errorf("%s host %q type %q origin %q upgrade %q: %d, want %d", c.method, c.host, c.ct, c.origin, c.upgrade, w.code, c.want)
		}
	}
}

type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return len(b), nil
}
func (r *recorder) WriteHeader(code int) { r.code = code }

// TestImageLoadIsLong: an image load (POST on the chorus.sh/v1 images
// collection) takes a slot of the long requests and the body deadline of
// large uploads; nothing else on that path does.
func TestImageLoadIsLong(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{"POST", "/apis/chorus.sh/v1/images", true},
		{"POST", "/apis/chorus.sh/v1/images/", true},
		{"GET", "/apis/chorus.sh/v1/images", false},
		{"DELETE", "/apis/chorus.sh/v1/images", false},
		{"POST", "/apis/chorus.sh/v1/peers/p/leave", false},
		{"POST", "/api/v1/namespaces/default/pods", false},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if got := isImageLoad(r); got != c.want || streaming(r) != c.want {
			t.Errorf("%s %s: image load %v, streaming %v, want %v", c.method, c.path, got, streaming(r), c.want)
		}
	}
}
