package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

// A claim's directory is made on the peer it is bound to, mounted
// writable, and kept while a pod mounts it; PruneClaims removes the
// others.
func TestClaimVolumes(t *testing.T) {
	state := t.TempDir()
	claim := &api.PersistentVolumeClaim{Metadata: api.ObjectMeta{Name: "data", Namespace: "ns", UID: "u1",
		Annotations: map[string]string{api.AnnotationSelectedNode: "n1"}}}
	other := &api.PersistentVolumeClaim{Metadata: api.ObjectMeta{Name: "far", Namespace: "ns", UID: "u2",
		Annotations: map[string]string{api.AnnotationSelectedNode: "n2"}}}
	cfg := fakeConfig{claims: map[string]*api.PersistentVolumeClaim{"ns/data": claim, "ns/far": other}}
	m := &PodManager{opts: Options{StateDir: state, Node: "n1", Config: cfg}, workers: map[string]*podWorker{}}
	pod := api.Pod{Metadata: api.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: api.PodSpec{
		Volumes:    []api.Volume{{Name: "d", PersistentVolumeClaim: &api.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		Containers: []api.Container{{Name: "c", VolumeMounts: []api.VolumeMount{{Name: "d", MountPath: "/data"}}}}}}
	w := &podWorker{m: m, podState: podState{key: "ns/p", pod: pod}}
	m.workers["ns/p"] = w
	if err := w.setupVolumes(PodContext{NodeName: "n1"}); err != nil {
		t.Fatal(err)
	}
	dir := ClaimDir(state, claim)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("claim dir %s: %v", dir, err)
	}
	mounts, err := w.mounts(&pod.Spec.Containers[0])
	if err != nil || len(mounts) != 1 || mounts[0].Source != dir || mounts[0].ReadOnly {
		t.Fatalf("mounts %+v, %v", mounts, err)
	}
	far := pod
	far.Spec.Volumes = []api.Volume{{Name: "d", PersistentVolumeClaim: &api.PersistentVolumeClaimVolumeSource{ClaimName: "far"}}}
	if err := (&podWorker{m: m, podState: podState{key: "ns/p", pod: far}}).setupVolumes(PodContext{}); err == nil || !strings.Contains(err.Error(), `bound to peer "n2"`) {
		t.Fatalf("a claim of another peer: %v", err)
	}
	stale := filepath.Join(state, "claims", "ns_old_u0")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := m.PruneClaims(func(string) bool { return false })
	if err != nil || len(removed) != 1 || removed[0] != stale {
		t.Fatalf("pruned %v, %v; want only %s (%s is mounted by a pod here)", removed, err, stale, dir)
	}
}

// hostPath: only under the allowed prefixes; DirectoryOrCreate makes the
// directory, Directory wants one, File refuses a directory.
func TestHostPathVolumes(t *testing.T) {
	host := t.TempDir()
	m := &PodManager{opts: Options{StateDir: t.TempDir(), Node: "n1", Config: fakeConfig{}, AllowedHostPaths: []string{filepath.Join(host, "ok")}},
		workers: map[string]*podWorker{}}
	typ := func(s string) *string { return &s }
	for _, c := range []struct {
		path, typ, err string
	}{
		{filepath.Join(host, "ok", "made"), "DirectoryOrCreate", ""},
		{filepath.Join(host, "ok", "made"), "Directory", ""},
		{filepath.Join(host, "ok", "made"), "File", "is not a File"},
		{filepath.Join(host, "ok", "missing"), "Directory", "no such file"},
		{filepath.Join(host, "ok", "f"), "FileOrCreate", ""},
		{filepath.Join(host, "other"), "DirectoryOrCreate", "not allowed on this peer"},
		{filepath.Join(host, "ok") + "2", "", "not allowed on this peer"},
	} {
		pod := api.Pod{Metadata: api.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: api.PodSpec{
			Volumes:    []api.Volume{{Name: "h", HostPath: &api.HostPathVolumeSource{Path: c.path, Type: typ(c.typ)}}},
			Containers: []api.Container{{Name: "c", VolumeMounts: []api.VolumeMount{{Name: "h", MountPath: "/h"}}}}}}
		w := &podWorker{m: m, podState: podState{key: "ns/p", pod: pod}}
		err := w.setupVolumes(PodContext{})
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s %s: %v, want %q", c.typ, c.path, err, c.err)
		}
		if err == nil {
			if mounts, err := w.mounts(&pod.Spec.Containers[0]); err != nil || mounts[0].Source != c.path {
				t.Errorf("%s: mounts %+v, %v", c.path, mounts, err)
			}
		}
	}
}
