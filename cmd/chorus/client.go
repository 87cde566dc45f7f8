package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chorus-sh/chorus/api"
)

// statusError is a non-2xx answer of the agent: its Status.
type statusError struct{ metav1.Status }

func (e *statusError) Error() string {
	if e.Reason == "" {
		return "Error from server: " + e.Message
	}
	return fmt.Sprintf("Error from server (%s): %s", e.Reason, e.Message)
}

// connError is a failure to talk to the agent at all.
type connError struct {
	server string
	err    error
}

func (e *connError) Error() string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(e.err, &ua):
		return fmt.Sprintf("cannot trust chorus agent at %s: %v (give its cluster's CA: --kubeconfig <data-dir>/kubeconfig of one of its peers, KUBECONFIG, or --certificate-authority)", e.server, e.err)
	case errors.As(e.err, &hn):
		return fmt.Sprintf("cannot trust chorus agent at %s: %v (use an address the peer listens on, as its kubeconfig does)", e.server, e.err)
	case strings.Contains(e.err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Sprintf("chorus agent at %s speaks plain HTTP (an --insecure peer?): use -s http://%s", e.server, strings.TrimPrefix(e.server, "https://"))
	}
	return fmt.Sprintf("cannot reach chorus agent at %s: %v (is 'chorus agent' running? set -s or CHORUS_SERVER)", e.server, e.err)
}

func (e *connError) Unwrap() error { return e.err }

// client talks to one agent's HTTP API.
type client struct {
	server string // as the user gave it, for messages
	token  string // bearer token of the API; "" sends none
	base   url.URL
	tls    *tls.Config // for https; nil: the system's roots
	hc     *http.Client
	log    *slog.Logger
}

// newClient returns a client of the agent at server ("host:port", which
// means HTTPS, or a URL) that verifies it with tc (nil: the system's
// roots) and sends token as a bearer token, when not "".
func newClient(server, token string, tc *tls.Config, log *slog.Logger) (*client, error) {
	raw := server
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid server address %q: want host:port or an https:// (or http://) URL", server)
	}
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tc = tc.Clone()
	tc.NextProtos = []string{"http/1.1"} // exec and port-forward upgrade the connection
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSClientConfig = tc
	tr.ForceAttemptHTTP2 = false
	return &client{
		server: server,
		token:  token,
		base:   url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")},
		tls:    tc,
		hc:     &http.Client{Transport: tr},
		log:    log,
	}, nil
}

// request is one call of the API.
type request struct {
	method      string
	path        string
	query       url.Values
	body        io.Reader
	contentType string
	// contentLength is the body's size when known; 0 with a non-nil body
	// means unknown (sent chunked).
	contentLength int64
}

// do sends r and returns the response of a 2xx answer; any other answer is
// returned as a *statusError and a transport failure as a *connError.
// The caller closes the body.
func (c *client) do(ctx context.Context, r request) (*http.Response, error) {
	u := c.base
	u.Path = c.base.Path + r.path
	if len(r.query) > 0 {
		u.RawQuery = r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		return nil, err
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.contentLength > 0 {
		req.ContentLength = r.contentLength
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "chorus/"+version)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.log.Debug("request failed", "method", r.method, "url", u.String(), "err", err)
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &connError{server: c.server, err: err}
	}
	c.log.Debug("request", "method", r.method, "url", u.String(), "status", resp.StatusCode, "took", time.Since(start).Round(time.Millisecond))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusFromResponse(resp)
}

// statusFromResponse reads a non-2xx answer into a *statusError.
func statusFromResponse(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st metav1.Status
	if json.Unmarshal(body, &st) != nil || (st.Message == "" && st.Reason == "") {
		st = metav1.Status{Message: strings.TrimSpace(string(body))}
		if st.Message == "" {
			st.Message = http.StatusText(resp.StatusCode)
		}
	}
	if st.Code == 0 {
		st.Code = int32(resp.StatusCode)
	}
	if st.Reason == "" {
		st.Reason = metav1.StatusReason(reasonForCode(resp.StatusCode))
	}
	return &statusError{st}
}

// reasonForCode names an HTTP status the way Kubernetes' StatusReason does.
func reasonForCode(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "Unauthorized"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case http.StatusUnprocessableEntity:
		return "Invalid"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case http.StatusRequestEntityTooLarge:
		return "RequestEntityTooLarge"
	}
	if code >= 500 {
		return "InternalError"
	}
	return ""
}

// getJSON GETs path and decodes the JSON answer into out.
func (c *client) getJSON(ctx context.Context, path string, query url.Values, out any) error {
	return c.call(ctx, request{method: http.MethodGet, path: path, query: query}, out)
}

// sendJSON sends in as a JSON body and decodes the answer into out.
func (c *client) sendJSON(ctx context.Context, method, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.call(ctx, request{method: method, path: path, body: bytes.NewReader(b),
		contentType: "application/json", contentLength: int64(len(b))}, out)
}

// call sends r and decodes a JSON answer into out (when out is non-nil).
func (c *client) call(ctx context.Context, r request, out any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cannot decode the answer of %s %s: %v", r.method, r.path, err)
	}
	return nil
}

// servingPeer returns the peer the client talks to, as it describes
// itself (chorus.sh/v1 Peer, its figures included).
func (c *client) servingPeer(ctx context.Context) (api.Peer, error) {
	var l api.PeerList
	q := url.Values{"fieldSelector": {"status.serving=true"}}
	if err := c.getJSON(ctx, api.PathChorusV1+"/peers", q, &l); err != nil {
		return api.Peer{}, err
	}
	if len(l.Items) != 1 || l.Items[0].Name == "" {
		return api.Peer{}, fmt.Errorf("%s answered, but not as a chorus agent (no peer describes itself)", c.server)
	}
	return l.Items[0], nil
}
