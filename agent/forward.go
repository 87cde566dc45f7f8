package agent

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
)

// headerForwarded marks a request one peer passed to another, so that it is
// never passed on again (two peers that disagree for a moment about where a
// pod runs must not bounce a request between them).
const headerForwarded = "X-Chorus-Forwarded-By"

// forwardToPod passes a request about a pod this peer does not run to the
// peer that runs it, and streams the answer back (logs -f included). It
// reports false, having written nothing, when no other alive peer runs the
// pod or the request was already forwarded once.
func (a *Agent) forwardToPod(w http.ResponseWriter, r *http.Request, ns, name string) bool {
	if r.Header.Get(headerForwarded) != "" || a.gossip == nil {
		return false
	}
	owner := ""
	for _, p := range a.clusterPods() {
		if p.Metadata.Namespace == ns && p.Metadata.Name == name && p.Spec.NodeName != a.cfg.Name {
			owner = p.Spec.NodeName
			if podReady(&p) {
				break
			}
		}
	}
	if owner == "" {
		return false
	}
	addr := ""
	for _, m := range a.gossip.Members() {
		if m.Name == owner && m.Status == "Alive" {
			addr = m.Tags[tagAPI]
		}
	}
	if addr == "" {
		return false
	}
	target := &url.URL{Scheme: "http", Host: addr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Set(headerForwarded, a.cfg.Name)
		},
		FlushInterval: -1, // stream: logs -f
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable",
				fmt.Sprintf("pod %s/%s runs on peer %s, which did not answer: %v", ns, name, owner, err))
		},
	}
	rp.ServeHTTP(w, r)
	return true
}
