package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/watch"
)

// rvTags is how many peers' resource versions can be told apart: the last
// three decimal digits of a resourceVersion name the peer that issued it.
const rvTags = 1000

// ringSize is how many changes a watch may resume from.
const ringSize = 20000

// stored is one object as this peer serves it.
type stored struct {
	obj map[string]any // the document, metadata.resourceVersion set
	raw []byte         // the backend's document, to see changes
	rv  uint64
}

// event is one change, as a watch sends it.
type event struct {
	typ watch.EventType
	rv  uint64
	res *Resource
	obj map[string]any
}

// cache holds the last listing of every resource and the recent changes,
// each stamped with this peer's resource version.
type cache struct {
	backend Backend
	reg     *registry
	log     *slog.Logger
	tag     uint64

	syncMu sync.Mutex // one sync at a time

	mu      sync.RWMutex
	seq     uint64
	objs    map[*Resource]map[string]*stored
	ring    []event
	trimmed uint64        // resource version of the newest event dropped from ring
	wake    chan struct{} // closed when events are added
	synced  bool
}

func newCache(b Backend, reg *registry, peer string, now time.Time, log *slog.Logger) *cache {
	h := fnv.New32a()
	h.Write([]byte(peer))
	c := &cache{backend: b, reg: reg, log: log, tag: uint64(h.Sum32()) % rvTags,
		// Versions keep growing across restarts: the sequence starts at the
		// clock (microseconds), far above what a previous run issued unless
		// it made more than a million changes a second.
		seq:  uint64(now.UnixMicro()),
		objs: map[*Resource]map[string]*stored{}, wake: make(chan struct{})}
	c.trimmed = c.rvOf(c.seq)
	return c
}

func (c *cache) rvOf(seq uint64) uint64 { return seq*rvTags + c.tag }

// current returns the resource version of the newest change.
func (c *cache) current() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rvOf(c.seq)
}

// ours reports whether rv was issued by this peer.
func (c *cache) ours(rv uint64) bool { return rv%rvTags == c.tag }

func objKey(ns, name string) string { return ns + "/" + name }

// sync lists every resource from the backend and records what changed.
func (c *cache) sync(ctx context.Context) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	type listing struct {
		res  *Resource
		docs [][]byte
	}
	var ls []listing
	for _, r := range c.reg.list {
		if r.Live {
			continue
		}
		docs, err := c.backend.List(ctx, r.Kind)
		if err != nil {
			c.log.Warn("list for the API cache", "kind", r.Kind, "err", err)
			continue
		}
		ls = append(ls, listing{r, docs})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var evs []event
	for _, l := range ls {
		prev := c.objs[l.res]
		next := make(map[string]*stored, len(l.docs))
		for _, doc := range l.docs {
			var obj map[string]any
			if err := json.Unmarshal(doc, &obj); err != nil {
				c.log.Warn("undecodable object from the backend", "kind", l.res.Kind, "err", err)
				continue
			}
			if cv := l.res.Convert; cv != nil {
				var err error
				if obj, err = cv.ToServed(obj); err != nil {
					c.log.Warn("object not convertible to "+l.res.APIVersion(), "kind", l.res.Kind, "err", err)
					continue
				}
			}
			ns, name := metaString(obj, "namespace"), metaString(obj, "name")
			k := objKey(ns, name)
			if old, ok := prev[k]; ok && bytes.Equal(old.raw, doc) {
				next[k] = old
				continue
			}
			typ := watch.Added
			if old, ok := prev[k]; ok {
				typ = watch.Modified
				if uid := metaString(obj, "uid"); uid != "" && uid != metaString(old.obj, "uid") {
					// Another object under the same name (a replaced
					// pod): the old one is deleted, as watchers waiting
					// for its deletion (kubectl delete --wait) expect.
					c.seq++
					gone := shallowCopy(old.obj)
					setMeta(gone, "resourceVersion", strconv.FormatUint(c.rvOf(c.seq), 10))
					evs = append(evs, event{typ: watch.Deleted, rv: c.rvOf(c.seq), res: l.res, obj: gone})
					typ = watch.Added
				}
			}
			c.seq++
			s := &stored{obj: obj, raw: doc, rv: c.rvOf(c.seq)}
			setMeta(obj, "resourceVersion", strconv.FormatUint(s.rv, 10))
			obj["apiVersion"], obj["kind"] = l.res.APIVersion(), l.res.Kind
			next[k] = s
			evs = append(evs, event{typ: typ, rv: s.rv, res: l.res, obj: obj})
		}
		for k, old := range prev {
			if _, ok := next[k]; !ok {
				c.seq++
				gone := shallowCopy(old.obj)
				setMeta(gone, "resourceVersion", strconv.FormatUint(c.rvOf(c.seq), 10))
				evs = append(evs, event{typ: watch.Deleted, rv: c.rvOf(c.seq), res: l.res, obj: gone})
			}
		}
		c.objs[l.res] = next
	}
	c.synced = true
	if len(evs) == 0 {
		return
	}
	c.ring = append(c.ring, evs...)
	if n := len(c.ring) - ringSize; n > 0 {
		c.trimmed = c.ring[n-1].rv
		c.ring = append([]event(nil), c.ring[n:]...)
	}
	close(c.wake)
	c.wake = make(chan struct{})
}

// list returns the objects of r in namespace ns ("" for all), sorted by
// namespace and name, and the resource version of the listing.
func (c *cache) list(r *Resource, ns string) ([]map[string]any, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []map[string]any
	for _, s := range c.objs[r] {
		if ns == "" || metaString(s.obj, "namespace") == ns {
			out = append(out, s.obj)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := metaString(out[i], "namespace"), metaString(out[j], "namespace")
		if a != b {
			return a < b
		}
		return metaString(out[i], "name") < metaString(out[j], "name")
	})
	return out, c.rvOf(c.seq)
}

// get returns one object.
func (c *cache) get(r *Resource, ns, name string) (map[string]any, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s, ok := c.objs[r][objKey(ns, name)]
	if !ok {
		return nil, false
	}
	return s.obj, true
}

// errGone says a watch cannot resume from the version asked.
type errGone struct{ rv uint64 }

func (e errGone) Error() string {
	return fmt.Sprintf("too old resource version: %d (this peer can resume a watch only from a version it issued recently; relist)", e.rv)
}

// since returns the changes after rv and a channel closed at the next
// change.
func (c *cache) since(rv uint64) ([]event, <-chan struct{}, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ours(rv) || rv < c.trimmed || rv > c.rvOf(c.seq) {
		return nil, nil, errGone{rv}
	}
	i := sort.Search(len(c.ring), func(i int) bool { return c.ring[i].rv > rv })
	return append([]event(nil), c.ring[i:]...), c.wake, nil
}

// run keeps the cache in step with the backend until ctx ends: at every
// change the backend signals (at most every 50 ms) and every second.
func (c *cache) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := c.backend.Changed()
		c.sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-changed:
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		case <-tick.C:
		}
	}
}

func metaString(obj map[string]any, field string) string {
	m, _ := obj["metadata"].(map[string]any)
	s, _ := m[field].(string)
	return s
}

func setMeta(obj map[string]any, field string, v any) {
	m, ok := obj["metadata"].(map[string]any)
	if !ok {
		m = map[string]any{}
		obj["metadata"] = m
	}
	m[field] = v
}

// shallowCopy copies obj and its metadata map.
func shallowCopy(obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		out[k] = v
	}
	if m, ok := obj["metadata"].(map[string]any); ok {
		mc := make(map[string]any, len(m))
		for k, v := range m {
			mc[k] = v
		}
		out["metadata"] = mc
	}
	return out
}
