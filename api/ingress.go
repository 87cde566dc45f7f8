package api

import (
	"net/netip"
	"strings"
)

// Kinds of the networking.k8s.io/v1 group.
const (
	KindIngress      = "Ingress"
	KindIngressClass = "IngressClass"
)

// Ingress path types.
const (
	PathTypeExact                  = "Exact"
	PathTypePrefix                 = "Prefix"
	PathTypeImplementationSpecific = "ImplementationSpecific"
)

// IngressController is the spec.controller of the IngressClasses chorus
// serves; IngressClassDefault is the class every peer serves without a
// manifest, the default one.
const (
	IngressController   = "chorus.sh/ingress"
	IngressClassDefault = "chorus"
	// AnnotationDefaultIngressClass marks the default class, as in Kubernetes.
	AnnotationDefaultIngressClass = "ingressclass.kubernetes.io/is-default-class"
)

// Ingress is a networking.k8s.io/v1 Ingress.
type Ingress struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     IngressSpec   `json:"spec"`
	Status   IngressStatus `json:"status,omitempty"`
}

// IngressSpec is an Ingress's rules.
type IngressSpec struct {
	IngressClassName *string         `json:"ingressClassName,omitempty"`
	DefaultBackend   *IngressBackend `json:"defaultBackend,omitempty"`
	TLS              []IngressTLS    `json:"tls,omitempty"`
	Rules            []IngressRule   `json:"rules,omitempty"`
}

// IngressBackend is where matching requests go: a service port.
type IngressBackend struct {
	Service *IngressServiceBackend `json:"service,omitempty"`
}

// IngressServiceBackend names a service and one of its ports.
type IngressServiceBackend struct {
	Name string             `json:"name"`
	Port ServiceBackendPort `json:"port"`
}

// ServiceBackendPort is a service port by name or by number.
type ServiceBackendPort struct {
	Name   string `json:"name,omitempty"`
	Number int32  `json:"number,omitempty"`
}

// IngressTLS serves hosts over HTTPS with the certificate of a
// kubernetes.io/tls Secret in the Ingress's namespace.
type IngressTLS struct {
	Hosts      []string `json:"hosts,omitempty"`
	SecretName string   `json:"secretName,omitempty"`
}

// IngressRule routes the requests for one host (all hosts if empty).
type IngressRule struct {
	Host string                `json:"host,omitempty"`
	HTTP *HTTPIngressRuleValue `json:"http,omitempty"`
}

// HTTPIngressRuleValue lists a rule's paths.
type HTTPIngressRuleValue struct {
	Paths []HTTPIngressPath `json:"paths"`
}

// HTTPIngressPath routes one path.
type HTTPIngressPath struct {
	Path     string         `json:"path,omitempty"`
	PathType *string        `json:"pathType,omitempty"`
	Backend  IngressBackend `json:"backend"`
}

// IngressStatus is what chorus reports: the peers that serve it.
type IngressStatus struct {
	LoadBalancer IngressLoadBalancerStatus `json:"loadBalancer,omitempty"`
}

// IngressLoadBalancerStatus lists the addresses serving an Ingress.
type IngressLoadBalancerStatus struct {
	Ingress []IngressLoadBalancerIngress `json:"ingress,omitempty"`
}

// IngressLoadBalancerIngress is one address serving an Ingress.
type IngressLoadBalancerIngress struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

// IngressClass is a networking.k8s.io/v1 IngressClass (cluster-scoped).
type IngressClass struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     IngressClassSpec `json:"spec"`
}

// IngressClassSpec names the controller that serves the class.
type IngressClassSpec struct {
	Controller string `json:"controller,omitempty"`
}

// GetKind returns KindIngress.
func (*Ingress) GetKind() string { return KindIngress }

// Meta returns the ingress's metadata.
func (o *Ingress) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion networking.k8s.io/v1, kind Ingress.
func (o *Ingress) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionNetworkingV1, Kind: KindIngress}
}

// GetKind returns KindIngressClass.
func (*IngressClass) GetKind() string { return KindIngressClass }

// Meta returns the class's metadata.
func (o *IngressClass) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion networking.k8s.io/v1, kind IngressClass.
func (o *IngressClass) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionNetworkingV1, Kind: KindIngressClass}
}

// DefaultIngressClass is the class every peer serves without a manifest.
func DefaultIngressClass() *IngressClass {
	return &IngressClass{TypeMeta: TypeMeta{APIVersion: apiVersionNetworkingV1, Kind: KindIngressClass},
		Metadata: ObjectMeta{Name: IngressClassDefault, Annotations: map[string]string{AnnotationDefaultIngressClass: "true"}},
		Spec:     IngressClassSpec{Controller: IngressController}}
}

func (v *validator) ingressSpec(s *IngressSpec, path string) {
	if s.IngressClassName != nil {
		if msg := checkDNS1123Subdomain(*s.IngressClassName); msg != "" {
			v.add(child(path, "ingressClassName"), "%q is not a valid class name: %s", *s.IngressClassName, msg)
		}
	}
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		v.add(path, "either `defaultBackend` or `rules` must be specified")
	}
	if s.DefaultBackend != nil {
		v.ingressBackend(s.DefaultBackend, child(path, "defaultBackend"))
	}
	for i, t := range s.TLS {
		p := index(child(path, "tls"), i)
		for j, h := range t.Hosts {
			v.ingressHost(h, index(child(p, "hosts"), j))
		}
		if t.SecretName != "" {
			if msg := checkDNS1123Subdomain(t.SecretName); msg != "" {
				v.add(child(p, "secretName"), "%q is not a valid secret name: %s", t.SecretName, msg)
			}
		}
	}
	for i, r := range s.Rules {
		p := index(child(path, "rules"), i)
		if r.Host != "" {
			v.ingressHost(r.Host, child(p, "host"))
		}
		if r.HTTP == nil {
			if s.DefaultBackend == nil {
				v.add(child(p, "http"), "required: a rule without http sends nothing anywhere when there is no defaultBackend")
			}
			continue
		}
		paths := child(child(p, "http"), "paths")
		if len(r.HTTP.Paths) == 0 {
			v.add(paths, "required: at least one path")
		}
		for j := range r.HTTP.Paths {
			v.ingressPath(&r.HTTP.Paths[j], index(paths, j))
		}
	}
}

// ingressHost checks a host of a rule or of tls: a DNS name, optionally
// with a wildcard first label ("*.example.com"), never an IP address.
func (v *validator) ingressHost(h, path string) {
	if _, err := netip.ParseAddr(h); err == nil {
		v.add(path, "%q must be a DNS name, not an IP address", h)
		return
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if msg := checkDNS1123Subdomain(name); msg != "" {
		v.add(path, "%q is not a valid host: %s (a wildcard is allowed only as the whole first label: *.example.com)", h, msg)
	}
}

// invalidPathSequences and invalidPathSuffixes are what Kubernetes
// refuses in an Exact or Prefix path.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

func (v *validator) ingressPath(p *HTTPIngressPath, path string) {
	pt := ""
	if p.PathType == nil {
		v.add(child(path, "pathType"), "required: one of Exact, Prefix, ImplementationSpecific")
	} else {
		pt = *p.PathType
		switch pt {
		case PathTypeExact, PathTypePrefix, PathTypeImplementationSpecific:
		default:
			v.add(child(path, "pathType"), "unsupported value %q: supported values: Exact, Prefix, ImplementationSpecific", pt)
		}
	}
	pp := child(path, "path")
	switch {
	case pt == PathTypeImplementationSpecific && p.Path == "":
	case !strings.HasPrefix(p.Path, "/"):
		v.add(pp, "%q must be an absolute path (start with /)", p.Path)
	case pt == PathTypeExact || pt == PathTypePrefix || pt == PathTypeImplementationSpecific:
		for _, s := range invalidPathSequences {
			if strings.Contains(p.Path, s) {
				v.add(pp, "%q must not contain %q", p.Path, s)
			}
		}
		for _, s := range invalidPathSuffixes {
			if strings.HasSuffix(p.Path, s) {
				v.add(pp, "%q must not end with %q", p.Path, s)
			}
		}
	}
	v.ingressBackend(&p.Backend, child(path, "backend"))
}

func (v *validator) ingressBackend(b *IngressBackend, path string) {
	if b.Service == nil {
		v.add(child(path, "service"), "required: a backend names a service (resource backends are not supported)")
		return
	}
	s := child(path, "service")
	if b.Service.Name == "" {
		v.add(child(s, "name"), "required")
	} else if msg := checkDNS1035Label(b.Service.Name); msg != "" {
		v.add(child(s, "name"), "%q is not a valid service name: %s", b.Service.Name, msg)
	}
	port := child(s, "port")
	switch p := b.Service.Port; {
	case p.Name != "" && p.Number != 0:
		v.add(port, "give either name or number, not both")
	case p.Name == "" && p.Number == 0:
		v.add(port, "required: a port name or number")
	case p.Name != "":
		if msg := checkPortName(p.Name); msg != "" {
			v.add(child(port, "name"), "%q is not a valid port name: %s", p.Name, msg)
		}
	case p.Number < 1 || p.Number > 65535:
		v.add(child(port, "number"), "must be between 1 and 65535, inclusive, got %d", p.Number)
	}
}

func (v *validator) ingressClass(c *IngressClass) {
	ctl := c.Spec.Controller
	switch {
	case ctl == "":
		v.add("spec.controller", "required: the controller that serves the class, like %s", IngressController)
	case len(ctl) > 250:
		v.add("spec.controller", "must be at most 250 characters, got %d", len(ctl))
	default:
		domain, _, ok := strings.Cut(ctl, "/")
		if !ok || checkDNS1123Subdomain(domain) != "" {
			v.add("spec.controller", "%q must be a domain-prefixed path, like %s", ctl, IngressController)
		}
	}
}
