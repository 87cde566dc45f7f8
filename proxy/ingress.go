package proxy

import (
	"net"
	"strings"
)

// Ingress routing: the pure decision of which service port serves an HTTP
// request, from the rules of every Ingress the peer serves. The agent
// turns Ingress objects into an [IngressTable]; [Route] reads it.

// Path types of an [IngressPath] (ImplementationSpecific is given as
// Prefix: chorus implements it so).
const (
	PathExact  = "Exact"
	PathPrefix = "Prefix"
)

// IngressBackend is a service port. Port 0 means the service or its named
// port does not exist: requests routed there get 503.
type IngressBackend struct {
	Namespace, Service string
	Port               int
}

// IngressPath routes the requests whose path matches Path.
type IngressPath struct {
	Path    string // absolute; "" is "/"
	Type    string // PathExact or PathPrefix
	Backend IngressBackend
}

// IngressRule routes the requests for Host: "" for every host, a name for
// that host exactly, "*.example.com" for a host with exactly one more
// label in front of example.com.
type IngressRule struct {
	Host  string
	Paths []IngressPath
}

// IngressCert is a certificate (PEM) and its key for the hosts of an
// Ingress's tls entry.
type IngressCert struct {
	Hosts   []string // names or "*.example.com"; none: any host
	CertPEM []byte
	KeyPEM  []byte
}

// IngressTable is everything the peer's Ingress serves, in priority order
// (the agent orders Ingresses by namespace and name): rules, the default
// backend (nil: 404) and the certificates.
type IngressTable struct {
	Rules   []IngressRule
	Default *IngressBackend
	Certs   []IngressCert
}

// Route returns the backend for a request to host (the Host header, a port
// allowed) and path (the URL's path). The rules whose host is exactly the
// request's are tried first, then the wildcard rules that match it, then
// the rules without host; within the first of these groups that has a
// matching path, the longest matching path wins (Exact before Prefix at
// equal length, then the earlier rule). A Prefix path matches element by
// element, as Kubernetes defines it: /foo matches /foo, /foo/ and /foo/bar,
// not /foobar; a trailing slash of either is ignored. No match: the
// default backend, else ok is false (404).
func Route(t *IngressTable, host, path string) (b IngressBackend, ok bool) {
	if t == nil {
		return IngressBackend{}, false
	}
	host = normalizeHost(host)
	if path == "" {
		path = "/"
	}
	for pass := 0; pass < 3; pass++ {
		best := -1
		var bestPath *IngressPath
		for i := range t.Rules {
			r := &t.Rules[i]
			if !hostMatches(pass, r.Host, host) {
				continue
			}
			for j := range r.Paths {
				p := &r.Paths[j]
				if !pathMatches(p, path) {
					continue
				}
				score := 2 * len(strings.TrimSuffix(pathOrRoot(p.Path), "/"))
				if p.Type == PathExact {
					score++
				}
				if score > best {
					best, bestPath = score, p
				}
			}
		}
		if bestPath != nil {
			return bestPath.Backend, true
		}
	}
	if t.Default != nil {
		return *t.Default, true
	}
	return IngressBackend{}, false
}

// hostMatches reports whether a rule's host matches host in a pass: 0
// exact names, 1 wildcards, 2 rules without host.
func hostMatches(pass int, rule, host string) bool {
	rule = strings.ToLower(rule)
	switch pass {
	case 0:
		return rule != "" && !strings.HasPrefix(rule, "*.") && rule == host
	case 1:
		return WildcardMatches(rule, host)
	default:
		return rule == ""
	}
}

// WildcardMatches reports whether the wildcard host "*.suffix" matches
// host: host is one label (not empty, no dot) followed by ".suffix".
func WildcardMatches(wildcard, host string) bool {
	suffix, ok := strings.CutPrefix(wildcard, "*")
	if !ok || !strings.HasPrefix(suffix, ".") {
		return false
	}
	first, ok := strings.CutSuffix(host, suffix)
	return ok && first != "" && !strings.Contains(first, ".")
}

// normalizeHost lower-cases host and removes a port and a trailing dot.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// pathMatches applies p's type to the request path.
func pathMatches(p *IngressPath, path string) bool {
	if p.Type == PathExact {
		return path == pathOrRoot(p.Path)
	}
	return PrefixMatches(pathOrRoot(p.Path), path)
}

// PrefixMatches is Kubernetes' Prefix match: the elements of prefix (split
// by "/", a trailing slash ignored) are the first elements of path.
func PrefixMatches(prefix, path string) bool {
	pre := strings.TrimSuffix(prefix, "/")
	if pre == "" {
		return true
	}
	if !strings.HasPrefix(path, pre) {
		return false
	}
	rest := path[len(pre):]
	return rest == "" || rest[0] == '/'
}
