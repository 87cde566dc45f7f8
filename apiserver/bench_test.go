package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// BenchmarkList1000Pods: a list of 1,000 pods as JSON and as kubectl's
// Table, through HTTP, from the cache.
func BenchmarkList1000Pods(b *testing.B) {
	m := newMem()
	for i := range 1000 {
		m.put("Pod", []byte(fmt.Sprintf(`{"metadata":{"name":"web-%d","namespace":"default","uid":"u%d","creationTimestamp":"2026-01-01T00:00:00Z","labels":{"app":"web"}},
"spec":{"nodeName":"n%d","containers":[{"name":"web","image":"example/web:1","ports":[{"containerPort":8080}]}]},
"status":{"phase":"Running","podIP":"10.88.1.%d","containerStatuses":[{"name":"web","ready":true,"restartCount":0,"state":{"running":{}}}]}}`, i, i, i%10, i%250)))
	}
	s, err := New(m, Options{Peer: "p"})
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	s.cache.sync(context.Background())
	for _, c := range []struct{ name, accept string }{{"json", "application/json"}, {"table", "application/json;as=Table;v=v1;g=meta.k8s.io"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				rec := &discard{h: http.Header{}}
				req, _ := http.NewRequest("GET", "/api/v1/namespaces/default/pods", nil)
				req.Header.Set("Accept", c.accept)
				mux.ServeHTTP(rec, req)
				if rec.code != 200 {
					b.Fatalf("list: %d", rec.code)
				}
			}
		})
	}
}

// discard is a ResponseWriter that counts and drops the body.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) Header() http.Header { return d.h }
func (d *discard) WriteHeader(c int)   { d.code = c }
func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	d.n += len(p)
	return len(p), nil
}

var _ io.Writer = (*discard)(nil)
