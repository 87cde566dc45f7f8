package api

import (
	"strings"
	"testing"
)

const goodIngress = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: chorus
  defaultBackend: {service: {name: fallback, port: {number: 80}}}
  tls:
  - {hosts: [a.example.com, "*.example.org"], secretName: web-tls}
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {name: http}}}}
      - {path: /, pathType: Exact, backend: {service: {name: web, port: {number: 8080}}}}
  - host: "*.example.org"
    http:
      paths:
      - {pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 8080}}}}
`

func TestDecodeIngress(t *testing.T) {
	objs, warns, err := Decode([]byte(goodIngress+"---\napiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: mine, namespace: ignored}\nspec: {controller: chorus.sh/ingress}\n"), "")
	if err != nil || len(warns) != 0 {
		t.Fatalf("Decode: %v %v", err, warns)
	}
	ing := objs[0].(*Ingress)
	if ing.Metadata.Namespace != DefaultNamespace || len(ing.Spec.Rules) != 2 || *ing.Spec.Rules[0].HTTP.Paths[0].PathType != PathTypePrefix ||
		ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "http" {
		t.Fatalf("decoded %+v", ing)
	}
	if c := objs[1].(*IngressClass); c.Metadata.Namespace != "" || ObjectKey(c) != "IngressClass//mine" {
		t.Fatalf("an IngressClass is cluster-scoped: %+v %s", c.Metadata, ObjectKey(c))
	}
}

func TestDecodeRejectsBadIngresses(t *testing.T) {
	tests := []struct {
		name, old, new string
		want           []string
	}{
		{"ip host", "host: a.example.com", "host: 10.0.0.1", []string{`spec.rules[0].host: "10.0.0.1" must be a DNS name, not an IP address`}},
		{"bad wildcard", `host: "*.example.org"`, `host: "a.*.example.org"`, []string{`spec.rules[1].host: "a.*.example.org" is not a valid host`}},
		{"relative path", "path: /api", "path: api", []string{`spec.rules[0].http.paths[0].path: "api" must be an absolute path (start with /)`}},
		{"double slash", "path: /api", "path: /a//b", []string{`spec.rules[0].http.paths[0].path: "/a//b" must not contain "//"`}},
		{"path type", "pathType: Prefix", "pathType: Regex", []string{`spec.rules[0].http.paths[0].pathType: unsupported value "Regex"`}},
		{"no path type", "pathType: Prefix, ", "", []string{`spec.rules[0].http.paths[0].pathType: required`}},
		{"port both", "port: {name: http}", "port: {name: http, number: 80}", []string{`spec.rules[0].http.paths[0].backend.service.port: give either name or number, not both`}},
		{"port none", "port: {name: http}", "port: {}", []string{`spec.rules[0].http.paths[0].backend.service.port: required`}},
		{"port range", "port: {number: 80}", "port: {number: 70000}", []string{`spec.defaultBackend.service.port.number: must be between 1 and 65535`}},
		{"service name", "name: api,", "name: API,", []string{`spec.rules[0].http.paths[0].backend.service.name: "API" is not a valid service name`}},
		{"resource backend", "defaultBackend: {service: {name: fallback, port: {number: 80}}}", "defaultBackend: {resource: {kind: Bucket, name: b}}",
			[]string{`spec.defaultBackend.service: required: a backend names a service (resource backends are not supported)`}},
		{"class", "ingressClassName: chorus", "ingressClassName: Chorus", []string{`spec.ingressClassName: "Chorus" is not a valid class name`}},
		{"secret", "secretName: web-tls", "secretName: Web_TLS", []string{`spec.tls[0].secretName: "Web_TLS" is not a valid secret name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := strings.Replace(goodIngress, tt.old, tt.new, 1)
			if m == goodIngress {
				t.Fatalf("the replacement of %q changed nothing", tt.old)
			}
			_, _, err := Decode([]byte(m), "")
			if err == nil {
				t.Fatal("Decode succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), "document 1 (Ingress web): "+w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	_, _, err := Decode([]byte("apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: x}\nspec: {controller: nginx}\n"), "")
	if err == nil || !strings.Contains(err.Error(), `spec.controller: "nginx" must be a domain-prefixed path`) {
		t.Fatalf("IngressClass without a domain: %v", err)
	}
}

func TestServiceDefaultsAndHelpers(t *testing.T) {
	m := strings.Replace(goodService, "spec:\n", "spec:\n  type: LoadBalancer\n  sessionAffinity: ClientIP\n", 1)
	objs, _, err := Decode([]byte(m), "")
	if err != nil {
		t.Fatal(err)
	}
	s := objs[0].(*Service)
	if !s.HasNodePorts() || s.Headless() || s.AffinityTimeout() != DefaultAffinityTimeout {
		t.Fatalf("LoadBalancer with ClientIP affinity: nodePorts %v headless %v timeout %d", s.HasNodePorts(), s.Headless(), s.AffinityTimeout())
	}
	h := "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None, selector: {app: db}}\n"
	objs, _, err = Decode([]byte(h), "")
	if err != nil {
		t.Fatalf("a headless service needs no ports: %v", err)
	}
	if s := objs[0].(*Service); !s.Headless() || s.AffinityTimeout() != 0 || s.Spec.SessionAffinity != AffinityNone {
		t.Fatalf("headless: %+v", s.Spec)
	}
}
