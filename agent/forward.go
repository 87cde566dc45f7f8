package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"k8s.io/apimachinery/pkg/fields"
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
	pod := a.findClusterPod(ns, name, func(p *api.Pod) bool { return p.Spec.NodeName != a.cfg.Name })
	if pod == nil {
		return false
	}
	owner := pod.Spec.NodeName
	addr, ok := a.memberTag(owner, tagAPI)
	if !ok {
		return false
	}
	a.forwardTo(w, r, owner, addr, fmt.Sprintf("pod %s/%s runs on peer %s", ns, name, owner))
	return true
}

// forwardTo passes r to the peer owner whose API is at addr, as this peer
// (see asPeer: the user's credential stays here), and streams the answer
// back; what says why the request went there, for the error of a peer
// that does not answer.
func (a *Agent) forwardTo(w http.ResponseWriter, r *http.Request, owner, addr, what string) {
	target := a.peerURL(addr)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			a.asPeer(pr.Out.Header)
		},
		Transport:     a.peerTransport,
		FlushInterval: -1, // stream: logs -f
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, http.StatusBadGateway, "ServiceUnavailable",
				fmt.Sprintf("%s, which did not answer: %v", what, err))
		},
	}
	rp.ServeHTTP(w, r)
}

// findClusterPod returns the pod ns/name among the cluster's pods that keep
// passes, preferring a Ready copy (a pod moving between peers is listed
// twice), or nil.
func (a *Agent) findClusterPod(ns, name string, keep func(*api.Pod) bool) *api.Pod {
	var found *api.Pod
	for _, p := range a.clusterPods() {
		if p.Metadata.Namespace == ns && p.Metadata.Name == name && keep(&p) {
			found = &p
			if podReady(&p) {
				break
			}
		}
	}
	return found
}

// memberTag returns a tag of an alive member (its API or hop address).
func (a *Agent) memberTag(name, tag string) (string, bool) {
	for _, m := range a.gossip.Members() {
		if m.Name == name && m.Status == gossip.StatusAlive && m.Tags[tag] != "" {
			return m.Tags[tag], true
		}
	}
	return "", false
}

// eventsTimeout bounds how long a listing of events waits for each other
// peer.
const eventsTimeout = 2 * time.Second

// clusterEvents returns the events of the whole cluster about the objects
// selected (namespace, kind and name, each optional): this peer's own and,
// unless the request was itself forwarded, those every other alive peer
// answers within eventsTimeout (a peer that does not answer is left out).
// An event reported by several peers (each records FailedScheduling for a
// pending pod) counts once, with its latest time. Oldest first.
func (a *Agent) clusterEvents(r *http.Request, ns, kind, name string) []api.Event {
	all := a.events.list(ns, kind, name)
	if r.Header.Get(headerForwarded) == "" {
		path := "/api/v1/events"
		if ns != "" {
			path = "/api/v1/namespaces/" + url.PathEscape(ns) + "/events"
		}
		sel := fields.Set{}
		if kind != "" {
			sel["involvedObject.kind"] = kind
		}
		if name != "" {
			sel["involvedObject.name"] = name
		}
		q := url.Values{}
		if len(sel) > 0 {
			q.Set("fieldSelector", fields.SelectorFromSet(sel).String())
		}
		a.askPeers(r.Context(), path, q, eventsTimeout, func(peer string, body []byte) {
			var list struct {
				Items []api.Event `json:"items"`
			}
			if err := json.Unmarshal(body, &list); err != nil {
				a.log.Debug("events of a peer", "peer", peer, "err", err)
				return
			}
			all = append(all, list.Items...)
		})
	}
	return mergeEvents(all)
}

// mergeEvents folds events about the same object with the same reason and
// message into one (the latest, with the largest count) and sorts them
// oldest first.
func mergeEvents(evs []api.Event) []api.Event {
	type key struct {
		obj             api.ObjectReference
		reason, message string
	}
	idx := map[key]int{}
	var out []api.Event
	for _, e := range evs {
		if e.LastTimestamp == nil {
			continue
		}
		k := key{e.InvolvedObject, e.Reason, e.Message}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, e)
			continue
		}
		if out[i].LastTimestamp.Before(*e.LastTimestamp) {
			e.Count = max(e.Count, out[i].Count)
			out[i] = e
		} else {
			out[i].Count = max(e.Count, out[i].Count)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastTimestamp.Before(*out[j].LastTimestamp) })
	return out
}
