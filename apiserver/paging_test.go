package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func deploymentIn(ns, name string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q,"namespace":%q},
"spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"app":"x"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`, name, ns))
}

type listPage struct {
	Metadata struct {
		ResourceVersion    string `json:"resourceVersion"`
		Continue           string `json:"continue"`
		RemainingItemCount *int64 `json:"remainingItemCount"`
	} `json:"metadata"`
	Items []struct {
		Metadata struct{ Name, Namespace string } `json:"metadata"`
	} `json:"items"`
}

func getPage(t *testing.T, u string) listPage {
	t.Helper()
	code, body := do(t, "GET", u, "", "")
	if code != 200 {
		t.Fatalf("GET %s: %d %s", u, code, body)
	}
	var p listPage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
	return p
}

func TestListPages(t *testing.T) {
	b := newMem()
	// "a-b" sorts after "a" as a namespace although "a-b/..." < "a/..." as
	// a string: pages must follow namespace, then name.
	for _, k := range [][2]string{{"a", "x1"}, {"a", "x2"}, {"a-b", "y1"}, {"a-b", "y3"}, {"b", "z1"}, {"b", "z2"}, {"b", "z3"}} {
		b.put("Deployment", deploymentIn(k[0], k[1]))
	}
	s, hs := start(t, b, "p1")
	base := hs.URL + "/apis/apps/v1/deployments"

	var got []string
	var rvs []string
	var remaining []int64
	next := ""
	for i := 0; ; i++ {
		if i > 10 {
			t.Fatal("the pages never end")
		}
		u := base + "?limit=3"
		if next != "" {
			u += "&continue=" + url.QueryEscape(next)
		}
		p := getPage(t, u)
		for _, it := range p.Items {
			got = append(got, it.Metadata.Namespace+"/"+it.Metadata.Name)
		}
		rvs = append(rvs, p.Metadata.ResourceVersion)
		if p.Metadata.RemainingItemCount != nil {
			remaining = append(remaining, *p.Metadata.RemainingItemCount)
		}
		if i == 0 {
			// Written between the first and second page: later pages
			// read the current state, so it shows up.
			b.put("Deployment", deploymentIn("a-b", "y2"))
			s.cache.sync(t.Context())
		}
		if next = p.Metadata.Continue; next == "" {
			break
		}
	}
	want := "a/x1 a/x2 a-b/y1 a-b/y2 a-b/y3 b/z1 b/z2 b/z3"
	if strings.Join(got, " ") != want {
		t.Fatalf("pages gave %v, want %s", got, want)
	}
	if len(rvs) != 3 || rvs[0] != rvs[1] || rvs[1] != rvs[2] {
		t.Fatalf("every page carries the first page's resourceVersion: %v", rvs)
	}
	if fmt.Sprint(remaining) != "[4 2]" {
		t.Fatalf("remainingItemCount of the pages with more: %v, want [4 2]", remaining)
	}

	// No limit: everything at once, no token.
	if p := getPage(t, base); len(p.Items) != 8 || p.Metadata.Continue != "" {
		t.Fatalf("a list without limit: %d items, continue %q", len(p.Items), p.Metadata.Continue)
	}
	// A namespaced list pages too, with a label selector.
	if p := getPage(t, hs.URL+"/apis/apps/v1/namespaces/b/deployments?limit=2"); len(p.Items) != 2 || p.Metadata.Continue == "" {
		t.Fatalf("namespaced page: %+v", p)
	}

	// Bad input: a clear 400; a token of another peer: 410 so clients relist.
	for _, c := range []struct {
		q    string
		code int
		msg  string
	}{
		{"limit=-1", 400, "limit"},
		{"limit=ten", 400, "limit"},
		{"continue=@@not-a-token", 400, "continue"},
		{"continue=" + base64.RawURLEncoding.EncodeToString([]byte(`{"v":"meta.k8s.io/v1","rv":1000999,"start":"a x1"}`)), 410, "another peer"},
	} {
		code, body := do(t, "GET", base+"?"+c.q, "", "")
		if code != c.code || !strings.Contains(body, c.msg) {
			t.Errorf("?%s: %d %s, want %d mentioning %q", c.q, code, body, c.code, c.msg)
		}
	}
}

func TestListPagesAsTable(t *testing.T) {
	b := newMem()
	for i := range 5 {
		b.put("Deployment", deploymentIn("default", fmt.Sprintf("d%d", i)))
	}
	_, hs := start(t, b, "p1")
	req := hs.URL + "/apis/apps/v1/namespaces/default/deployments?limit=2"
	code, body := doHeaders(t, "GET", req, "", map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var tbl struct {
		Metadata struct{ Continue string }
		Rows     []struct{ Cells []any }
	}
	if err := json.Unmarshal([]byte(body), &tbl); err != nil {
		t.Fatal(err)
	}
	if len(tbl.Rows) != 2 || tbl.Metadata.Continue == "" || tbl.Rows[0].Cells[0] != "d0" {
		t.Fatalf("first table page: %s", body)
	}
}
