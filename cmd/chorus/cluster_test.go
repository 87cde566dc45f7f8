package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

// `chorus cluster rotate-secret` starts the rotation with a POST, then
// shows a line at each change of the status until it completes.
func TestRotateSecretShowsProgress(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST "+rotationsPath, http.StatusCreated, api.NewSecretRotation(api.SecretRotationStatus{ID: "chorus-new", From: "chorus-old", By: "n2", Phase: "pending", Total: 3}))
	steps := []api.SecretRotationStatus{
		{ID: "chorus-new", Phase: "installed", Total: 3},
		{ID: "chorus-new", Phase: "installed", Total: 3}, // no change: no line
		{ID: "chorus-new", Phase: "using", Done: 0, Total: 3},
		{ID: "chorus-new", Phase: "retired", Done: 3, Total: 3, Complete: true},
	}
	var mu sync.Mutex
	n := 0
	f.mux.HandleFunc("GET "+rotationsPath+"/"+api.SecretRotationName, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := steps[min(n, len(steps)-1)]
		n++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(api.NewSecretRotation(st))
	})
	res := f.run("cluster", "rotate-secret")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	want := []string{
		"rotation of the cluster secret from chorus-old to chorus-new started through n2",
		"phase installed: 0 of 3 peers done",
		"phase using: 0 of 3 peers done",
		"phase retired: 3 of 3 peers done",
		"cluster secret rotated to chorus-new",
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", res.stdout)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("line %d: %q, want %q...\n%s", i, lines[i], w, res.stdout)
		}
	}
	if reqs := f.requests(); reqs[0].method != http.MethodPost || reqs[0].contentType != "application/json" {
		t.Fatalf("first request %+v", reqs[0])
	}
}

// A rotation under way is refused with the agent's message; a credential
// retired while waiting is named as such.
func TestRotateSecretRefusedAndRetiredCredential(t *testing.T) {
	f := newFakeAgent(t)
	f.mux.HandleFunc("POST "+rotationsPath, func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusConflict, "Conflict", "a rotation of the cluster secret is under way")
	})
	res := f.run("cluster", "rotate-secret")
	if res.code == 0 || !strings.Contains(res.stderr, "under way") {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	g := newFakeAgent(t)
	g.mux.HandleFunc("GET "+rotationsPath+"/"+api.SecretRotationName, func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", "token refused")
	})
	res = g.run("cluster", "rotate-secret", "--status")
	if res.code == 0 || !strings.Contains(res.stderr, "retired by the rotation") {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	h := newFakeAgent(t)
	res = h.run("cluster", "rotate-secret", "--status")
	if res.code == 0 || !strings.Contains(res.stderr, "never rotated") {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
}

// Two rotations asked at the same moment: the record keeps one, and the
// command follows it, saying so.
func TestRotateSecretFollowsTheWinner(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("POST "+rotationsPath, http.StatusCreated, api.NewSecretRotation(api.SecretRotationStatus{ID: "chorus-mine", From: "chorus-old", By: "n1", Phase: "pending", Total: 2}))
	f.reply("GET "+rotationsPath+"/"+api.SecretRotationName, http.StatusOK, api.NewSecretRotation(api.SecretRotationStatus{ID: "chorus-theirs", By: "n2", Phase: "retired", Done: 2, Total: 2, Complete: true}))
	res := f.run("cluster", "rotate-secret")
	if res.code != 0 || !strings.Contains(res.stdout, "a rotation to chorus-theirs, asked at the same moment through n2, replaced this one") ||
		!strings.Contains(res.stdout, "cluster secret rotated to chorus-theirs") {
		t.Fatalf("exit %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
}
