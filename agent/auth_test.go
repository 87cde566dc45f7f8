package agent

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"encoding/json"
	"github.com/chorus-sh/chorus/apiserver"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testToken = "s3cret-Token_42"

// authGet sends method path to srv with the Authorization header auth (none
// when ""), and returns the answer and its body.
func authGet(t *testing.T, srv *httptest.Server, method, path, auth string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	// No redirects followed: /dashboard's is an answer of its own.
	c := http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// checkUnauthorized checks a 401 answer: a Status body and a Bearer
// challenge.
func checkUnauthorized(t *testing.T, what string, resp *http.Response, body, wantMsg string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s: %s, want 401: %s", what, resp.Status, body)
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="chorus"` {
		t.Errorf("%s: WWW-Authenticate %q", what, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var st metav1.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%s: body %q: %v", what, body, err)
	}
	want := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: "Failure", Reason: "Unauthorized", Code: 401, Message: wantMsg}
	if st.Kind != want.Kind || st.APIVersion != want.APIVersion || st.Status != want.Status || st.Reason != want.Reason ||
		st.Code != want.Code || st.Message != want.Message {
		t.Errorf("%s: Status %+v, want %+v", what, st, want)
	}
	if strings.Contains(body, testToken) {
		t.Errorf("%s: the answer holds the token: %s", what, body)
	}
}

// TestRequireToken: the middleware alone, in front of a handler that
// counts the requests it serves.
func TestRequireToken(t *testing.T) {
	served := 0
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		io.WriteString(w, "served")
	})
	srv := httptest.NewServer(requireToken(testToken, nil, h))
	defer srv.Close()

	refused := []struct {
		what, method, path, auth, msg string
	}{
		{"no header", "GET", "/api/v1/pods", "", msgNoToken},
		{"no header, POST", "POST", "/api/v1/namespaces", "", msgNoToken},
		{"wrong token", "GET", "/api/v1/pods", "Bearer wrong", msgTokenRefused},
		{"token prefix", "GET", "/api/v1/pods", "Bearer " + testToken[:len(testToken)-1], msgTokenRefused},
		{"token and more", "GET", "/api/v1/pods", "Bearer " + testToken + "x", msgTokenRefused},
		{"wrong scheme", "GET", "/api/v1/pods", "Basic " + testToken, msgTokenRefused},
		{"no scheme", "GET", "/api/v1/pods", testToken, msgTokenRefused},
		{"empty bearer", "GET", "/api/v1/pods", "Bearer ", msgTokenRefused},
		{"metrics", "GET", "/metrics", "", msgNoToken},
		{"other dashboard path", "GET", "/dashboard/app.js", "", msgNoToken},
		{"dashboard redirect", "GET", "/dashboard", "", msgNoToken},
		{"health check, POST", "POST", "/healthz", "", msgNoToken},
		{"dashboard, POST", "POST", "/", "", msgNoToken},
		{"escaped exempt path", "GET", "/%68ealthz", "", msgNoToken},
	}
	for _, c := range refused {
		resp, body := authGet(t, srv, c.method, c.path, c.auth)
		checkUnauthorized(t, c.what, resp, body, c.msg)
	}
	if served != 0 {
		t.Fatalf("the handler served %d refused requests", served)
	}

	allowed := []struct {
		what, method, path, auth string
	}{
		{"right token", "GET", "/api/v1/pods", "Bearer " + testToken},
		{"right token, POST", "POST", "/api/v1/namespaces", "Bearer " + testToken},
		{"scheme in lower case", "GET", "/metrics", "bearer " + testToken},
		{"health check", "GET", "/healthz", ""},
		{"health check, HEAD", "HEAD", "/healthz", ""},
		{"dashboard page", "GET", "/", ""},
		{"dashboard page", "GET", "/dashboard/", ""},
		{"health check with a wrong token", "GET", "/healthz", "Bearer wrong"},
	}
	for i, c := range allowed {
		resp, body := authGet(t, srv, c.method, c.path, c.auth)
		if resp.StatusCode != http.StatusOK || served != i+1 || (c.method != "HEAD" && body != "served") {
			t.Fatalf("%s: %s %q, served %d", c.what, resp.Status, body, served)
		}
		if resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: a challenge with a 200", c.what)
		}
	}
}

// TestRoutesRequireToken: an agent with a token serves the health check
// and the dashboard page to anyone, and its API and metrics only with the
// token.
func TestRoutesRequireToken(t *testing.T) {
	a := withKubeAPI(t, &Agent{cfg: Config{Name: "n1", Version: "v9", APIToken: testToken}})
	srv := httptest.NewServer(a.routes())
	defer srv.Close()

	if resp, body := authGet(t, srv, "GET", "/healthz", ""); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz without a token: %s %q", resp.Status, body)
	}
	for _, path := range []string{"/", "/dashboard/"} {
		resp, body := authGet(t, srv, "GET", path, "")
		if resp.StatusCode != http.StatusOK || body != dashboardHTML {
			t.Fatalf("%s without a token: %s", path, resp.Status)
		}
	}
	for _, path := range []string{"/metrics", "/version", "/api/v1/pods", "/apis/chorus.sh/v1/peers", "/apis/chorus.sh/v1", "/openapi/v3", "/nothing"} {
		resp, body := authGet(t, srv, "GET", path, "")
		checkUnauthorized(t, path+" without a token", resp, body, msgNoToken)
		resp, body = authGet(t, srv, "GET", path, "Bearer nope")
		checkUnauthorized(t, path+" with a wrong token", resp, body, msgTokenRefused)
	}
	resp, body := authGet(t, srv, "POST", "/api/v1/namespaces/default/pods/web-0/exec?command=id", "")
	checkUnauthorized(t, "exec without a token", resp, body, msgNoToken)
	resp, body = authGet(t, srv, "POST", "/apis/chorus.sh/v1/images", "")
	checkUnauthorized(t, "image load without a token", resp, body, msgNoToken)

	resp, body = authGet(t, srv, "GET", "/version", "Bearer "+testToken)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"gitVersion":"v1.32.0+chorus-9"`) {
		t.Fatalf("/version with the token: %s %q", resp.Status, body)
	}
	// The token reaches the mux: what it does not know is a 404.
	if resp, _ := authGet(t, srv, "GET", "/nothing", "Bearer "+testToken); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nothing with the token: %s", resp.Status)
	}
}

// TestRoutesOpenWithoutToken: without a token every request is served, as
// before tokens existed.
func TestRoutesOpenWithoutToken(t *testing.T) {
	a := withKubeAPI(t, &Agent{cfg: Config{Name: "n1", Version: "v9"}})
	srv := httptest.NewServer(a.routes())
	defer srv.Close()
	for _, auth := range []string{"", "Bearer anything"} {
		for _, path := range []string{"/healthz", "/", "/dashboard/", "/version", "/apis/chorus.sh/v1"} {
			if resp, body := authGet(t, srv, "GET", path, auth); resp.StatusCode != http.StatusOK {
				t.Fatalf("%s (Authorization %q): %s %q", path, auth, resp.Status, body)
			}
		}
	}
	if resp, _ := authGet(t, srv, "GET", "/nothing", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nothing: %s", resp.Status)
	}
}

// withKubeAPI gives a its Kubernetes API server, not running: it answers
// what needs no state (version, discovery, OpenAPI).
func withKubeAPI(t *testing.T, a *Agent) *Agent {
	t.Helper()
	kube, err := apiserver.New(kubeBackend{a}, apiserver.Options{Peer: a.cfg.Name, Version: a.cfg.Version})
	if err != nil {
		t.Fatal(err)
	}
	a.kube = kube
	return a
}

func TestConfigChecksToken(t *testing.T) {
	for _, tok := range []string{"has space", "tab\there", "new\nline", "é", strings.Repeat("x", 4097)} {
		c := Config{Name: "n1", APIToken: tok}
		if err := c.Defaults(); err == nil || !strings.HasPrefix(err.Error(), "--api-token: ") {
			t.Errorf("token %q: %v", tok, err)
		}
	}
	c := Config{Name: "n1", APIToken: testToken}
	if err := c.Defaults(); err != nil {
		t.Fatal(err)
	}
	// The token stays out of peer.json.
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), testToken) {
		t.Fatalf("the config as JSON holds the token: %s", b)
	}
}
