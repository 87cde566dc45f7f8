package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A just started peer's API holds requests until it has caught up with
// the other peers; the health check and the metrics answer at once.
func TestAPIWaitsForCatchUp(t *testing.T) {
	a := &Agent{caughtUp: make(chan struct{})}
	served := make(chan string, 4)
	h := a.afterCatchUp(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served <- r.URL.Path }))
	for _, path := range []string{"/healthz", "/metrics"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
		if got := <-served; got != path {
			t.Fatalf("served %q, want %q", got, path)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/default/services/web", nil))
	}()
	select {
	case p := <-served:
		t.Fatalf("%s served before the peer caught up", p)
	case <-time.After(50 * time.Millisecond):
	}
	close(a.caughtUp)
	<-done
	if got := <-served; got != "/api/v1/namespaces/default/services/web" {
		t.Fatalf("served %q after the catch-up", got)
	}

	// A client that gives up while the peer catches up is not served.
	a = &Agent{caughtUp: make(chan struct{})}
	h = a.afterCatchUp(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served <- r.URL.Path }))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/api", nil).WithContext(ctx))
	select {
	case p := <-served:
		t.Fatalf("%s served to a client gone", p)
	default:
	}
}
