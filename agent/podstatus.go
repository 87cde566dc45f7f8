package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
)

// Each peer publishes the pods it runs, with their statuses, in one object
// of the replicated state that only it writes: NodeStatus//<peer>, a field
// "spec.<namespace>_<pod>" per pod. So every peer can answer `get pods` for
// the whole cluster from its own replica, and knows which replicas are
// Ready where (rollouts and make-before-break moves depend on it).
const kindNodeStatus = "NodeStatus"

func nodeStatusKey(node string) string { return kindNodeStatus + "//" + node }

func podField(p *api.Pod) string {
	return "spec." + p.Metadata.Namespace + "_" + p.Metadata.Name
}

// statusLoop publishes changes of the local pods every interval.
func (a *Agent) statusLoop(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.publishPodStatus(); err != nil && ctx.Err() == nil {
			a.log.Warn("publish pod status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.statusKick:
		}
	}
}

// publishPodStatus writes the local pods that changed since the stored
// copy, and null for stored pods that no longer run here.
func (a *Agent) publishPodStatus() error {
	key := nodeStatusKey(a.cfg.Name)
	stored := a.store.RawFields(key)
	changes := map[string]json.RawMessage{}
	running := map[string]bool{}
	for _, p := range a.pods.Pods() {
		f := podField(&p)
		running[f] = true
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if !bytes.Equal(stored[f], b) {
			changes[f] = b
		}
	}
	for f := range stored {
		if strings.HasPrefix(f, "spec.") && !running[f] {
			changes[f] = json.RawMessage("null")
		}
	}
	if len(stored) == 0 && len(changes) == 0 {
		return nil
	}
	if len(stored) == 0 {
		changes["apiVersion"] = json.RawMessage(`"chorus.io/v1"`)
		changes["kind"] = json.RawMessage(`"` + kindNodeStatus + `"`)
	}
	return a.store.WriteFields(key, changes)
}

// clusterPods returns the pods of every alive peer as they published them,
// this peer's own from its pod manager (fresher), sorted by namespace,
// name and node: copies the caller may change.
func (a *Agent) clusterPods() []api.Pod { return a.podsOf(a.pods.Pods(), a.aliveMembers(), true) }

// clusterPodsWith is clusterPods with this peer's pods as given (local is
// not changed), and the other peers' pods shared with the cache: for
// readers that change nothing (a reconcile pass: reconcile.Plan changes
// none of its inputs), which would otherwise copy every pod of the
// cluster at every pass.
func (a *Agent) clusterPodsWith(local []api.Pod) []api.Pod {
	return a.podsOf(local, a.aliveMembers(), false)
}

// podsOf is local and the pods the given peers published, sorted; the
// latter copied when copies is set, else shared with the cache.
func (a *Agent) podsOf(local []api.Pod, peers []string, copies bool) []api.Pod {
	out := slices.Clone(local)
	for _, m := range peers {
		if m == a.cfg.Name {
			continue
		}
		pods := a.peerPods.pods(a.store, m)
		if !copies {
			out = append(out, pods...)
			continue
		}
		for _, p := range pods {
			out = append(out, api.Clone(p))
		}
	}
	// An order of indexes, by fields: building two keys at every
	// comparison, or moving whole pods at every swap, cost more than the
	// rest of this function (tests/scale).
	order := make([]int32, len(out))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(i, j int32) int {
		a, b := &out[i], &out[j]
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace),
			cmp.Compare(a.Metadata.Name, b.Metadata.Name), cmp.Compare(a.Spec.NodeName, b.Spec.NodeName))
	})
	sorted := make([]api.Pod, len(out))
	for i, j := range order {
		sorted[i] = out[j]
	}
	return sorted
}

func podKey(p *api.Pod) string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

// aliveMembers returns the names of the alive members, this peer included.
func (a *Agent) aliveMembers() []string {
	if a.gossip == nil {
		return []string{a.cfg.Name}
	}
	out := a.gossip.AliveNames()
	if !slices.Contains(out, a.cfg.Name) {
		out = append(out, a.cfg.Name)
	}
	return out
}

// peerPodsCache holds each peer's published pods decoded, with the
// checksum (Store.Sum) of the NodeStatus object they were decoded from:
// every reconcile pass and every read of the cluster's pods wants every
// peer's pods, and decoding them all each time cost O(pods in the cluster)
// of JSON per pass and peer (tests/scale). A peer's pods are decoded again
// only when its object changed; podsOf hands them out shared or copied.
type peerPodsCache struct {
	mu     sync.Mutex
	byPeer map[string]peerPods
}

type peerPods struct {
	sum  uint64    // Store.Sum of the object decoded
	pods []api.Pod // NodeName set; read only
}

// pods returns peer's published pods, decoded again only if its object
// changed since the last call. The slice is shared: copy a pod before
// changing it.
func (c *peerPodsCache) pods(s *state.Store, peer string) []api.Pod {
	key := nodeStatusKey(peer)
	v := s.Sum(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byPeer[peer]; ok && e.sum == v {
		return e.pods
	}
	var pods []api.Pod
	for f, raw := range s.RawFields(key) {
		if !strings.HasPrefix(f, "spec.") {
			continue
		}
		var p api.Pod
		if err := json.Unmarshal(raw, &p); err != nil || p.Metadata.Name == "" {
			continue
		}
		p.Spec.NodeName = peer
		pods = append(pods, p)
	}
	if c.byPeer == nil {
		c.byPeer = map[string]peerPods{}
	}
	c.byPeer[peer] = peerPods{sum: v, pods: pods}
	return pods
}

// forget drops the peers not in keep (gone from the membership).
func (c *peerPodsCache) forget(keep []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.byPeer {
		if !slices.Contains(keep, p) {
			delete(c.byPeer, p)
		}
	}
}
