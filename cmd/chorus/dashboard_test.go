package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

func TestDashboardPrintsURL(t *testing.T) {
	f := newFakeAgent(t)
	f.peer("n1", "v0.1.0")
	for _, args := range [][]string{{"dashboard"}, {"dashboard", "--url"}} {
		r := f.run(args...)
		if r.code != 0 || r.stdout != f.addr()+"/dashboard/\n" || r.stderr != "" {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].method != "GET" || reqs[0].path != api.PathChorusV1+"/peers" || reqs[0].query != "fieldSelector=status.serving%3Dtrue" {
		t.Fatalf("requests %+v", reqs)
	}
	// A namespace named on the command line is where the page starts.
	if r := f.run("dashboard", "-n", "dev"); r.code != 0 || r.stdout != f.addr()+"/dashboard/#ns=dev\n" {
		t.Fatalf("-n dev: %+v", r)
	}
	// A server given as a URL keeps its scheme.
	r := runCLI(t, context.Background(), "", "-s", f.addr()+"/", "dashboard")
	if r.code != 0 || r.stdout != f.addr()+"/dashboard/\n" {
		t.Fatalf("URL server: %+v", r)
	}
}

func TestDashboardChecksThePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := runCLI(t, context.Background(), "", "-s", addr, "dashboard")
	if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, "error: cannot reach chorus agent at "+addr) {
		t.Fatalf("no peer: %+v", r)
	}
	// Something that answers, but not as a chorus agent.
	f := newFakeAgent(t)
	f.reply("GET "+api.PathChorusV1+"/peers", http.StatusOK, map[string]string{})
	if r := f.run("dashboard"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "not as a chorus agent") {
		t.Fatalf("not an agent: %+v", r)
	}
	f = newFakeAgent(t) // every path answers 404
	if r := f.run("dashboard"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "NotFound") {
		t.Fatalf("404: %+v", r)
	}
}
