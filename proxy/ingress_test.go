package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func be(svc string) IngressBackend {
	return IngressBackend{Namespace: "default", Service: svc, Port: 80}
}

func TestRoute(t *testing.T) {
	def := be("default")
	tab := &IngressTable{
		Rules: []IngressRule{
			{Host: "", Paths: []IngressPath{{Path: "/", Type: PathPrefix, Backend: be("catchall")}}},
			{Host: "shop.example.com", Paths: []IngressPath{
				{Path: "/", Type: PathPrefix, Backend: be("shop")},
				{Path: "/api", Type: PathPrefix, Backend: be("api")},
				{Path: "/api/v2/", Type: PathPrefix, Backend: be("api2")},
				{Path: "/api", Type: PathExact, Backend: be("api-exact")},
				{Path: "/login", Type: PathExact, Backend: be("login")},
			}},
			{Host: "*.example.com", Paths: []IngressPath{{Path: "/static", Type: PathPrefix, Backend: be("static")}}},
			{Host: "only.example.org", Paths: []IngressPath{{Path: "/x", Type: PathExact, Backend: be("x")}}},
		},
		Default: &def,
	}
	for _, c := range []struct{ host, path, want string }{
		{"shop.example.com", "/", "shop"},
		{"SHOP.example.com:8080", "/cart", "shop"},
		{"shop.example.com.", "/cart", "shop"},
		{"shop.example.com", "/api", "api-exact"},      // Exact beats Prefix at equal length
		{"shop.example.com", "/api/", "api"},           // a trailing slash: the Prefix, not the Exact
		{"shop.example.com", "/api/users", "api"},      // element-wise prefix
		{"shop.example.com", "/apiary", "shop"},        // not /api: elements differ
		{"shop.example.com", "/api/v2", "api2"},        // a prefix's trailing slash is ignored
		{"shop.example.com", "/api/v2/orders", "api2"}, // longest wins
		{"shop.example.com", "/api/v21", "api"},
		{"shop.example.com", "/login", "login"},
		{"shop.example.com", "/login/", "shop"}, // Exact is exact
		{"img.example.com", "/static/a.png", "static"},
		{"img.example.com", "/other", "catchall"},        // the wildcard group has no match: rules without host
		{"a.b.example.com", "/static/a.png", "catchall"}, // a wildcard matches one label only
		{"example.com", "/static", "catchall"},
		{"only.example.org", "/x", "x"},
		{"only.example.org", "/y", "catchall"},
		{"", "/anything", "catchall"},
	} {
		got, ok := Route(tab, c.host, c.path)
		if !ok || got.Service != c.want {
			t.Errorf("Route(%q, %q) = %v %v, want %s", c.host, c.path, got.Service, ok, c.want)
		}
	}
	// Without a catch-all rule, the default backend; without it, no match.
	tab.Rules = tab.Rules[1:]
	if got, _ := Route(tab, "nowhere", "/"); got.Service != "default" {
		t.Errorf("unmatched: %v, want the default backend", got)
	}
	tab.Default = nil
	if got, ok := Route(tab, "nowhere", "/"); ok {
		t.Errorf("unmatched without default: %v, want no route", got)
	}
	if _, ok := Route(nil, "x", "/"); ok {
		t.Error("nil table routed")
	}
}

// Kubernetes' table of Prefix matches (concepts/services-networking/ingress, "Examples").
func TestPrefixMatchesKubernetesExamples(t *testing.T) {
	for _, c := range []struct {
		prefix, path string
		want         bool
	}{
		{"/", "/anything", true},
		{"/foo", "/foo", true},
		{"/foo", "/foo/", true},
		{"/foo/", "/foo", true},
		{"/foo/", "/foo/", true},
		{"/aaa/bb", "/aaa/bbb", false},
		{"/aaa/bbb", "/aaa/bbb", true},
		{"/aaa/bbb/", "/aaa/bbb", true},
		{"/aaa/bbb", "/aaa/bbb/", true},
		{"/aaa/bbb", "/aaa/bbb/ccc", true},
		{"/aaa/bbb", "/aaa/bbbxyz", false},
	} {
		if got := PrefixMatches(c.prefix, c.path); got != c.want {
			t.Errorf("PrefixMatches(%q, %q) = %v, want %v", c.prefix, c.path, got, c.want)
		}
	}
}

// genPath draws a clean absolute path of a few elements from a small
// alphabet, so that prefixes collide often.
func genPath(t *rapid.T, label string) string {
	elems := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "ab", "api", "v1"}), 0, 4).Draw(t, label)
	p := "/" + strings.Join(elems, "/")
	if len(elems) > 0 && rapid.Bool().Draw(t, label+"-slash") {
		p += "/"
	}
	return p
}

// elements is the reference definition of a path's elements.
func elements(p string) []string {
	var out []string
	for _, e := range strings.Split(p, "/") {
		if e != "" {
			out = append(out, e)
		}
	}
	return out
}

func TestPrefixMatchesElementWise(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		prefix, path := genPath(t, "prefix"), genPath(t, "path")
		pe, qe := elements(prefix), elements(path)
		want := len(pe) <= len(qe) && slices.Equal(pe, qe[:len(pe)])
		if got := PrefixMatches(prefix, path); got != want {
			t.Fatalf("PrefixMatches(%q, %q) = %v, want %v (elements %v of %v)", prefix, path, got, want, pe, qe)
		}
	})
}

// TestRouteProperties: the chosen path matches the request; no matching
// path of the same host group is longer (or an Exact of equal length
// against a chosen Prefix); an exact host rule that matches always wins
// over wildcard and catch-all rules; and the order of rules only breaks
// ties.
func TestRouteProperties(t *testing.T) {
	hosts := []string{"", "a.example.com", "*.example.com", "b.example.com"}
	rapid.Check(t, func(t *rapid.T) {
		var tab IngressTable
		n := rapid.IntRange(0, 6).Draw(t, "rules")
		id := 0
		for i := range n {
			r := IngressRule{Host: rapid.SampledFrom(hosts).Draw(t, fmt.Sprint("host", i))}
			for j := range rapid.IntRange(1, 4).Draw(t, fmt.Sprint("paths", i)) {
				id++
				typ := rapid.SampledFrom([]string{PathExact, PathPrefix}).Draw(t, fmt.Sprint("type", i, j))
				r.Paths = append(r.Paths, IngressPath{Path: genPath(t, fmt.Sprint("p", i, j)), Type: typ, Backend: be(fmt.Sprint("s", id))})
			}
			tab.Rules = append(tab.Rules, r)
		}
		host := rapid.SampledFrom([]string{"a.example.com", "b.example.com", "c.example.com", "x.y.example.com", "other"}).Draw(t, "reqhost")
		path := genPath(t, "reqpath")
		got, ok := Route(&tab, host, path)

		// Reference: each group in turn, the best path by (length, Exact).
		type cand struct {
			p   IngressPath
			len int
		}
		var want *IngressPath
		for pass := 0; pass < 3 && want == nil; pass++ {
			var best *cand
			for _, r := range tab.Rules {
				var in bool
				switch pass {
				case 0:
					in = r.Host == host
				case 1:
					in = strings.HasPrefix(r.Host, "*.") && strings.HasSuffix(host, r.Host[1:]) && !strings.Contains(strings.TrimSuffix(host, r.Host[1:]), ".")
				case 2:
					in = r.Host == ""
				}
				if !in {
					continue
				}
				for _, p := range r.Paths {
					var m bool
					if p.Type == PathExact {
						m = p.Path == path
					} else {
						pe, qe := elements(p.Path), elements(path)
						m = len(pe) <= len(qe) && slices.Equal(pe, qe[:len(pe)])
					}
					if !m {
						continue
					}
					l := len(strings.TrimSuffix(p.Path, "/"))
					if best == nil || l > best.len || (l == best.len && p.Type == PathExact && best.p.Type != PathExact) {
						best = &cand{p, l}
					}
				}
			}
			if best != nil {
				want = &best.p
			}
		}
		if (want != nil) != ok || (want != nil && want.Backend != got) {
			t.Fatalf("Route(%q, %q) = %v %v, want %v", host, path, got, ok, want)
		}
		// Reversing the rules changes the winner only among equals.
		rev := IngressTable{Rules: slices.Clone(tab.Rules)}
		slices.Reverse(rev.Rules)
		got2, ok2 := Route(&rev, host, path)
		if ok2 != ok {
			t.Fatalf("reversed rules: ok %v, was %v", ok2, ok)
		}
		if ok {
			p1, p2 := pathOf(&tab, got), pathOf(&rev, got2)
			if len(strings.TrimSuffix(p1.Path, "/")) != len(strings.TrimSuffix(p2.Path, "/")) || p1.Type != p2.Type {
				t.Fatalf("reversed rules chose %+v, was %+v", p2, p1)
			}
		}
	})
}

func pathOf(t *IngressTable, b IngressBackend) IngressPath {
	for _, r := range t.Rules {
		for _, p := range r.Paths {
			if p.Backend == b {
				return p
			}
		}
	}
	return IngressPath{}
}

func TestWildcardMatches(t *testing.T) {
	for _, c := range []struct {
		w, h string
		want bool
	}{
		{"*.foo.com", "bar.foo.com", true},
		{"*.foo.com", "baz.bar.foo.com", false},
		{"*.foo.com", "foo.com", false},
		{"*.foo.com", ".foo.com", false},
		{"foo.com", "foo.com", false},
	} {
		if got := WildcardMatches(c.w, c.h); got != c.want {
			t.Errorf("WildcardMatches(%q, %q) = %v", c.w, c.h, got)
		}
	}
}

// FuzzRoute feeds Route arbitrary hosts and paths (what clients send):
// it never panics, and what it returns is a backend of the table.
func FuzzRoute(f *testing.F) {
	def := be("default")
	tab := &IngressTable{Rules: []IngressRule{
		{Host: "a.example.com", Paths: []IngressPath{{Path: "/api", Type: PathPrefix, Backend: be("api")}, {Path: "/x", Type: PathExact, Backend: be("x")}}},
		{Host: "*.example.com", Paths: []IngressPath{{Path: "/", Type: PathPrefix, Backend: be("wild")}}},
		{Paths: []IngressPath{{Path: "", Type: PathPrefix, Backend: be("any")}}},
	}, Default: &def}
	for _, s := range [][2]string{{"a.example.com", "/api/v1"}, {"[::1]:80", "/"}, {"*.example.com", "//"}, {"", ""}, {".example.com", "/x/"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		b, ok := Route(tab, host, path)
		if !ok {
			t.Fatalf("Route(%q, %q): no route, though a rule matches every host and path", host, path)
		}
		switch b.Service {
		case "api", "x", "wild", "any":
		default:
			t.Fatalf("Route(%q, %q) = %v", host, path, b)
		}
		if tab.Default != nil && b.Service == "default" {
			t.Fatal("the default backend despite a catch-all rule")
		}
	})
}
