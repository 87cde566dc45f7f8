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
)

// apiStatus is the agent's error body, shaped like Kubernetes' Status.
type apiStatus struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	Status     string `json:"status,omitempty"`
	Message    string `json:"message,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Code       int    `json:"code,omitempty"`
}

// statusError is a non-2xx answer of the agent.
type statusError struct{ apiStatus }

func (e *statusError) Error() string {
	if e.Reason == "" {
		return "Error from server: " + e.Message
	}
	return fmt.Sprintf("Error from server (%s): %s", e.Reason, e.Message)
}

// isNotFound reports whether err is the agent's NotFound.
func isNotFound(err error) bool {
	var se *statusError
	return errors.As(err, &se) && (se.Reason == "NotFound" || se.Code == http.StatusNotFound)
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

// serverVersion is the agent's answer to GET /chorus/v1/version.
type serverVersion struct {
	Version string `json:"version"`
	Node    string `json:"node,omitempty"`
}

// applyResult is one object of an apply, delete or scale answer.
type applyResult struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    string `json:"action"`
}

// applyResponse is the answer of apply, delete, create and scale.
type applyResponse struct {
	Results  []applyResult `json:"results"`
	Warnings []string      `json:"warnings,omitempty"`
}

// listResponse is a List of raw objects.
type listResponse struct {
	APIVersion string            `json:"apiVersion,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Items      []json.RawMessage `json:"items"`
}

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

// apiPath joins path segments under /chorus/v1.
func apiPath(segments ...string) string {
	return "/chorus/v1/" + strings.Join(segments, "/")
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
	// upgrade, when set, asks the agent to switch the connection to this
	// protocol (see client.upgrade).
	upgrade string
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
	if r.upgrade != "" {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", r.upgrade)
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
	if resp.StatusCode >= 200 && resp.StatusCode < 300 || r.upgrade != "" && resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, statusFromResponse(resp)
}

// upgrade sends r asking the agent to switch the connection to protocol,
// and returns the connection once it has: the caller closes it (the
// request's context no longer governs it). Errors are do's; an answer that
// is not a switch of protocols is an error too.
func (c *client) upgrade(ctx context.Context, r request, protocol string) (io.ReadWriteCloser, error) {
	r.upgrade = protocol
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !ok || !strings.EqualFold(resp.Header.Get("Upgrade"), protocol) {
		resp.Body.Close()
		return nil, fmt.Errorf("the agent at %s answered %s to %s %s, not a switch to protocol %s", c.server, resp.Status, r.method, r.path, protocol)
	}
	return rwc, nil
}

// statusFromResponse reads a non-2xx answer into a *statusError.
func statusFromResponse(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st apiStatus
	if json.Unmarshal(body, &st) != nil || (st.Message == "" && st.Reason == "") {
		st = apiStatus{Message: strings.TrimSpace(string(body))}
		if st.Message == "" {
			st.Message = http.StatusText(resp.StatusCode)
		}
	}
	if st.Code == 0 {
		st.Code = resp.StatusCode
	}
	if st.Reason == "" {
		st.Reason = reasonForCode(resp.StatusCode)
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

// list GETs a List.
func (c *client) list(ctx context.Context, path string, query url.Values) ([]json.RawMessage, error) {
	var l listResponse
	if err := c.getJSON(ctx, path, query, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// postManifest sends manifest bytes to the apply or delete endpoint, with
// the query parameters of extra (such as create=true) besides source.
func (c *client) postManifest(ctx context.Context, path string, extra url.Values, source string, data []byte) (*applyResponse, error) {
	var out applyResponse
	q := url.Values{}
	for k, v := range extra {
		q[k] = v
	}
	if source != "" {
		q.Set("source", source)
	}
	err := c.call(ctx, request{
		method:        http.MethodPost,
		path:          path,
		query:         q,
		body:          bytes.NewReader(data),
		contentType:   manifestContentType(data),
		contentLength: int64(len(data)),
	}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// manifestContentType guesses whether manifest bytes are JSON or YAML.
func manifestContentType(data []byte) string {
	t := bytes.TrimSpace(data)
	if len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return "application/json"
	}
	return "application/yaml"
}
