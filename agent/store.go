package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// Result is what happened to one object in an apply or a delete.
type Result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Action    string `json:"action"` // created, configured, unchanged, deleted, notfound
}

// store is the peer's desired state: every object applied, in memory and
// in a snapshot file that is written and synced before an apply is
// acknowledged.
type store struct {
	path string

	mu      sync.RWMutex
	objs    map[string]api.Object // by api.ObjectKey
	version int64
	watch   chan struct{} // closed and replaced at every change
}

type snapshot struct {
	Version int64             `json:"version"`
	Objects []json.RawMessage `json:"objects"`
}

func openStore(path string) (*store, error) {
	s := &store{path: path, objs: map[string]api.Object{}, watch: make(chan struct{})}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read desired state: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("desired state %s is corrupt: %w", path, err)
	}
	for i, raw := range snap.Objects {
		o, err := decodeStored(raw)
		if err != nil {
			return nil, fmt.Errorf("desired state %s, object %d: %w", path, i, err)
		}
		s.objs[api.ObjectKey(o)] = o
	}
	s.version = snap.Version
	return s, nil
}

func decodeStored(raw json.RawMessage) (api.Object, error) {
	var tm api.TypeMeta
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, err
	}
	var o api.Object
	switch tm.Kind {
	case api.KindNamespace:
		o = &api.Namespace{}
	case api.KindDeployment:
		o = &api.Deployment{}
	case api.KindService:
		o = &api.Service{}
	default:
		return nil, fmt.Errorf("unknown kind %q", tm.Kind)
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, err
	}
	return o, nil
}

// save writes objs as the new snapshot; the caller holds mu.
func (s *store) save(objs map[string]api.Object, version int64) error {
	snap := snapshot{Version: version}
	keys := make([]string, 0, len(objs))
	for k := range objs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, err := json.Marshal(objs[k])
		if err != nil {
			return err
		}
		snap.Objects = append(snap.Objects, b)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write desired state: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write desired state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync desired state: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write desired state: %w", err)
	}
	if d, err := os.Open(filepath.Dir(s.path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// specOf returns what decides whether an apply changes an object: all but
// the server-set metadata and the status.
func specOf(o api.Object) any {
	m := o.Meta()
	meta := struct {
		Labels, Annotations map[string]string
	}{m.Labels, m.Annotations}
	switch v := o.(type) {
	case *api.Deployment:
		return []any{meta, v.Spec}
	case *api.Service:
		return []any{meta, v.Spec}
	default:
		return []any{meta}
	}
}

func sameSpec(a, b api.Object) bool {
	ja, _ := json.Marshal(specOf(a))
	jb, _ := json.Marshal(specOf(b))
	return reflect.DeepEqual(ja, jb)
}

// apply stores objs all together or not at all.
func (s *store) apply(objs []api.Object, now time.Time) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]api.Object, len(s.objs)+len(objs))
	for k, v := range s.objs {
		next[k] = v
	}
	version := s.version
	var results []Result
	// Namespaces must exist, or be created by the same apply.
	for _, o := range objs {
		if o.GetKind() == api.KindNamespace {
			continue
		}
		ns := o.Meta().Namespace
		if ns == api.DefaultNamespace {
			continue
		}
		found := false
		if _, ok := next["Namespace//"+ns]; ok {
			found = true
		}
		for _, p := range objs {
			if p.GetKind() == api.KindNamespace && p.Meta().Name == ns {
				found = true
			}
		}
		if !found {
			return nil, &notFoundError{msg: fmt.Sprintf("%s %q: namespaces %q not found (create it first, or add a Namespace to the manifest)", o.GetKind(), o.Meta().Name, ns)}
		}
	}
	changed := false
	for _, o := range objs {
		o = copyObject(o)
		o.SetTypeMeta()
		key := api.ObjectKey(o)
		m := o.Meta()
		r := Result{Kind: o.GetKind(), Namespace: m.Namespace, Name: m.Name}
		old, ok := next[key]
		switch {
		case !ok:
			version++
			t := now.UTC().Truncate(time.Second)
			m.CreationTimestamp = &t
			m.UID = newUID()
			m.Generation = 1
			m.ResourceVersion = strconv.FormatInt(version, 10)
			r.Action = "created"
			changed = true
		case sameSpec(old, o):
			r.Action = "unchanged"
			results = append(results, r)
			continue
		default:
			version++
			om := old.Meta()
			m.CreationTimestamp, m.UID = om.CreationTimestamp, om.UID
			m.Generation = om.Generation + 1
			m.ResourceVersion = strconv.FormatInt(version, 10)
			r.Action = "configured"
			changed = true
		}
		next[key] = o
		results = append(results, r)
	}
	if changed {
		if err := s.save(next, version); err != nil {
			return nil, err
		}
		s.objs, s.version = next, version
		s.notify()
	}
	return results, nil
}

// remove deletes the objects with the given keys; deleting a namespace
// deletes what it holds.
func (s *store) remove(keys []string) ([]Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]api.Object, len(s.objs))
	for k, v := range s.objs {
		next[k] = v
	}
	var results []Result
	changed := false
	for _, key := range keys {
		kind, ns, name := splitKey(key)
		r := Result{Kind: kind, Namespace: ns, Name: name, Action: "notfound"}
		if _, ok := next[key]; ok {
			delete(next, key)
			r.Action = "deleted"
			changed = true
			if kind == api.KindNamespace {
				for k, o := range next {
					if o.GetKind() != api.KindNamespace && o.Meta().Namespace == name {
						delete(next, k)
					}
				}
			}
		}
		results = append(results, r)
	}
	if changed {
		version := s.version + 1
		if err := s.save(next, version); err != nil {
			return nil, err
		}
		s.objs, s.version = next, version
		s.notify()
	}
	return results, nil
}

func (s *store) notify() {
	close(s.watch)
	s.watch = make(chan struct{})
}

// changed returns a channel closed at the next change.
func (s *store) changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.watch
}

// list returns copies of the objects of kind in namespace ns ("" for all),
// sorted by namespace and name.
func (s *store) list(kind, ns string) []api.Object {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []api.Object
	for _, o := range s.objs {
		if o.GetKind() != kind || (ns != "" && kind != api.KindNamespace && o.Meta().Namespace != ns) {
			continue
		}
		out = append(out, copyObject(o))
	}
	sort.Slice(out, func(i, j int) bool { return api.ObjectKey(out[i]) < api.ObjectKey(out[j]) })
	return out
}

func (s *store) get(key string) (api.Object, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objs[key]
	if !ok {
		return nil, false
	}
	return copyObject(o), true
}

func objectKey(kind, ns, name string) string {
	if kind == api.KindNamespace {
		ns = ""
	}
	return kind + "/" + ns + "/" + name
}

func splitKey(key string) (kind, ns, name string) {
	var parts [3]string
	i := 0
	start := 0
	for j := 0; j < len(key) && i < 2; j++ {
		if key[j] == '/' {
			parts[i] = key[start:j]
			i++
			start = j + 1
		}
	}
	parts[2] = key[start:]
	return parts[0], parts[1], parts[2]
}

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// copyObject deep-copies an object of any stored kind.
func copyObject(o api.Object) api.Object {
	switch v := o.(type) {
	case *api.Namespace:
		c := api.DeepCopy(*v)
		return &c
	case *api.Deployment:
		c := api.DeepCopy(*v)
		return &c
	case *api.Service:
		c := api.DeepCopy(*v)
		return &c
	case *api.Pod:
		c := api.DeepCopy(*v)
		return &c
	}
	panic(fmt.Sprintf("copyObject: unexpected type %T", o))
}
