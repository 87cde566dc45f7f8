package proxy

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkProxyThroughput compares sequential HTTP requests to a pod made
// directly, through the local peer's NodePort (local endpoint: one proxy
// hop in userspace), and through a remote peer's NodePort (its proxy, then
// the pod's peer's hop listener: two userspace relays), with a plain TCP
// hop ("hop", as --insecure) and with a mutual-TLS hop ("hoptls", as a
// protected cluster: a second pair of peers with certificates of one
// CA). "newconn" opens a
// connection per request (dial, and for the hop the hop handshake, are
// paid each time), "keepalive" reuses one connection, "bulk64k" downloads
// 64 KiB per request over one connection. Each target gets b.N requests,
// at most 20 s; the metrics are requests per second of each and the
// ratios to direct.
func BenchmarkProxyThroughput(b *testing.B) {
	pa := startPod(b, "pa", addr(21))
	hops := map[string]string{}
	pA := newPeer(b, "a", addr(2), hops, []string{pa.ip})
	pB := newPeer(b, "b", addr(3), hops, nil)
	ca := newTestCA(b)
	pAT := newPeer(b, "at", addr(4), hops, []string{pa.ip}, withHopTLS(b, ca, "at", addr(4)))
	pBT := newPeer(b, "bt", addr(5), hops, nil, withHopTLS(b, ca, "bt", addr(5)))
	np := freePort(b, false, addr(2), addr(3), addr(5))
	s := svc{ns: "default", name: "web", port: 80, nodePort: np, eps: []nodeEP{{"a", pa}}}
	update(pA, s)
	update(pB, s)
	st := svc{ns: "default", name: "web", port: 80, nodePort: np, eps: []nodeEP{{"at", pa}}}
	update(pAT, st)
	update(pBT, st)

	for _, mode := range []struct {
		name      string
		keepAlive bool
		path      string
		size      float64
	}{
		{"newconn", false, "/", 0},
		{"keepalive", true, "/", 0},
		{"bulk64k", true, "/big", 64 << 10},
	} {
		b.Run(mode.name, func(b *testing.B) {
			targets := []struct{ name, addr string }{
				{"direct", pa.addr()},
				{"nodeport", pA.nodePort(np)},
				{"hop", pB.nodePort(np)},
				{"hoptls", pBT.nodePort(np)},
			}
			rates := make([]float64, len(targets))
			for i, tg := range targets {
				tr := &http.Transport{DisableKeepAlives: !mode.keepAlive, MaxIdleConnsPerHost: 1}
				client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
				url := "http://" + tg.addr + mode.path
				start := time.Now()
				deadline := start.Add(20 * time.Second)
				n := 0
				for ; n < b.N && (n%64 != 0 || time.Now().Before(deadline)); n++ {
					resp, err := client.Get(url)
					if err != nil {
						b.Fatalf("%s: %v", tg.name, err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				rates[i] = float64(n) / time.Since(start).Seconds()
				tr.CloseIdleConnections()
			}
			for i, tg := range targets {
				b.ReportMetric(rates[i], tg.name+"-req/s")
				if mode.size > 0 {
					b.ReportMetric(rates[i]*mode.size/1e6, tg.name+"-MB/s")
				}
			}
			b.ReportMetric(rates[1]/rates[0], "nodeport/direct")
			b.ReportMetric(rates[2]/rates[0], "hop/direct")
			b.ReportMetric(rates[3]/rates[0], "hoptls/direct")
			b.ReportMetric(rates[3]/rates[2], "hoptls/hop")
		})
	}
}

// BenchmarkHopDial is the time to open one hop to a pod of another peer
// (DialEndpoint: connect, handshakes, the server's dial of the pod, the
// answer) and close it: over plain TCP, over mutual TLS resuming a
// session (as peers do after their first hop to each other), and over
// mutual TLS with a full handshake every time (no session cache). It is
// what the 1 s dial timeout must cover.
func BenchmarkHopDial(b *testing.B) {
	pa := startPod(b, "pa", addr(21))
	ca := newTestCA(b)
	hops := map[string]string{}
	newPeer(b, "a", addr(2), hops, []string{pa.ip})
	newPeer(b, "at", addr(4), hops, []string{pa.ip}, withHopTLS(b, ca, "at", addr(4)))
	plain := newPeer(b, "b", addr(3), hops, nil)
	resumed := newPeer(b, "bt", addr(5), hops, nil, withHopTLS(b, ca, "bt", addr(5)))
	full := newPeer(b, "bf", addr(6), hops, nil, withHopTLS(b, ca, "bf", addr(6)), func(c *Config) {
		c.HopClientTLS = c.HopClientTLS.Clone()
		c.HopClientTLS.ClientSessionCache = nil
	})
	for _, c := range []struct {
		name string
		p    *peer
		node string
	}{{"plain", plain, "a"}, {"tls-resumed", resumed, "at"}, {"tls-full", full, "at"}} {
		b.Run(c.name, func(b *testing.B) {
			ep := pa.ep(c.node, c.p.name)
			for b.Loop() {
				conn, err := c.p.DialEndpoint(context.Background(), ep)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
		})
	}
}

// BenchmarkUpdateUnchanged is the cost of an Update that changes nothing
// (100 services of 2 ports with 3 endpoints each).
func BenchmarkUpdateUnchanged(b *testing.B) {
	p := New(Config{NodeIP: addr(2)})
	defer p.Close()
	var svcs []Service
	for i := range 100 {
		var eps []Endpoint
		for j := range 3 {
			eps = append(eps, Endpoint{Node: "n", IP: addr(100 + j), Port: 8000 + i})
		}
		svcs = append(svcs, Service{Namespace: "ns", Name: "svc" + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Ports: []ServicePort{{Name: "http", Port: 80, Endpoints: eps}, {Name: "grpc", Port: 81, Endpoints: eps}}})
	}
	p.Update(svcs)
	b.ReportAllocs()
	for b.Loop() {
		p.Update(svcs)
	}
}

// BenchmarkIngress compares sequential kept-alive HTTP requests to a pod
// made directly and through the Ingress server of its peer (route, then
// a reverse proxy over the service pool: one HTTP parse and one relay in
// userspace), in the same run. Each gets b.N requests, at most 20 s.
func BenchmarkIngress(b *testing.B) {
	pa := startPod(b, "pa", addr(21))
	hops := map[string]string{}
	a, httpA, _ := ingressPeer(b, "a", addr(2), hops, []string{pa.ip})
	a.Update([]Service{{Namespace: "default", Name: "web", Ports: []ServicePort{{Port: 80, Endpoints: []Endpoint{pa.ep("a", "a")}}}}})
	if err := a.UpdateIngress(IngressTable{Rules: []IngressRule{{Paths: []IngressPath{{Path: "/", Type: PathPrefix,
		Backend: IngressBackend{"default", "web", 80}}}}}}); err != nil {
		b.Fatal(err)
	}
	targets := []struct{ name, url string }{{"direct", "http://" + pa.addr() + "/"}, {"ingress", "http://" + httpA + "/"}}
	rates := make([]float64, len(targets))
	for i, tg := range targets {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		start := time.Now()
		deadline := start.Add(20 * time.Second)
		n := 0
		for ; n < b.N && (n%64 != 0 || time.Now().Before(deadline)); n++ {
			resp, err := client.Get(tg.url)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s: %v %v", tg.name, err, resp)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		rates[i] = float64(n) / time.Since(start).Seconds()
		tr.CloseIdleConnections()
	}
	b.ReportMetric(rates[0], "direct-req/s")
	b.ReportMetric(rates[1], "ingress-req/s")
	b.ReportMetric(rates[1]/rates[0], "ingress/direct")
}
