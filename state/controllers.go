package state

import (
	"encoding/json"
	"fmt"
	"maps"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// Writes of single fields that controllers make: binding a pod or a claim
// to a peer, recording a controller's progress.

// BindClaim records that the stored claim key is bound to node, unless it
// is bound already or gone.
func (s *Store) BindClaim(key, node string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.object(key)
	if !ok {
		return nil
	}
	ann := maps.Clone(o.Meta().Annotations)
	for _, k := range serverAnnotations {
		delete(ann, k)
	}
	if ann[api.AnnotationSelectedNode] != "" {
		return nil
	}
	if ann == nil {
		ann = map[string]string{}
	}
	ann[api.AnnotationSelectedNode] = node
	v, err := json.Marshal(ann)
	if err != nil {
		return err
	}
	next := s.st.Clone()
	d := next.PutFields(key, map[string]json.RawMessage{"metadata.annotations": v}, s.clock.Now())
	if err := s.commit(next, d); err != nil {
		return fmt.Errorf("bind claim %s to %s: %w", key, node, err)
	}
	return nil
}

// BindPod records that a stored, unbound pod is bound to node. It does
// nothing if the pod is gone or bound already.
func (s *Store) BindPod(key, node string) (bool, error) {
	v, err := json.Marshal(node)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.st.Get(key)
	if _, bound := cur["spec.nodeName"]; !ok || bound {
		return false, nil
	}
	next := s.st.Clone()
	d := next.PutFields(key, map[string]json.RawMessage{"spec.nodeName": v}, s.clock.Now())
	if err := s.commit(next, d); err != nil {
		return false, fmt.Errorf("bind pod %s to %s: %w", key, node, err)
	}
	return true, nil
}

// WriteProgress writes fields of the progress object key (of kind) of
// the object with uid; a progress of another (deleted) object of the same
// name is replaced whole.
func (s *Store) WriteProgress(key, kind, uid string, values map[string]any) error {
	if len(values) == 0 {
		return nil
	}
	fields := map[string]json.RawMessage{}
	for f, v := range values {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", key, f, err)
		}
		fields[f] = b
	}
	fields["spec.uid"], _ = json.Marshal(uid)
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.st.Clone()
	cur, _ := next.Get(key)
	var stored string
	_ = json.Unmarshal(cur["spec.uid"], &stored)
	var d crdt.Delta
	if stored != uid {
		fields["apiVersion"] = json.RawMessage(`"chorus.io/v1"`)
		fields["kind"], _ = json.Marshal(kind)
		d = next.Put(key, fields, s.clock.Now())
	} else {
		d = next.PutFields(key, fields, s.clock.Now())
	}
	if err := s.commit(next, d); err != nil {
		return fmt.Errorf("record progress %s: %w", key, err)
	}
	return nil
}
