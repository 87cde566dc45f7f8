package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/runtime"
)

// Resource metrics: each peer samples its own containers and its machine
// (runtime.Sampler) and serves them as its PeerUsage object
// (/apis/chorus.sh/v1/peerusages, chorusapi.go); whoever needs
// the cluster's figures (the metrics API behind kubectl top, an autoscaler,
// the dashboard) asks every alive peer at that moment. Nothing is
// replicated, so an idle cluster exchanges nothing.

// usageTimeout bounds how long a cluster-wide metrics query waits for each
// other peer; the pods of a peer that does not answer are left out, as
// metrics-server leaves out pods it has no metrics for.
const usageTimeout = 2 * time.Second

// podMetricsOf groups the latest points of the containers' series into
// PodMetrics, one per pod of namespace ns ("" for all) with at least one
// measured container, labelled as pods says; sorted by namespace and name.
// A pod's timestamp and window are those of its newest container point.
func podMetricsOf(series []runtime.Series, pods []api.Pod, ns string) []api.PodMetrics {
	labels := map[string]map[string]string{}
	for i := range pods {
		labels[pods[i].Metadata.Namespace+"/"+pods[i].Metadata.Name] = pods[i].Metadata.Labels
	}
	byPod := map[string]*api.PodMetrics{}
	var keys []string
	for _, s := range series {
		p, ok := s.Latest()
		if !ok || (ns != "" && s.Namespace != ns) {
			continue
		}
		k := s.Namespace + "/" + s.Pod
		pm := byPod[k]
		if pm == nil {
			pm = &api.PodMetrics{Metadata: api.ObjectMeta{Namespace: s.Namespace, Name: s.Pod, Labels: labels[k]}}
			byPod[k] = pm
			keys = append(keys, k)
		}
		if p.Time.After(pm.Timestamp) {
			pm.Timestamp, pm.Window = p.Time, p.Window
		}
		pm.Containers = append(pm.Containers, api.ContainerMetrics{Name: s.Container, Usage: map[string]api.Quantity{
			api.ResourceCPU: api.CPUQuantity(p.NanoCores), api.ResourceMemory: api.MemoryQuantity(p.Memory)}})
	}
	sort.Strings(keys)
	out := make([]api.PodMetrics, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byPod[k])
	}
	return out
}

// nodeMetricsOf is the NodeMetrics of a peer from its node series, false
// before there is a point.
func nodeMetricsOf(name string, labels map[string]string, s runtime.Series) (api.NodeMetrics, bool) {
	p, ok := s.Latest()
	if !ok {
		return api.NodeMetrics{}, false
	}
	return api.NodeMetrics{Metadata: api.ObjectMeta{Name: name, Labels: labels}, Timestamp: p.Time, Window: p.Window,
		Usage: map[string]api.Quantity{api.ResourceCPU: api.CPUQuantity(p.NanoCores), api.ResourceMemory: api.MemoryQuantity(p.Memory)}}, true
}

// usageHistoryOf sums each pod's containers point by point (they are sampled
// together) and converts the node's points, for graphs.
func usageHistoryOf(series []runtime.Series, node runtime.Series, ns string) *api.UsageHistory {
	h := &api.UsageHistory{Pods: map[string][]api.UsagePoint{}}
	for _, p := range node.Points {
		h.Node = append(h.Node, graphPoint(p))
	}
	for _, s := range series {
		if ns != "" && s.Namespace != ns {
			continue
		}
		k := s.Namespace + "/" + s.Pod
		pts := h.Pods[k]
		at := map[int64]int{}
		for i, p := range pts {
			at[p.T] = i
		}
		for _, p := range s.Points {
			g := graphPoint(p)
			if i, ok := at[g.T]; ok {
				pts[i].CPU += g.CPU
				pts[i].Mem += g.Mem
			} else {
				pts = append(pts, g)
			}
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i].T < pts[j].T })
		h.Pods[k] = pts
	}
	return h
}

func graphPoint(p runtime.Point) api.UsagePoint {
	return api.UsagePoint{T: p.Time.Unix(), CPU: p.NanoCores / 1e6, Mem: p.Memory}
}

// usageQuery says what of a peer's metrics is asked.
type usageQuery struct {
	Namespace string // "" for all
	History   bool   // the points of the last minutes too
	NodeOnly  bool   // no pods
}

func (q usageQuery) values() url.Values {
	v := url.Values{}
	if q.Namespace != "" {
		v.Set("namespace", q.Namespace)
	}
	if q.History {
		v.Set("history", "true")
	}
	if q.NodeOnly {
		v.Set("nodeOnly", "true")
	}
	return v
}

func parseUsageQuery(v url.Values) usageQuery {
	return usageQuery{Namespace: v.Get("namespace"), History: v.Get("history") == "true", NodeOnly: v.Get("nodeOnly") == "true"}
}

// localUsage is this peer's metrics, as q asks.
func (a *Agent) localUsage(q usageQuery) api.PeerUsage {
	u := api.PeerUsage{TypeMeta: metav1.TypeMeta{APIVersion: api.APIVersionChorus, Kind: api.KindPeerUsage},
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.Name}, Pods: []api.PodMetrics{}}
	if a.sampler == nil {
		return u
	}
	nodeSeries := a.sampler.Node(!q.History)
	if nm, ok := nodeMetricsOf(a.cfg.Name, nodeLabels(node{Metadata: api.ObjectMeta{Name: a.cfg.Name, Labels: a.cfg.Labels}}), nodeSeries); ok {
		u.Node = &nm
	}
	if q.NodeOnly {
		if q.History {
			u.History = usageHistoryOf(nil, nodeSeries, "")
		}
		return u
	}
	series := a.sampler.Containers(!q.History)
	var pods []api.Pod
	if a.pods != nil {
		pods = a.pods.Pods()
	}
	u.Pods = podMetricsOf(series, pods, q.Namespace)
	if q.History {
		u.History = usageHistoryOf(series, nodeSeries, q.Namespace)
	}
	return u
}

// clusterUsage is this peer's usage and that of every other alive peer
// that answers within usageTimeout (its PeerUsage, asked with the same
// query), sorted by peer.
func (a *Agent) clusterUsage(ctx context.Context, q usageQuery) []api.PeerUsage {
	all := []api.PeerUsage{a.localUsage(q)}
	askPeersOwn(a, ctx, api.PathChorusV1+"/peerusages", q.values(), usageTimeout, func(_ string, u api.PeerUsage) {
		all = append(all, u)
	})
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	return all
}

// clusterPodMetrics returns the latest metrics of every pod in namespace ns
// ("" for all) across the alive peers: this peer's own, and those the other
// peers answer within usageTimeout (a peer that does not answer is left
// out). A pod reported by two peers (moving between them) is listed once,
// with the newer figures. Sorted by namespace and name.
func (a *Agent) clusterPodMetrics(ctx context.Context, ns string) ([]api.PodMetrics, error) {
	byKey := map[string]api.PodMetrics{}
	for _, u := range a.clusterUsage(ctx, usageQuery{Namespace: ns}) {
		for _, p := range u.Pods {
			k := p.Metadata.Namespace + "/" + p.Metadata.Name
			if old, ok := byKey[k]; !ok || old.Timestamp.Before(p.Timestamp) {
				byKey[k] = p
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]api.PodMetrics, 0, len(byKey))
	for _, p := range byKey {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Metadata.Namespace != out[j].Metadata.Namespace {
			return out[i].Metadata.Namespace < out[j].Metadata.Namespace
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out, nil
}

// clusterNodeMetrics returns the latest metrics of every alive peer that
// answers within usageTimeout, sorted by name.
func (a *Agent) clusterNodeMetrics(ctx context.Context) []api.NodeMetrics {
	var out []api.NodeMetrics
	for _, u := range a.clusterUsage(ctx, usageQuery{NodeOnly: true}) {
		if u.Node != nil {
			n := *u.Node
			n.Metadata.Name = u.Name
			out = append(out, n)
		}
	}
	return out
}

// askPeers sends GET path?q, as this peer, to every other alive peer at
// once, each bounded by timeout, and calls each (one call at a time) with
// the body (at most maxManifestBody bytes) of every 200 answer. A peer
// that fails or does not answer in time is logged and left out. It
// returns when every request has ended.
func (a *Agent) askPeers(ctx context.Context, path string, q url.Values, timeout time.Duration, each func(peer string, body []byte)) {
	if a.gossip == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range a.gossip.Members() {
		addr := m.Tags[tagAPI]
		if m.Name == a.cfg.Name || m.Status != gossip.StatusAlive || addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, err := a.askPeer(ctx, addr, path, q)
			if err != nil {
				a.log.Debug("ask a peer", "peer", m.Name, "path", path, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			each(m.Name, body)
		}()
	}
	wg.Wait()
}

// askPeer sends GET path?q to the peer whose API is at addr, as this peer,
// and returns the body of a 200 answer.
func (a *Agent) askPeer(ctx context.Context, addr, path string, q url.Values) ([]byte, error) {
	u := a.peerURL(addr)
	u.Path, u.RawQuery = path, q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.peerDo(ctx, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBody))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answer %s", resp.Status)
	}
	return body, nil
}
