package agent

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"

	"github.com/chorus-sh/chorus/trust"
)

// Answers of the API to a request without the right token.
const (
	msgNoToken      = "this peer requires an API token (chorus --kubeconfig <data-dir>/kubeconfig, --token or CHORUS_TOKEN)"
	msgTokenRefused = "this peer requires an API token and refused the one given (chorus --kubeconfig <data-dir>/kubeconfig, --token or CHORUS_TOKEN)"
)

// authExempt reports whether r is one of the few requests served without
// the API token: the health check and the dashboard's static page, which
// holds no data (the page reads the API with the token of its URL
// fragment). Nothing else is exempt: /metrics and every API path need
// the token. A path the mux would clean or unescape first is not exempt.
func authExempt(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || r.URL.RawPath != "" {
		return false
	}
	switch r.URL.Path {
	case "/healthz", "/", "/dashboard/":
		return true
	}
	return false
}

// requireToken serves h only to requests that carry "Authorization: Bearer
// <token>", that come from another peer (a TLS client certificate the
// cluster CA issued to a peer, verified by the server's TLS configuration),
// or that authExempt lets through, and answers the others 401 with a
// Status and a WWW-Authenticate challenge. An empty token leaves h open to
// everyone.
func requireToken(token string, log *slog.Logger, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return requireTokens(func() []string { return []string{token} }, log, h)
}

// requireTokens is requireToken for the tokens accepted at the time of
// each request (two while the cluster secret is rotated).
func requireTokens(tokens func() []string, log *slog.Logger, h http.Handler) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if authExempt(r) {
			h.ServeHTTP(w, r)
			return
		}
		if _, ok := trust.PeerName(r.TLS); ok {
			h.ServeHTTP(w, r)
			return
		}
		msg := msgNoToken
		if got, ok := bearerToken(r.Header.Get("Authorization")); ok {
			// Comparing digests takes the same time whatever the length
			// of the token given, and subtle.ConstantTimeCompare the same
			// whatever its bytes.
			sum := sha256.Sum256([]byte(got))
			match := 0
			for _, t := range tokens() {
				want := sha256.Sum256([]byte(t))
				match |= subtle.ConstantTimeCompare(sum[:], want[:])
			}
			if match == 1 {
				h.ServeHTTP(w, r)
				return
			}
			msg = msgTokenRefused
		} else if r.Header.Get("Authorization") != "" {
			msg = msgTokenRefused
		}
		log.Debug("API request refused: no valid token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="chorus"`)
		writeStatus(w, http.StatusUnauthorized, "Unauthorized", msg)
	})
}

// withToken is requireToken with the tokens this peer accepts now: the
// cluster secret's (two during a rotation), or the configured one.
func (a *Agent) withToken(h http.Handler) http.Handler {
	if len(a.trust.apiTokens()) > 0 {
		return requireTokens(a.trust.apiTokens, a.log, h)
	}
	return requireToken(a.cfg.APIToken, a.log, h)
}

// bearerToken returns the token of an Authorization header value of the
// Bearer scheme (its name is case-insensitive, RFC 7235).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}
