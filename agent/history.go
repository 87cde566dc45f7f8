package agent

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
// one).
const kindHistory = "History"

func historyKey(ns, name string) string { return kindHistory + "/" + ns + "/" + name }

// revisionEntry is one template of a deployment's history.
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

// recordRevision adds the template of d to its history in next as the
// newest revision, and drops the oldest beyond spec.revisionHistoryLimit
// (the current revision is kept on top of the limit, as Kubernetes keeps
// its current ReplicaSet). fresh replaces whatever history a deleted
// deployment of the same name left. The caller holds s.mu.
func (s *store) recordRevision(next *crdt.State, d *api.Deployment, cause string, fresh bool, now time.Time) crdt.Delta {
	key := historyKey(d.Metadata.Namespace, d.Metadata.Name)
	hash := api.TemplateHash(&d.Spec.Template)
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
	if c := d.Metadata.Annotations[api.AnnotationChangeCause]; c != "" {
		cause = c
	}
	e := revisionEntry{Revision: top + 1, Template: d.Spec.Template, Cause: cause, Time: now.UTC().Truncate(time.Second)}
	raw, err := json.Marshal(e)
	if err != nil {
		return crdt.Delta{} // a template always encodes; nothing recorded otherwise
	}
	hist[hash] = e
	fields := map[string]json.RawMessage{"spec." + hash: raw}
	limit := 10
	if d.Spec.RevisionHistoryLimit != nil {
		limit = int(*d.Spec.RevisionHistoryLimit)
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

// history returns a deployment's revisions, oldest first, as apps/v1
// ControllerRevisions, and its current revision number. A deployment with
// no recorded history (written before histories were kept) shows its
// current template as revision 1.
func (s *store) history(d *api.Deployment) ([]api.ControllerRevision, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return historyOf(s.st, d)
}

// historyOf is history read from st.
func historyOf(st *crdt.State, d *api.Deployment) ([]api.ControllerRevision, int64) {
	fields, _ := st.Get(historyKey(d.Metadata.Namespace, d.Metadata.Name))
	hist := readHistory(fields)
	hash := api.TemplateHash(&d.Spec.Template)
	if _, ok := hist[hash]; !ok {
		var top int64
		for _, e := range hist {
			top = max(top, e.Revision)
		}
		hist[hash] = revisionEntry{Revision: top + 1, Template: d.Spec.Template}
	}
	out := make([]api.ControllerRevision, 0, len(hist))
	for h, e := range hist {
		cr := api.ControllerRevision{
			TypeMeta: api.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
			Metadata: api.ObjectMeta{Name: d.Metadata.Name + "-" + h, Namespace: d.Metadata.Namespace,
				Labels: map[string]string{api.LabelDeployment: d.Metadata.Name, api.LabelTemplateHash: h}},
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

// statusError is an API error with its HTTP code and Kubernetes reason.
type statusError struct {
	code   int
	reason string
	msg    string
}

func (e *statusError) Error() string { return e.msg }
