package agent

import (
	_ "embed"
	"net/http"
)

// dashboardHTML is the web dashboard: one page, no external resources,
// that reads this peer's JSON API from the same origin.
//
//go:embed dashboard/index.html
var dashboardHTML string

// dashboardCSP lets the page run its own inline script and style and talk
// to this peer only.
const dashboardCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// handleDashboard serves the read-only web dashboard at / and /dashboard/.
func (a *Agent) handleDashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/dashboard/" {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", dashboardCSP)
	_, _ = w.Write([]byte(dashboardHTML))
}
