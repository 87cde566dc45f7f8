package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

// The agent's answer to a request without its token.
const unauthorizedMsg = "this peer requires an API token (chorus --kubeconfig <data-dir>/kubeconfig, --token or CHORUS_TOKEN)"

// requireToken makes the fake agent answer 401, as an agent started with
// --api-token does, to every request that lacks "Bearer <token>".
func (f *fakeAgent) requireToken(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token = token
}

// lastAuth returns the Authorization header of the last request.
func (f *fakeAgent) lastAuth() string {
	f.t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		f.t.Fatal("no request")
	}
	return reqs[len(reqs)-1].auth
}

func TestTokenSentWhenSet(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("GET "+imagesPath, http.StatusOK, api.ImageList{Items: []api.Image{}})
	f.reply("POST "+imagesPath, http.StatusCreated, api.ImageList{Items: []api.Image{}})

	// No token: no header.
	if r := f.run("image", "ls"); r.code != 0 || f.lastAuth() != "" {
		t.Fatalf("no token: %+v, Authorization %q", r, f.lastAuth())
	}
	// --token, before or after the command.
	if r := f.run("--token", "t0k-1", "image", "ls"); r.code != 0 || f.lastAuth() != "Bearer t0k-1" {
		t.Fatalf("--token: %+v, Authorization %q", r, f.lastAuth())
	}
	if r := f.run("image", "ls", "--token=t0k-2"); r.code != 0 || f.lastAuth() != "Bearer t0k-2" {
		t.Fatalf("--token after the command: %+v, Authorization %q", r, f.lastAuth())
	}
	// Uploads carry it too.
	archive := filepath.Join(t.TempDir(), "web.tar")
	writeFile(t, archive, strings.Repeat("x", 4096))
	if r := f.run("--token", "tok", "image", "load", archive); r.code != 0 || f.lastAuth() != "Bearer tok" {
		t.Fatalf("image load: %+v", r)
	}
	// CHORUS_TOKEN; --token wins over it.
	t.Setenv("CHORUS_TOKEN", "from-env")
	if r := f.run("image", "ls"); r.code != 0 || f.lastAuth() != "Bearer from-env" {
		t.Fatalf("CHORUS_TOKEN: %+v, Authorization %q", r, f.lastAuth())
	}
	if r := f.run("image", "ls", "--token", "from-flag"); r.code != 0 || f.lastAuth() != "Bearer from-flag" {
		t.Fatalf("--token and CHORUS_TOKEN: %+v, Authorization %q", r, f.lastAuth())
	}
	// A token the header could not carry is refused before any request.
	n := len(f.requests())
	for _, bad := range []string{"two words", "new\nline"} {
		r := f.run("image", "ls", "--token", bad)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "error: --token: ") || len(f.requests()) != n {
			t.Fatalf("token %q: %+v", bad, r)
		}
	}
}

// TestUnauthorized: a 401 is printed as every server error is, and the
// command exits 1, whatever it was.
func TestUnauthorized(t *testing.T) {
	f := newFakeAgent(t)
	f.requireToken("right")
	want := "Error from server (Unauthorized): " + unauthorizedMsg + "\n"
	for _, args := range [][]string{
		{"image", "ls"},
		{"--token", "wrong", "image", "ls"},
		{"service", "web"},
		{"dashboard"},
		{"drain", "n1"},
	} {
		r := f.run(args...)
		if r.code != 1 || r.stderr != want || r.stdout != "" {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// A 401 without a Status body still reads as Unauthorized.
	g := newFakeAgent(t)
	g.mux.HandleFunc("GET "+imagesPath, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "go away", http.StatusUnauthorized)
	})
	if r := g.run("image", "ls"); r.code != 1 || r.stderr != "Error from server (Unauthorized): go away\n" {
		t.Errorf("plain 401: %+v", r)
	}
}

func TestDashboardURLCarriesToken(t *testing.T) {
	f := newFakeAgent(t)
	f.requireToken("a+b/c=d&e")
	f.peer("n1", "v0.1.0")
	page := f.addr() + "/dashboard/"
	// The token is encoded as encodeURIComponent encodes it.
	if r := f.run("--token", "a+b/c=d&e", "dashboard"); r.code != 0 || r.stdout != page+"#token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("--token: %+v", r)
	}
	if r := f.run("--token", "a+b/c=d&e", "dashboard", "-n", "dev"); r.code != 0 || r.stdout != page+"#ns=dev&token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("--token -n dev: %+v", r)
	}
	t.Setenv("CHORUS_TOKEN", "a+b/c=d&e")
	if r := f.run("dashboard"); r.code != 0 || r.stdout != page+"#token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("CHORUS_TOKEN: %+v", r)
	}
	// Without a token, no fragment.
	g := newFakeAgent(t)
	g.peer("n1", "v0.1.0")
	t.Setenv("CHORUS_TOKEN", "")
	if r := g.run("dashboard"); r.code != 0 || r.stdout != g.addr()+"/dashboard/\n" {
		t.Fatalf("no token: %+v", r)
	}
	if got := fragmentEscape("x y!*'()~-_.é"); got != "x%20y%21%2A%27%28%29~-_.%C3%A9" {
		t.Fatalf("fragmentEscape: %q", got)
	}
}
