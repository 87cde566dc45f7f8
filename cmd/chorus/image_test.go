package main

import (
	"net/http"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

func TestImageRemoveAndPrune(t *testing.T) {
	f := newFakeAgent(t)
	web := api.NewImage("docker.io/example/web:1", "sha256:1", 0, 12_000_000, 0)
	web.RemovedFrom = "n1"
	f.reply("DELETE "+imagesPath+"/docker.io~example~web:1", http.StatusOK, web)
	f.reply("DELETE "+imagesPath+"/example~used:1", http.StatusConflict, map[string]any{
		"kind": "Status", "status": "Failure", "reason": "Conflict", "code": 409,
		"message": "image docker.io/example/used:1 is used by pod default/web-1 on peer n1: remove the pod first, or use --force"})
	a, b := api.NewImage("docker.io/example/a:1", "sha256:a", 0, 1_000_000, 0), api.NewImage("docker.io/example/b:1", "sha256:b", 0, 2_500_000, 0)
	a.RemovedFrom, b.RemovedFrom = "n1", "n1"
	f.reply("DELETE "+imagesPath, http.StatusOK, api.ImageList{Items: []api.Image{a, b}})

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
	if last := reqs[len(reqs)-1]; last.path != imagesPath || last.query != "all=true" {
		t.Fatalf("prune request %+v", last)
	}
	want := "image docker.io/example/a:1 removed from peer n1 (1MB unpacked)\n" +
		"image docker.io/example/b:1 removed from peer n1 (2.5MB unpacked)\n" +
		"2 images, 3.5MB unpacked\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("prune: %+v", r)
	}
}
