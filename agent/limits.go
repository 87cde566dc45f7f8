package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// Limits of the API server. No request, and no number of connections, may
// take a peer's memory or file descriptors: connections are capped (the
// oldest idle one makes room for a new one), requests in flight are capped
// (429 beyond), headers and bodies must arrive in bounded time, answers
// must be read in bounded time, and idle connections are closed.
type serverLimits struct {
	MaxConns          int           // open connections, idle or busy
	MaxInFlight       int           // ordinary requests served at once
	MaxStreams        int           // long requests at once: exec, port-forward, logs -f, watch, image loads
	QueueWait         time.Duration // how long a request waits for a slot before 429
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	BodyTimeout       time.Duration // a body (but an image) must arrive within this
	MinBodyRate       int64         // bytes/s an image load's body must average after BodyTimeout
	WriteTimeout      time.Duration // an ordinary answer must be read within this
}

// defaultLimits fit a peer with the 20,000 file descriptors a Debian
// service gets, leaving most for containerd, gossip and the proxy.
func defaultLimits() serverLimits {
	return serverLimits{
		MaxConns:          2048,
		MaxInFlight:       64,
		MaxStreams:        512,
		QueueWait:         2 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		BodyTimeout:       30 * time.Second,
		MinBodyRate:       64 << 10,
		WriteTimeout:      2 * time.Minute,
	}
}

// newAPIServer builds the API's http.Server and wraps ln in the
// connection limit.
func (a *Agent) newAPIServer(ctx context.Context, ln net.Listener, lim serverLimits) (*http.Server, net.Listener) {
	cl := newConnLimiter(lim.MaxConns, a.log)
	srv := &http.Server{
		Handler:           a.recoverer(a.limitRequests(lim, a.checkedRoutes())),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ConnState:         cl.connState,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	return srv, cl.wrap(ln)
}

// connLimiter caps the open connections of a listener. At the cap, a new
// connection closes the connection that has been idle (or has sent nothing
// yet) the longest; when every connection is busy, the new one is answered
// 503 and closed. So idle connections, however many are opened, never keep
// the API from answering.
type connLimiter struct {
	max int
	log *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]*connInfo
	shed  atomic.Int64 // connections closed to make room, or refused
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

func newConnLimiter(max int, log *slog.Logger) *connLimiter {
	return &connLimiter{max: max, log: log, conns: map[net.Conn]*connInfo{}}
}

func (l *connLimiter) wrap(ln net.Listener) net.Listener { return &limitedListener{Listener: ln, l: l} }

// connState follows the server's view of each connection.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ci, ok := l.conns[c]; ok {
		ci.state, ci.since = s, time.Now()
	}
}

func (l *connLimiter) remove(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// admit registers c, and returns the connection to close to make room for
// it (nil if none is needed); ok is false when none can be closed.
func (l *connLimiter) admit(c net.Conn) (victim net.Conn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var oldest time.Time
		for vc, ci := range l.conns {
			if (ci.state == http.StateIdle || ci.state == http.StateNew) && (victim == nil || ci.since.Before(oldest)) {
				victim, oldest = vc, ci.since
			}
		}
		if victim == nil {
			return nil, false
		}
		delete(l.conns, victim)
	}
	l.conns[c] = &connInfo{state: http.StateNew, since: time.Now()}
	return victim, true
}

type limitedListener struct {
	net.Listener
	l *connLimiter
}

// busyAnswer is what a connection gets when every slot is busy.
const busyAnswer = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: %d\r\n\r\n%s"

func (ll *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := trackConn(c, ll.l)
		victim, ok := ll.l.admit(tc)
		if !ok {
			ll.l.shed.Add(1)
			body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many connections to this peer","reason":"ServiceUnavailable","code":503}`
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = fmt.Fprintf(c, busyAnswer, len(body), body)
			c.Close()
			continue
		}
		if victim != nil {
			ll.l.shed.Add(1)
			victim.Close()
		}
		return tc, nil
	}
}

// trackConn wraps c so that closing it frees its slot. A TCP connection
// keeps its TCP methods (CloseWrite for half-closes, ReadFrom for
// sendfile and splice).
func trackConn(c net.Conn, l *connLimiter) net.Conn {
	if t, ok := c.(*net.TCPConn); ok {
		tc := &trackedTCPConn{TCPConn: t}
		tc.closeOnce = func() { l.remove(tc) }
		return tc
	}
	gc := &trackedConn{Conn: c}
	gc.closeOnce = func() { l.remove(gc) }
	return gc
}

type trackedTCPConn struct {
	*net.TCPConn
	once      sync.Once
	closeOnce func()
}

func (c *trackedTCPConn) Close() error {
	c.once.Do(c.closeOnce)
	return c.TCPConn.Close()
}

type trackedConn struct {
	net.Conn
	once      sync.Once
	closeOnce func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.closeOnce)
	return c.Conn.Close()
}

// streaming reports whether r is a long request: one that switches
// protocols (exec, port-forward), follows (logs -f), watches, or loads an
// image (a large body).
func streaming(r *http.Request) bool {
	if r.Header.Get("Upgrade") != "" {
		return true
	}
	q := r.URL.Query()
	if q.Get("follow") == "true" || q.Get("watch") == "true" || q.Get("watch") == "1" {
		return true
	}
	return isImageLoad(r)
}

// isImageLoad reports whether r loads an image archive (POST on the
// chorus.sh/v1 images collection): a large body.
func isImageLoad(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.TrimSuffix(r.URL.Path, "/") == api.PathChorusV1+"/images"
}

// limitRequests caps the requests in flight (two pools: ordinary and
// long), answering 429 with a Status when no slot frees within
// QueueWait, and bounds the time a body may take to arrive and an
// ordinary answer to be read. The health check is never refused.
func (a *Agent) limitRequests(lim serverLimits, h http.Handler) http.Handler {
	short := make(chan struct{}, lim.MaxInFlight)
	long := make(chan struct{}, lim.MaxStreams)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		isLong := streaming(r)
		sem := short
		if isLong {
			sem = long
		}
		select {
		case sem <- struct{}{}:
		default:
			t := time.NewTimer(lim.QueueWait)
			select {
			case sem <- struct{}{}:
				t.Stop()
			case <-t.C:
				w.Header().Set("Retry-After", "1")
				writeStatus(w, http.StatusTooManyRequests, "TooManyRequests",
					fmt.Sprintf("this peer is serving %d requests already; retry shortly", cap(sem)))
				return
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		defer func() { <-sem }()
		rc := http.NewResponseController(w)
		if isLong {
			// A deadline left by an earlier request on this connection
			// must not cut a stream.
			_ = rc.SetWriteDeadline(time.Time{})
		} else {
			_ = rc.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 && r.Header.Get("Upgrade") == "" {
			r.Body = newDeadlineBody(r.Body, rc, lim, isImageLoad(r))
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody makes a request body arrive in bounded time: within
// BodyTimeout, or for an image load BodyTimeout plus the time its bytes
// take at MinBodyRate (a trickle is cut, a large upload is not). Once the
// body has been read, the deadline is lifted, so that a long handler is
// not cancelled by it.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	lim   serverLimits
	start time.Time
	rated bool
	n     int64
	done  bool
}

func newDeadlineBody(b io.ReadCloser, rc *http.ResponseController, lim serverLimits, rated bool) *deadlineBody {
	d := &deadlineBody{ReadCloser: b, rc: rc, lim: lim, start: time.Now(), rated: rated}
	_ = rc.SetReadDeadline(d.start.Add(lim.BodyTimeout))
	return d
}

func (d *deadlineBody) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	d.n += int64(n)
	if d.rated && n > 0 && d.lim.MinBodyRate > 0 {
		_ = d.rc.SetReadDeadline(d.start.Add(d.lim.BodyTimeout + time.Duration(d.n/d.lim.MinBodyRate)*time.Second))
	}
	if errors.Is(err, io.EOF) && !d.done {
		d.done = true
		_ = d.rc.SetReadDeadline(time.Time{})
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("request body: not received in time (%d bytes in %s): %w", d.n, time.Since(d.start).Round(time.Second), err)
	}
	return n, err
}

// checkSameOrigin refuses what a web page of another site could make a
// browser send (the API has no cookie, but without a token any page could
// drive it, and DNS rebinding could make a page of another site read it):
//   - a Host that is not an address or a name of this peer (DNS
//     rebinding): IP literals, localhost, the peer's name, the machine's
//     host name and --api-host names are accepted;
//   - a state-changing request whose Origin is present and not this
//     peer's own origin;
//   - a POST a form or a no-cors fetch could send: one that neither
//     upgrades the connection (exec, port-forward) nor carries a
//     Content-Type other than the three a browser sends cross-site
//     without asking (text/plain, application/x-www-form-urlencoded,
//     multipart/form-data). Other methods (PUT, PATCH, DELETE) always
//     need the browser to ask first, which this API never allows.
//
// The chorus CLI and kubectl send application/json, application/yaml,
// application/*patch* and application/x-tar, and no Origin.
func (a *Agent) checkSameOrigin(h http.Handler) http.Handler {
	names := map[string]bool{"localhost": true, strings.ToLower(a.cfg.Name): true}
	if hn, err := os.Hostname(); err == nil {
		names[strings.ToLower(hn)] = true
	}
	for _, n := range a.cfg.APIHosts {
		names[strings.ToLower(n)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		if !hostAllowed(r.Host, names) {
			writeStatus(w, http.StatusForbidden, "Forbidden",
				fmt.Sprintf("host %q is not an address or a name of this peer (add it with --api-host if it is)", r.Host))
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			h.ServeHTTP(w, r)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
			writeStatus(w, http.StatusForbidden, "Forbidden", fmt.Sprintf("cross-site request refused: origin %q is not this peer", o))
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("Upgrade") == "" && browserSimpleType(r.Header.Get("Content-Type")) {
			writeStatus(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType",
				fmt.Sprintf("content type %q refused: send application/json or application/yaml (a web page of another site could send this one)", r.Header.Get("Content-Type")))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether a Host header names this peer.
func hostAllowed(hostport string, names map[string]bool) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return true
	}
	return names[host] || strings.HasSuffix(host, ".localhost")
}

// browserSimpleType reports whether a browser sends this Content-Type
// cross-site without a preflight (or sends none at all).
func browserSimpleType(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true // not understood: refused as well
	}
	switch mt {
	case "text/plain", "application/x-www-form-urlencoded", "multipart/form-data":
		return true
	}
	return false
}

// localPodIPs records the addresses of the pods this peer runs, the only
// targets hops from other peers may reach (allowHop).
func (a *Agent) localPodIPs(pods []api.Pod) {
	ips := make(map[netip.Addr]bool, len(pods))
	for i := range pods {
		if ip, err := netip.ParseAddr(pods[i].Status.PodIP); err == nil {
			ips[ip] = true
		}
	}
	a.podIPs.Store(&ips)
}
