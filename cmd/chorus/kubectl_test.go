package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestKubectlCommand: which command lines are kubectl's, and which of
// their leading flags are chorus' own.
func TestKubectlCommand(t *testing.T) {
	root, _ := newRootCmd(strings.NewReader(""), io.Discard, io.Discard)
	for _, c := range []struct {
		args          []string
		globals, rest []string
		kubectl       bool
	}{
		{args: []string{"get", "pods"}, rest: []string{"get", "pods"}, kubectl: true},
		{args: []string{"top", "pods", "-A", "--containers"}, rest: []string{"top", "pods", "-A", "--containers"}, kubectl: true},
		{args: []string{"-s", "10.0.0.1:7070", "-n", "kt", "rollout", "status", "deploy/web"},
			globals: []string{"-s", "10.0.0.1:7070", "-n", "kt"}, rest: []string{"rollout", "status", "deploy/web"}, kubectl: true},
		{args: []string{"--token=x", "-v", "apply", "-f", "-"}, globals: []string{"--token=x", "-v"}, rest: []string{"apply", "-f", "-"}, kubectl: true},
		// A flag chorus does not know is kubectl's: kubectl parses it all.
		{args: []string{"--context", "prod", "get", "pods"}, rest: []string{"--context", "prod", "get", "pods"}, kubectl: true},
		// chorus' own commands, help and completion stay chorus'.
		{args: []string{"image", "ls"}},
		{args: []string{"-s", "x:1", "agent", "--name", "a"}},
		{args: []string{"kubectl", "get", "pods"}},
		{args: []string{"help"}},
		{args: []string{"--help"}},
		{args: []string{"--version"}},
		{args: []string{"completion", "bash"}},
		{args: []string{"-n", "kt"}},
		{args: nil},
	} {
		globals, rest, ok := kubectlCommand(root, c.args)
		if ok != c.kubectl || !reflect.DeepEqual(globals, c.globals) || !reflect.DeepEqual(rest, c.rest) {
			t.Errorf("%q: kubectl %v globals %q rest %q; want %v %q %q", c.args, ok, globals, rest, c.kubectl, c.globals, c.rest)
		}
	}
	// The split does not write into the caller's slice.
	args := []string{"get", "pods"}
	_, _, _ = kubectlCommand(root, args)
	if args[0] != "get" || args[1] != "pods" {
		t.Fatalf("args changed: %q", args)
	}
}

// TestKubectlArgs: chorus' -s (HTTPS unless it says http://), --token,
// --certificate-authority and -n, and the kubeconfig chorus would use,
// become kubectl's flags; kubectl's own choice of cluster wins.
func TestKubectlArgs(t *testing.T) {
	for _, k := range []string{"CHORUS_SERVER", "CHORUS_TOKEN", "CHORUS_NAMESPACE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	writeFile(t, kc, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://10.0.0.9:7070'}}]\n"+
		"users: [{name: u, user: {token: from-kubeconfig}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n")
	t.Setenv("KUBECONFIG", kc)
	parse := func(globals ...string) *rootOptions {
		t.Helper()
		root, o := newRootCmd(strings.NewReader(""), io.Discard, io.Discard)
		if err := root.PersistentFlags().Parse(globals); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, c := range []struct {
		globals, args, want []string
	}{
		{nil, []string{"--from-chorus", "get", "pods"},
			[]string{"--kubeconfig", kc, "--token", "from-kubeconfig", "get", "pods"}},
		{[]string{"-s", "10.0.0.1:7070", "-n", "kt", "--token", "tok"}, []string{"--from-chorus", "get", "pods"},
			[]string{"--kubeconfig", kc, "--server", "https://10.0.0.1:7070", "--token", "tok", "--namespace", "kt", "get", "pods"}},
		{[]string{"-s", "http://10.0.0.1:7070"}, []string{"--from-chorus", "get", "pods"},
			[]string{"--kubeconfig", kc, "--server", "http://10.0.0.1:7070", "--token", "from-kubeconfig", "get", "pods"}},
		{nil, []string{"--context", "other", "get", "pods"}, []string{"--context", "other", "get", "pods"}},
		{nil, []string{"--kubectl-as-is", "get", "pods"}, []string{"get", "pods"}},
	} {
		got, err := kubectlArgs(parse(c.globals...), c.args)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q %q: %q %v, want %q", c.globals, c.args, got, err, c.want)
		}
	}
}

// TestReplayStdin: `chorus apply -f -` reads its standard input once, and
// both kubectl runs (the dry run, then the real one) read all of it from
// os.Stdin, which is given back afterwards.
func TestReplayStdin(t *testing.T) {
	saved := os.Stdin
	f, restore, err := replayStdin(strings.NewReader("kind: Namespace\n"))
	if err != nil {
		t.Fatal(err)
	}
	for run := range 2 {
		if os.Stdin != f {
			t.Fatal("os.Stdin is not the copy")
		}
		b, err := io.ReadAll(os.Stdin)
		if err != nil || string(b) != "kind: Namespace\n" {
			t.Fatalf("run %d read %q %v", run, b, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	restore()
	if os.Stdin != saved {
		t.Fatal("os.Stdin not restored")
	}
}

func TestCheckFirst(t *testing.T) {
	for args, want := range map[string]bool{
		"apply -f app.yaml":                  true,
		"apply -f=-":                         true,
		"create -fapp.yaml":                  true,
		"replace --filename app.yaml":        true,
		"apply -k dir":                       true,
		"apply -f app.yaml --dry-run=server": false,
		"create deployment web --image=x":    false,
		"get pods -f x":                      false,
	} {
		if got := checkFirst(strings.Fields(args)); got != want {
			t.Errorf("%q: %v, want %v", args, got, want)
		}
	}
	if !readsStdin(strings.Fields("apply -f -")) || readsStdin(strings.Fields("apply -f app.yaml")) {
		t.Error("readsStdin")
	}
	if got := withDryRun([]string{"apply", "-f", "x", "--", "y"}); strings.Join(got, " ") != "apply -f x --dry-run=server -- y" {
		t.Errorf("withDryRun: %q", got)
	}
}
