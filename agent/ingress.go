package agent

import (
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/state"
)

// Ingresses: every peer serves every Ingress of its class on its Ingress
// ports (--ingress-http-port, --ingress-https-port). The agent turns the
// replicated Ingresses, Services and TLS Secrets into a proxy.IngressTable
// at every reconcile pass; the proxy routes and balances.

// ingressClasses returns the IngressClasses: the stored ones and, unless
// one is stored under its name, the built-in default class "chorus".
func (a *Agent) ingressClasses() []*api.IngressClass {
	var out []*api.IngressClass
	builtin := true
	for _, o := range a.store.List(api.KindIngressClass, "") {
		c := o.(*api.IngressClass)
		builtin = builtin && c.Metadata.Name != api.IngressClassDefault
		out = append(out, c)
	}
	if builtin {
		out = append([]*api.IngressClass{api.DefaultIngressClass()}, out...)
	}
	return out
}

// servedClasses returns the names of the classes whose controller is
// chorus', and whether an Ingress without class is served: yes unless a
// class of another controller is marked as the default.
func servedClasses(classes []*api.IngressClass) (map[string]bool, bool) {
	served := map[string]bool{}
	noClass := true
	for _, c := range classes {
		if c.Spec.Controller == api.IngressController {
			served[c.Metadata.Name] = true
		} else if c.Metadata.Annotations[api.AnnotationDefaultIngressClass] == "true" {
			noClass = false
		}
	}
	return served, noClass
}

// servedIngresses returns the Ingresses this cluster serves, in namespace
// and name order.
func (a *Agent) servedIngresses() []*api.Ingress {
	served, noClass := servedClasses(a.ingressClasses())
	var out []*api.Ingress
	for _, o := range a.store.List(api.KindIngress, "") {
		ing := o.(*api.Ingress)
		if c := ing.Spec.IngressClassName; (c == nil && noClass) || (c != nil && served[*c]) {
			out = append(out, ing)
		}
	}
	return out
}

// ingressTable builds the proxy's routing table from the Ingresses, the
// services (to resolve named ports) and the TLS Secrets. It is pure but
// for secret, which looks a Secret up.
func ingressTable(ings []*api.Ingress, services []*api.Service, secret func(ns, name string) (*api.Secret, bool)) (proxy.IngressTable, []string) {
	var t proxy.IngressTable
	var problems []string
	byKey := map[string]*api.Service{}
	for _, s := range services {
		byKey[s.Metadata.Namespace+"/"+s.Metadata.Name] = s
	}
	backend := func(ns string, b *api.IngressBackend) proxy.IngressBackend {
		out := proxy.IngressBackend{Namespace: ns}
		if b == nil || b.Service == nil {
			return out
		}
		out.Service = b.Service.Name
		s := byKey[ns+"/"+b.Service.Name]
		if s == nil {
			return out // 503 until the service exists
		}
		for _, sp := range s.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != api.ProtocolTCP {
				continue
			}
			if (b.Service.Port.Number != 0 && sp.Port == b.Service.Port.Number) ||
				(b.Service.Port.Name != "" && sp.Name == b.Service.Port.Name) {
				out.Port = int(sp.Port)
			}
		}
		return out
	}
	for _, ing := range ings {
		ns := ing.Metadata.Namespace
		if ing.Spec.DefaultBackend != nil && t.Default == nil {
			b := backend(ns, ing.Spec.DefaultBackend)
			t.Default = &b
		}
		for _, r := range ing.Spec.Rules {
			if r.HTTP == nil {
				continue
			}
			rule := proxy.IngressRule{Host: r.Host}
			for _, p := range r.HTTP.Paths {
				typ := proxy.PathPrefix
				if p.PathType != nil && *p.PathType == api.PathTypeExact {
					typ = proxy.PathExact
				}
				rule.Paths = append(rule.Paths, proxy.IngressPath{Path: p.Path, Type: typ, Backend: backend(ns, &p.Backend)})
			}
			t.Rules = append(t.Rules, rule)
		}
		for _, tls := range ing.Spec.TLS {
			if tls.SecretName == "" {
				continue
			}
			s, ok := secret(ns, tls.SecretName)
			if !ok {
				problems = append(problems, fmt.Sprintf("Ingress %s/%s: tls secret %q not found", ns, ing.Metadata.Name, tls.SecretName))
				continue
			}
			crt, err1 := base64.StdEncoding.DecodeString(s.Data["tls.crt"])
			key, err2 := base64.StdEncoding.DecodeString(s.Data["tls.key"])
			if err1 != nil || err2 != nil || len(crt) == 0 || len(key) == 0 {
				problems = append(problems, fmt.Sprintf("Ingress %s/%s: secret %q has no tls.crt and tls.key", ns, ing.Metadata.Name, tls.SecretName))
				continue
			}
			hosts := tls.Hosts
			if len(hosts) == 0 {
				for _, r := range ing.Spec.Rules {
					if r.Host != "" {
						hosts = append(hosts, r.Host)
					}
				}
			}
			t.Certs = append(t.Certs, proxy.IngressCert{Hosts: hosts, CertPEM: crt, KeyPEM: key})
		}
	}
	return t, problems
}

// updateIngress hands the routing table to the proxy; problems (a missing
// Secret, a certificate that does not parse) are logged once each.
func (a *Agent) updateIngress(services []*api.Service) {
	t, problems := ingressTable(a.servedIngresses(), services, func(ns, name string) (*api.Secret, bool) {
		o, ok := a.store.Get(state.Key(api.KindSecret, ns, name))
		if !ok {
			return nil, false
		}
		return o.(*api.Secret), true
	})
	if err := a.proxy.UpdateIngress(t); err != nil {
		problems = append(problems, err.Error())
	}
	msg := strings.Join(problems, "; ")
	if p := a.ingressProblems.Swap(&msg); msg != "" && (p == nil || *p != msg) {
		a.log.Warn("ingress", "problems", msg)
	}
}

// ingressStatus fills in status.loadBalancer of an Ingress: the alive
// peers, all of which serve it.
func (a *Agent) ingressStatus(ing *api.Ingress) {
	ing.Status = api.IngressStatus{}
	for _, ip := range a.aliveAddrs() {
		ing.Status.LoadBalancer.Ingress = append(ing.Status.LoadBalancer.Ingress, api.IngressLoadBalancerIngress{IP: ip})
	}
}
