package agent

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// events keeps the recent events of this peer, as Kubernetes does for an
// hour; repeats of the same event bump its count.
type events struct {
	node string
	max  int

	mu    sync.Mutex
	seq   int64
	items []*api.Event
}

func newEvents(node string, max int) *events { return &events{node: node, max: max} }

func (e *events) record(ref api.ObjectReference, typ, reason, msg string) {
	now := time.Now().UTC().Truncate(time.Second)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.items) - 1; i >= 0 && i >= len(e.items)-50; i-- {
		ev := e.items[i]
		if ev.InvolvedObject == ref && ev.Reason == reason && ev.Message == msg {
			ev.Count++
			ev.LastTimestamp = &now
			return
		}
	}
	e.seq++
	ev := &api.Event{
		TypeMeta:       api.TypeMeta{APIVersion: "v1", Kind: "Event"},
		Metadata:       api.ObjectMeta{Name: fmt.Sprintf("%s.%s.%d", ref.Name, e.node, e.seq), Namespace: ref.Namespace, CreationTimestamp: &now},
		InvolvedObject: ref,
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Count:          1,
		FirstTimestamp: &now,
		LastTimestamp:  &now,
		Source:         api.EventSource{Component: "chorus", Host: e.node},
	}
	e.items = append(e.items, ev)
	if len(e.items) > e.max {
		e.items = append([]*api.Event(nil), e.items[len(e.items)-e.max:]...)
	}
}

// list returns the events in namespace ns ("" for all) about the object of
// kind and name (both optional), oldest first.
func (e *events) list(ns, kind, name string) []api.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []api.Event
	for _, ev := range e.items {
		if (ns == "" || ev.InvolvedObject.Namespace == ns) && (kind == "" || ev.InvolvedObject.Kind == kind) &&
			(name == "" || ev.InvolvedObject.Name == name) {
			out = append(out, *ev)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastTimestamp.Before(*out[j].LastTimestamp) })
	return out
}
