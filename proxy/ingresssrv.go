package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// The Ingress server: every peer serves the cluster's Ingresses on
// Config.IngressHTTPAddr and Config.IngressHTTPSAddr. A request is routed
// by [Route] to a service port, then proxied (net/http/httputil's
// ReverseProxy) over a connection from [Proxy.Dial]: the same balancing
// over Ready endpoints cluster-wide, retries and hops to other peers as
// service traffic. Answers: 404 when no rule matches and there is no
// default backend, 503 when the backend service (or its port) does not
// exist or has no Ready endpoint, 502 when every endpoint failed. Each
// listener serves at most Config.MaxConns connections at once (beyond, new
// ones wait in the kernel's backlog); a request's headers must arrive
// within 10 s and an idle connection is closed after 90 s.

// ingressState is what UpdateIngress publishes.
type ingressState struct {
	table *IngressTable
	certs []ingressCert
}

type ingressCert struct {
	hosts []string
	cert  *tls.Certificate
}

// ingressServer holds the two listeners and their http.Servers.
type ingressServer struct {
	http, https *http.Server
	lnHTTP      net.Listener
	lnHTTPS     net.Listener
	transport   *http.Transport
	buffers     bufferPool // the reverse proxy's copy buffers
}

// bufferPool reuses the reverse proxy's 32 KiB copy buffers (without it
// each request allocates and clears one: 10% of the Ingress path's CPU).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// UpdateIngress makes the Ingress server route by t. Certificates that do
// not parse are left out and their error returned (joined); the rest is
// served.
func (p *Proxy) UpdateIngress(t IngressTable) error {
	st := &ingressState{table: &t}
	var errs []error
	for _, c := range t.Certs {
		kp, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate for %s: %w", strings.Join(c.Hosts, ","), err))
			continue
		}
		var hosts []string
		for _, h := range c.Hosts {
			hosts = append(hosts, strings.ToLower(h))
		}
		st.certs = append(st.certs, ingressCert{hosts: hosts, cert: &kp})
	}
	p.ingress.Store(st)
	return errors.Join(errs...)
}

// certificate picks the certificate for a TLS client by its SNI name: one
// listing the name, then one whose wildcard matches it, then one for any
// host, then the first.
func (p *Proxy) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := p.ingress.Load()
	if st == nil || len(st.certs) == 0 {
		return nil, errors.New("no Ingress has a TLS certificate")
	}
	name := normalizeHost(hello.ServerName)
	for pass := 0; pass < 3; pass++ {
		for _, c := range st.certs {
			if pass == 2 && len(c.hosts) == 0 {
				return c.cert, nil
			}
			for _, h := range c.hosts {
				if (pass == 0 && h == name) || (pass == 1 && WildcardMatches(h, name)) {
					return c.cert, nil
				}
			}
		}
	}
	return st.certs[0].cert, nil
}

// startIngress opens the Ingress listeners; the caller holds p.mu.
func (p *Proxy) startIngress() error {
	if p.cfg.IngressHTTPAddr == "" && p.cfg.IngressHTTPSAddr == "" {
		return nil
	}
	s := &ingressServer{transport: &http.Transport{
		DialContext:           p.dialIngressBackend,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0,
		ExpectContinueTimeout: time.Second,
	}}
	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)
	newServer := func() *http.Server {
		return &http.Server{Handler: http.HandlerFunc(p.serveIngress), ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 90 * time.Second, ErrorLog: errLog,
			BaseContext: func(net.Listener) context.Context { return p.ctx }}
	}
	if a := p.cfg.IngressHTTPAddr; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("proxy: ingress HTTP listener: %w", err)
		}
		s.lnHTTP, s.http = netutil.LimitListener(ln, p.maxConns), newServer()
	}
	if a := p.cfg.IngressHTTPSAddr; a != "" {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			if s.lnHTTP != nil {
				s.lnHTTP.Close()
			}
			return fmt.Errorf("proxy: ingress HTTPS listener: %w", err)
		}
		s.https = newServer()
		s.https.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: p.certificate, NextProtos: []string{"http/1.1"}}
		s.lnHTTPS = tls.NewListener(netutil.LimitListener(ln, p.maxConns), s.https.TLSConfig)
	}
	p.ingressSrv = s
	for _, x := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{s.http, s.lnHTTP}, {s.https, s.lnHTTPS}} {
		if x.srv == nil {
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			_ = x.srv.Serve(x.ln)
		}()
	}
	return nil
}

// closeIngress closes the Ingress servers and their connections.
func (p *Proxy) closeIngress() {
	s := p.ingressSrv
	if s == nil {
		return
	}
	for _, srv := range []*http.Server{s.http, s.https} {
		if srv != nil {
			srv.Close()
		}
	}
	s.transport.CloseIdleConnections()
}

// ingressHostSuffix marks the URL host of a backend: "<service>.<namespace>.chorus-backend:<port>".
const ingressHostSuffix = ".chorus-backend"

func (p *Proxy) serveIngress(w http.ResponseWriter, r *http.Request) {
	st := p.ingress.Load()
	var t *IngressTable
	if st != nil {
		t = st.table
	}
	b, ok := Route(t, r.Host, r.URL.Path)
	switch {
	case !ok:
		p.stats.ingressNotFound.Add(1)
		http.Error(w, "404 not found: no Ingress rule matches "+r.Host+r.URL.Path, http.StatusNotFound)
		return
	case b.Port == 0 || !p.hasEndpoints(b.Namespace, b.Service, b.Port):
		p.stats.ingressUnavailable.Add(1)
		http.Error(w, fmt.Sprintf("503 service unavailable: %s/%s port %d has no Ready endpoint", b.Namespace, b.Service, b.Port),
			http.StatusServiceUnavailable)
		return
	}
	p.stats.ingressRequests.Add(1)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = b.Service + "." + b.Namespace + ingressHostSuffix + ":" + strconv.Itoa(b.Port)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport:  p.ingressSrv.transport,
		BufferPool: &p.ingressSrv.buffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := http.StatusBadGateway
			if errors.Is(err, ErrNoEndpoints) || errors.Is(err, ErrUnknownService) {
				code = http.StatusServiceUnavailable
			}
			p.log.Debug("ingress backend failed", "backend", b.Namespace+"/"+b.Service, "port", b.Port, "err", err)
			http.Error(w, http.StatusText(code)+": "+err.Error(), code)
		},
	}
	rp.ServeHTTP(w, r)
}

// dialIngressBackend dials the service port named by an ingress URL host.
func (p *Proxy) dialIngressBackend(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("proxy: ingress backend %q: %w", addr, err)
	}
	svc, ns, ok := strings.Cut(strings.TrimSuffix(host, ingressHostSuffix), ".")
	if !ok {
		return nil, fmt.Errorf("proxy: ingress backend %q: not a service", addr)
	}
	return p.Dial(ctx, ns, svc, n)
}

// hasEndpoints reports whether a TCP service port has a Ready endpoint.
func (p *Proxy) hasEndpoints(ns, svc string, port int) bool {
	pl := p.table.Load().pools[poolKey{ns, svc, port, TCP}]
	return pl != nil && !pl.empty()
}

// IngressAddrs returns the addresses the Ingress server listens on ("" for
// one it does not serve), once started.
func (p *Proxy) IngressAddrs() (httpAddr, httpsAddr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.ingressSrv; s != nil {
		if s.lnHTTP != nil {
			httpAddr = s.lnHTTP.Addr().String()
		}
		if s.lnHTTPS != nil {
			httpsAddr = s.lnHTTPS.Addr().String()
		}
	}
	return httpAddr, httpsAddr
}
