package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestImageObjectName: an image's object name is one path segment, says
// which reference it is, and gives it back.
func TestImageObjectName(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/example/web:1":          "docker.io~example~web:1",
		"127.0.0.1:5000/team/app/api:v1.2": "127.0.0.1:5000~team~app~api:v1.2",
		"nginx:1.25":                       "nginx:1.25",
		"docker.io/library/db@sha256:0abc": "docker.io~library~db@sha256:0abc",
	} {
		got := ImageObjectName(ref)
		if got != want || strings.Contains(got, "/") {
			t.Errorf("ImageObjectName(%q) = %q, want %q", ref, got, want)
		}
		if back := ImageReference(got); back != ref {
			t.Errorf("ImageReference(%q) = %q, want %q", got, back, ref)
		}
		if ImageReference(ref) != ref {
			t.Errorf("ImageReference of the reference itself changed it: %q", ref)
		}
	}
}

// TestChorusObjectsAreKubernetesShaped: the group's objects and lists
// encode with apiVersion, kind and metadata at the top, as kubectl reads
// them.
func TestChorusObjectsAreKubernetesShaped(t *testing.T) {
	img := NewImage("docker.io/example/web:1", "sha256:1", 10, 20, 2)
	l := ImageList{Items: []Image{img}}
	l.APIVersion, l.Kind = APIVersionChorus, "ImageList"
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"ImageList","apiVersion":"chorus.sh/v1","metadata":{},"items":[{"kind":"Image","apiVersion":"chorus.sh/v1","metadata":{"name":"docker.io~example~web:1"},"reference":"docker.io/example/web:1","digest":"sha256:1","size":10,"unpacked":20,"peers":2}]}`
	if string(b) != want {
		t.Fatalf("ImageList:\n%s\nwant\n%s", b, want)
	}
	var back PeerList
	if err := json.Unmarshal([]byte(`{"kind":"PeerList","apiVersion":"chorus.sh/v1","items":[{"metadata":{"name":"p1"},"status":{"phase":"Alive","serving":true,"pods":3,"replication":{"deltasMerged":7}}}]}`), &back); err != nil {
		t.Fatal(err)
	}
	if p := back.Items[0]; p.Name != "p1" || !p.Status.Serving || p.Status.Pods != 3 || p.Status.Replication.DeltasMerged != 7 {
		t.Fatalf("PeerList decoded as %+v", back)
	}
}
