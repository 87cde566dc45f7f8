package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// result is what one run of the agent's command line printed and returned.
type result struct {
	stdout, stderr string
	code           int
}

// runAgent runs the agent's command line in the test process.
func runAgent(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAgentTokenFlags: the agent's token comes from --api-token, its config
// key or CHORUS_API_TOKEN, or from --api-token-file; a file that gives none
// stops the agent before it starts, naming the flag.
func TestAgentTokenFlags(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "  s3cret\n")
	if tok, err := apiToken("", tokenFile); err != nil || tok != "s3cret" {
		t.Fatalf("file: %q %v", tok, err)
	}
	if tok, err := apiToken("direct", ""); err != nil || tok != "direct" {
		t.Fatalf("flag: %q %v", tok, err)
	}
	if tok, err := apiToken("", ""); err != nil || tok != "" {
		t.Fatalf("none: %q %v", tok, err)
	}
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, " \n\t\n")
	spaced := filepath.Join(dir, "spaced")
	writeFile(t, spaced, "two words\n")
	for _, c := range []struct{ token, file, want string }{
		{"", filepath.Join(dir, "missing"), "--api-token-file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"", empty, "--api-token-file " + empty + ": the file is empty"},
		{"", dir, "--api-token-file: read " + dir + ": is a directory"},
		{"", spaced, "--api-token-file " + spaced + ": the token holds the byte 0x20 at 3"},
		{"a b", "", "--api-token: the token holds the byte 0x20 at 1"},
		{"x", tokenFile, "--api-token and --api-token-file: give one of them, not both"},
	} {
		if _, err := apiToken(c.token, c.file); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("token %q file %q: %v, want %q", c.token, c.file, err, c.want)
		}
	}

	// Through the command line, the config file and the environment: each
	// of these fails before the agent starts anything.
	config := filepath.Join(dir, "agent.yaml")
	writeFile(t, config, "api-token-file: "+empty+"\n")
	agentArgs := []string{"--name", "n1", "--data-dir", filepath.Join(dir, "data")}
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--api-token-file", empty}, "", "error: --api-token-file " + empty + ": the file is empty\n"},
		{[]string{"--config", config}, "", "error: --api-token-file " + empty + ": the file is empty\n"},
		{nil, "CHORUS_API_TOKEN_FILE=" + filepath.Join(dir, "missing"), "error: --api-token-file: open "},
		{nil, "CHORUS_API_TOKEN=bad token", "error: --api-token: the token holds the byte 0x20 at 3"},
	} {
		if k, v, ok := strings.Cut(c.env, "="); ok {
			t.Setenv(k, v)
		}
		r := runAgent(t, append(agentArgs, c.args...)...)
		if k, _, ok := strings.Cut(c.env, "="); ok {
			os.Unsetenv(k)
		}
		if r.code != 1 || !strings.HasPrefix(r.stderr, c.want) {
			t.Errorf("%v %s: %+v", c.args, c.env, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the agent started: %v", err)
	}
}
