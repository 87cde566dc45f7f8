package state

import (
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// kindHistory is the replicated rollout history of a deployment: one field
// "spec.<template hash>" per template it has had, holding a revisionEntry.
// It is written in the same commit as the template change, by whichever
// peer takes the write, and merges field by field like everything else:
// two peers that change a template at once each add their own entry (they
// may then share a revision number; the template that won is the current
// one). Daemon sets and stateful sets keep theirs the same way under their
// own kinds; they are served as ControllerRevisions, a deployment's as
// ReplicaSets.
const (
	kindHistory            = "History"
	kindDaemonSetHistory   = "DaemonSetHistory"
	kindStatefulSetHistory = "StatefulSetHistory"
)

func historyKey(ns, name string) string { return kindHistory + "/" + ns + "/" + name }

// templated is an object with a rollout history: its pod template and
// how many old templates it keeps.
type templated struct {
	key      string // of its history
	template *api.PodTemplateSpec
	limit    *int32
	meta     *api.ObjectMeta
}

// templatedOf returns the history-keeping view of o, if it has one.
func templatedOf(o api.Object) (templated, bool) {
	switch v := o.(type) {
	case *api.Deployment:
		return templated{historyKey(v.Metadata.Namespace, v.Metadata.Name), &v.Spec.Template, v.Spec.RevisionHistoryLimit, &v.Metadata}, true
	case *api.DaemonSet:
		return templated{kindDaemonSetHistory + "/" + v.Metadata.Namespace + "/" + v.Metadata.Name, &v.Spec.Template, v.Spec.RevisionHistoryLimit, &v.Metadata}, true
	case *api.StatefulSet:
		return templated{kindStatefulSetHistory + "/" + v.Metadata.Namespace + "/" + v.Metadata.Name, &v.Spec.Template, v.Spec.RevisionHistoryLimit, &v.Metadata}, true
	}
	return templated{}, false
}

// historyKeyOf returns the key of the history of the object at key ("" if
// its kind keeps none).
func historyKeyOf(key string) string {
	kind, ns, name := SplitKey(key)
	switch kind {
	case api.KindDeployment:
		return historyKey(ns, name)
	case api.KindDaemonSet:
		return kindDaemonSetHistory + "/" + ns + "/" + name
	case api.KindStatefulSet:
		return kindStatefulSetHistory + "/" + ns + "/" + name
	}
	return ""
}

// revisionEntry is one template of an object's history.
type revisionEntry struct {
	Revision int64               `json:"revision"`
	Template api.PodTemplateSpec `json:"template"`
	Cause    string              `json:"cause,omitempty"`
	Time     time.Time           `json:"time"`
}

// readHistory decodes the history fields of a deployment, by template hash;
// entries that do not decode are skipped.
func readHistory(fields map[string]json.RawMessage) map[string]revisionEntry {
	out := map[string]revisionEntry{}
	for f, raw := range fields {
		hash, ok := strings.CutPrefix(f, "spec.")
		if !ok {
			continue
		}
		var e revisionEntry
		if json.Unmarshal(raw, &e) == nil {
			out[hash] = e
		}
	}
	return out
}

// recordRevision adds the template of o (a deployment, daemon set or
// stateful set) to its history in next as the newest revision, and drops
// the oldest beyond spec.revisionHistoryLimit (the current revision is kept
// on top of the limit, as Kubernetes keeps its current ReplicaSet). fresh
// replaces whatever history a deleted object of the same name left. The
// caller holds s.mu.
func (s *Store) recordRevision(next *crdt.State, o api.Object, cause string, fresh bool, now time.Time) crdt.Delta {
	t, ok := templatedOf(o)
	if !ok {
		return crdt.Delta{}
	}
	key := t.key
	hash := api.TemplateHash(t.template)
	var hist map[string]revisionEntry
	if cur, ok := next.Get(key); ok && !fresh {
		hist = readHistory(cur)
	} else {
		hist = map[string]revisionEntry{}
	}
	var top int64
	for _, e := range hist {
		top = max(top, e.Revision)
	}
	if e, ok := hist[hash]; ok && e.Revision == top {
		return crdt.Delta{} // already the newest revision
	}
	if c := t.meta.Annotations[api.AnnotationChangeCause]; c != "" {
		cause = c
	}
	e := revisionEntry{Revision: top + 1, Template: *t.template, Cause: cause, Time: now.UTC().Truncate(time.Second)}
	raw, err := json.Marshal(e)
	if err != nil {
		return crdt.Delta{} // a template always encodes; nothing recorded otherwise
	}
	hist[hash] = e
	fields := map[string]json.RawMessage{"spec." + hash: raw}
	limit := 10
	if t.limit != nil {
		limit = int(*t.limit)
	}
	if len(hist) > limit+1 {
		hashes := make([]string, 0, len(hist))
		for h := range hist {
			if h != hash {
				hashes = append(hashes, h)
			}
		}
		sort.Slice(hashes, func(i, j int) bool { return hist[hashes[i]].Revision < hist[hashes[j]].Revision })
		for _, h := range hashes[:len(hist)-limit-1] {
			fields["spec."+h] = json.RawMessage("null")
		}
	}
	if fresh {
		return next.Put(key, fields, s.clock.Now())
	}
	return next.PutFields(key, fields, s.clock.Now())
}

// History returns the revisions of o (a deployment, daemon set or stateful
// set), oldest first, as ControllerRevisions, and its current revision
// number. An object with no recorded history (written before histories
// were kept) shows its current template as revision 1.
func (s *Store) History(o api.Object) ([]api.ControllerRevision, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return historyOf(s.st, o)
}

// historyOf is history read from st.
func historyOf(st *crdt.State, o api.Object) ([]api.ControllerRevision, int64) {
	t, ok := templatedOf(o)
	if !ok {
		return nil, 0
	}
	fields, _ := st.Get(t.key)
	hist := readHistory(fields)
	hash := api.TemplateHash(t.template)
	if _, ok := hist[hash]; !ok {
		var top int64
		for _, e := range hist {
			top = max(top, e.Revision)
		}
		hist[hash] = revisionEntry{Revision: top + 1, Template: *t.template}
	}
	d := t.meta
	out := make([]api.ControllerRevision, 0, len(hist))
	for h, e := range hist {
		cr := api.ControllerRevision{
			TypeMeta: api.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
			Metadata: api.ObjectMeta{Name: d.Name + "-" + h, Namespace: d.Namespace,
				Labels: map[string]string{api.LabelDeployment: d.Name, api.LabelTemplateHash: h}},
			Data:     e.Template,
			Revision: e.Revision,
		}
		if !e.Time.IsZero() {
			t := e.Time
			cr.Metadata.CreationTimestamp = &t
		}
		if e.Cause != "" {
			cr.Metadata.Annotations = map[string]string{api.AnnotationChangeCause: e.Cause}
		}
		out = append(out, cr)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Revision != out[j].Revision {
			return out[i].Revision < out[j].Revision
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out, hist[hash].Revision
}
