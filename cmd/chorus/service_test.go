package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
)

func TestServiceURLs(t *testing.T) {
	f := newFakeAgent(t)
	svc := api.Service{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Service"}, Metadata: api.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: api.ServiceSpec{Type: "NodePort", Ports: []api.ServicePort{{Port: 8080, NodePort: 31234}}}}
	f.reply("GET /chorus/v1/namespaces/default/services/web", http.StatusOK, svc)
	internal := api.Service{Metadata: api.ObjectMeta{Name: "db", Namespace: "default"}, Spec: api.ServiceSpec{Type: "ClusterIP", Ports: []api.ServicePort{{Port: 5432}}}}
	f.reply("GET /chorus/v1/namespaces/default/services/db", http.StatusOK, internal)
	alive := func(name, ip, phase string) node {
		return node{Metadata: api.ObjectMeta{Name: name}, Status: nodeStatus{Phase: phase, Addresses: []nodeAddress{{Type: "InternalIP", Address: ip}}}}
	}
	f.list("GET /chorus/v1/nodes", alive("n1", "127.0.0.11", "Alive"), alive("n2", "127.0.0.12", "Dead"), alive("n3", "127.0.0.13", "Alive"))

	host := strings.Split(strings.TrimPrefix(f.addr(), "http://"), ":")[0]
	if r := f.run("service", "web"); r.code != 0 || r.stdout != "http://"+host+":31234/\n" {
		t.Fatalf("service web: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := f.run("service", "web", "--all"); r.code != 0 || r.stdout != "http://127.0.0.11:31234/\nhttp://127.0.0.13:31234/\n" {
		t.Fatalf("service web --all: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := f.run("service", "db"); r.code != 1 || !strings.Contains(r.stderr, "has no NodePort") {
		t.Fatalf("service without a NodePort: %d %q", r.code, r.stderr)
	}
	if r := f.run("service", "nope"); r.code != 1 || !strings.Contains(r.stderr, "NotFound") {
		t.Fatalf("missing service: %d %q", r.code, r.stderr)
	}
}
