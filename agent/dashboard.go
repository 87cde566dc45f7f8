package agent

import "net/http"

// TODO(dashboard helper): replace this placeholder.
func (a *Agent) handleDashboard(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusNotImplemented, "NotImplemented", "the dashboard is not built yet")
}

// TODO(dashboard helper): replace this placeholder.
func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusNotImplemented, "NotImplemented", "metrics are not built yet")
}
