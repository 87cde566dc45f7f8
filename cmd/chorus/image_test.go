package main

import (
	"net/http"
	"testing"
)

func TestImageRemoveAndPrune(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("DELETE /chorus/v1/images/docker.io/example/web:1", http.StatusOK, imageRemoval{Node: "n1",
		Removed: []imageInfo{{Name: "docker.io/example/web:1", Unpacked: 12_000_000}}})
	f.reply("DELETE /chorus/v1/images/example/used:1", http.StatusConflict, map[string]any{
		"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409,
		"message": "image docker.io/example/used:1 is used by pod default/web-1 on peer n1: remove the pod first, or use --force"})
	f.reply("DELETE /chorus/v1/images", http.StatusOK, imageRemoval{Node: "n1", Removed: []imageInfo{
		{Name: "docker.io/example/a:1", Unpacked: 1_000_000}, {Name: "docker.io/example/b:1", Unpacked: 2_500_000}}})

	r := f.run("image", "rm", "docker.io/example/web:1", "example/used:1")
	if r.code != 1 || r.stdout != "image docker.io/example/web:1 removed from peer n1\n" ||
		r.stderr != "Error from server (Conflict): image docker.io/example/used:1 is used by pod default/web-1 on peer n1: remove the pod first, or use --force\n" {
		t.Fatalf("%+v", r)
	}
	r = f.run("image", "rm", "--force", "docker.io/example/web:1")
	reqs := f.requests()
	if last := reqs[len(reqs)-1]; r.code != 0 || last.method != http.MethodDelete || last.query != "force=true" {
		t.Fatalf("%+v %+v", r, last)
	}
	if r := f.run("image", "rm"); r.code == 0 {
		t.Fatalf("rm with no name: %+v", r)
	}

	r = f.run("image", "prune", "--all")
	reqs = f.requests()
	if last := reqs[len(reqs)-1]; last.path != "/chorus/v1/images" || last.query != "all=true" {
		t.Fatalf("prune request %+v", last)
	}
	want := "image docker.io/example/a:1 removed from peer n1 (1MB unpacked)\n" +
		"image docker.io/example/b:1 removed from peer n1 (2.5MB unpacked)\n" +
		"2 images, 3.5MB unpacked\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("prune: %+v", r)
	}
}
