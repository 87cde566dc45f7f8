package agent

import "net/http"

// TODO(exec helper): replace this placeholder.
func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	writeStatus(w, http.StatusNotImplemented, "NotImplemented", "exec is not built yet")
}
