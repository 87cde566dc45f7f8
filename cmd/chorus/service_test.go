package main

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServiceURLs(t *testing.T) {
	f := newFakeAgent(t)
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 8080, NodePort: 31234}}}}
	f.reply("GET /api/v1/namespaces/default/services/web", http.StatusOK, svc)
	internal := corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 5432}}}}
	f.reply("GET /api/v1/namespaces/default/services/db", http.StatusOK, internal)
	node := func(name, ip string, ready corev1.ConditionStatus) corev1.Node {
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	f.reply("GET /api/v1/nodes", http.StatusOK, corev1.NodeList{Items: []corev1.Node{
		node("n1", "127.0.0.11", corev1.ConditionTrue), node("n2", "127.0.0.12", corev1.ConditionUnknown), node("n3", "127.0.0.13", corev1.ConditionTrue)}})

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
