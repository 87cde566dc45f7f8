package stream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// ServePortForward serves kubectl port-forward for the pod namespace/name.
// Over SPDY (and tunnelled SPDY) the client names the ports on each stream;
// over the v4.channel.k8s.io WebSocket the ports are the query's (ports,
// repeated).
func (s *Server) ServePortForward(w http.ResponseWriter, r *http.Request, namespace, pod string) {
	if s.PortForwarder == nil {
		notImplemented(w, "pods/portforward")
		return
	}
	pf := forwarder{pf: s.PortForwarder, namespace: namespace, s: s}
	switch {
	case wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		s.serveTunnel(w, r, pf, pod)
		return
	case wsstream.IsWebSocketRequest(r):
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			badRequest(w, fmt.Errorf("query parameter ports: %w", err))
			return
		}
		portforward.ServePortForward(w, r, pf, pod, "", opts, s.idleTimeout(), s.streamCreationTimeout(), portforward.SupportedProtocols)
		return
	}
	portforward.ServePortForward(w, r, pf, pod, "", nil, s.idleTimeout(), s.streamCreationTimeout(), portforward.SupportedProtocols)
}

// forwarder is the kubelet server's PortForwarder for one pod.
type forwarder struct {
	pf        PortForwarder
	namespace string
	s         *Server
}

func (f forwarder) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	err := f.pf.PortForward(ctx, f.namespace, pod, port, stream)
	if err != nil {
		f.s.logger().Info("stream: port-forward failed", "pod", f.namespace+"/"+pod, "port", port, "err", err)
		// The kubelet's handler resets the SPDY data stream right after an
		// error, and may do so before the stream's reply went out: the
		// client then fails to create the stream ("Stream reset"), never
		// reads the error, and kubectl keeps forwarding. Replying first
		// (the later reply is a no-op) lets the client see the error.
		if r, ok := stream.(replier); ok {
			_ = r.SendReply(http.Header{}, false)
		}
	}
	return err
}

// replier is a SPDY stream accepted from the client (spdystream.Stream).
type replier interface {
	SendReply(headers http.Header, fin bool) error
}

// serveTunnel serves port-forward as SPDY carried in a WebSocket's binary
// messages (subprotocol SPDY/3.1+portforward.k8s.io): the SPDY server sees a
// request that asked for SPDY/3.1 and a connection that is the WebSocket.
func (s *Server) serveTunnel(w http.ResponseWriter, r *http.Request, pf forwarder, pod string) {
	var offered []string
	for _, p := range websocket.Subprotocols(r) {
		if inner, ok := strings.CutPrefix(p, portforward.WebsocketsSPDYTunnelingPrefix); ok && inner == portforward.ProtocolV1Name {
			offered = append(offered, p)
		}
	}
	if len(offered) == 0 {
		badRequest(w, fmt.Errorf("header %s: none of %v is supported; supported: %s", "Sec-WebSocket-Protocol",
			websocket.Subprotocols(r), portforward.WebsocketsSPDYTunnelingPortForwardV1))
		return
	}
	inner := r.Clone(r.Context())
	inner.Header.Set(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	inner.Header.Set(httpstream.HeaderUpgrade, "SPDY/3.1")
	inner.Header.Set(httpstream.HeaderProtocolVersion, portforward.ProtocolV1Name)
	tw := &tunnelWriter{w: w, r: r, header: http.Header{}, upgrader: websocket.Upgrader{
		Subprotocols: []string{portforward.WebsocketsSPDYTunnelingPortForwardV1},
		// The caller authenticates the request (a bearer token, not a
		// cookie), so the browser's origin check protects nothing here.
		CheckOrigin: func(*http.Request) bool { return true },
	}}
	portforward.ServePortForward(tw, inner, pf, pod, "", nil, s.idleTimeout(), s.streamCreationTimeout(), portforward.SupportedProtocols)
	tw.close()
}

// tunnelWriter is the ResponseWriter the SPDY server writes to: its 101
// Switching Protocols upgrades the request to a WebSocket, its hijack
// returns that WebSocket as a net.Conn, and any other answer goes out as
// the HTTP response it is.
type tunnelWriter struct {
	w        http.ResponseWriter
	r        *http.Request
	header   http.Header
	upgrader websocket.Upgrader

	ws       *websocket.Conn
	upgraded bool
	err      error
}

func (t *tunnelWriter) Header() http.Header { return t.header }

func (t *tunnelWriter) WriteHeader(code int) {
	if t.upgraded {
		return
	}
	if code != http.StatusSwitchingProtocols {
		for k, v := range t.header {
			t.w.Header()[k] = v
		}
		t.w.WriteHeader(code)
		return
	}
	t.upgraded = true
	// The SPDY server's own headers (Upgrade: SPDY/3.1) are not the
	// WebSocket's: the upgrader writes its own.
	t.ws, t.err = t.upgrader.Upgrade(t.w, t.r, nil)
}

func (t *tunnelWriter) Write(p []byte) (int, error) {
	if t.upgraded {
		return 0, errors.New("write to a response upgraded to a websocket")
	}
	return t.w.Write(p)
}

func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if t.ws == nil {
		if t.err != nil {
			return nil, nil, fmt.Errorf("upgrade to websocket: %w", t.err)
		}
		return nil, nil, errors.New("hijack before the upgrade")
	}
	c := &wsConn{ws: t.ws}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

func (t *tunnelWriter) close() {
	if t.ws != nil {
		_ = t.ws.Close()
	}
}

// wsConn is a WebSocket as a net.Conn: the bytes written go out as binary
// messages, and reading reads the binary messages received one after the
// other.
type wsConn struct {
	ws *websocket.Conn

	rmu sync.Mutex
	cur io.Reader

	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, fmt.Errorf("websocket tunnel: message of type %d, want binary", typ)
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if err == io.EOF {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error {
	c.wmu.Lock()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	c.wmu.Unlock()
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
