package agent

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/proxy"
)

func decodeAll(t *testing.T, m string) []api.Object {
	t.Helper()
	objs, _, err := api.Decode([]byte(m), "")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestIngressTable(t *testing.T) {
	objs := decodeAll(t, `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]
  selector: {app: web}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a}
spec:
  defaultBackend: {service: {name: web, port: {number: 80}}}
  tls: [{secretName: cert}, {hosts: [x.example], secretName: missing}]
  rules:
  - host: web.example
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
      - {path: /dns, pathType: Exact, backend: {service: {name: web, port: {name: dns}}}}
      - {path: /gone, pathType: ImplementationSpecific, backend: {service: {name: nosuch, port: {number: 80}}}}
`)
	svc, ing := objs[0].(*api.Service), objs[1].(*api.Ingress)
	secret := &api.Secret{Type: api.SecretTypeTLS, Data: map[string]string{
		"tls.crt": base64.StdEncoding.EncodeToString([]byte("CERT")), "tls.key": base64.StdEncoding.EncodeToString([]byte("KEY"))}}
	tab, problems := ingressTable([]*api.Ingress{ing}, []*api.Service{svc}, func(ns, name string) (*api.Secret, bool) {
		return secret, ns == "default" && name == "cert"
	})
	want := []proxy.IngressPath{
		{Path: "/", Type: proxy.PathPrefix, Backend: proxy.IngressBackend{Namespace: "default", Service: "web", Port: 80}},
		{Path: "/dns", Type: proxy.PathExact, Backend: proxy.IngressBackend{Namespace: "default", Service: "web"}},      // a UDP port: no HTTP backend
		{Path: "/gone", Type: proxy.PathPrefix, Backend: proxy.IngressBackend{Namespace: "default", Service: "nosuch"}}, // no service: 503
	}
	if len(tab.Rules) != 1 || tab.Rules[0].Host != "web.example" || len(tab.Rules[0].Paths) != 3 {
		t.Fatalf("rules: %+v", tab.Rules)
	}
	for i, p := range tab.Rules[0].Paths {
		if p != want[i] {
			t.Errorf("path %d: %+v, want %+v", i, p, want[i])
		}
	}
	if tab.Default == nil || tab.Default.Port != 80 {
		t.Errorf("default backend: %+v", tab.Default)
	}
	if len(tab.Certs) != 1 || string(tab.Certs[0].CertPEM) != "CERT" || strings.Join(tab.Certs[0].Hosts, ",") != "web.example" {
		t.Errorf("certs: %+v", tab.Certs)
	}
	if len(problems) != 1 || !strings.Contains(problems[0], `tls secret "missing" not found`) {
		t.Errorf("problems: %v", problems)
	}
}

func TestServedClasses(t *testing.T) {
	other := &api.IngressClass{Metadata: api.ObjectMeta{Name: "nginx"}, Spec: api.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
	mine := &api.IngressClass{Metadata: api.ObjectMeta{Name: "edge"}, Spec: api.IngressClassSpec{Controller: api.IngressController}}
	served, noClass := servedClasses([]*api.IngressClass{api.DefaultIngressClass(), other, mine})
	if !served["chorus"] || !served["edge"] || served["nginx"] || !noClass {
		t.Fatalf("served %v, no class %v", served, noClass)
	}
	other.Metadata.Annotations = map[string]string{api.AnnotationDefaultIngressClass: "true"}
	if _, noClass := servedClasses([]*api.IngressClass{api.DefaultIngressClass(), other}); noClass {
		t.Fatal("another controller's default class: Ingresses without class are still served")
	}
}
