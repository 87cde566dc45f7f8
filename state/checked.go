package state

import (
	"sort"
	"sync"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// What the store does with objects no write path accepts: each stored
// object is checked at its current version; an invalid one is left out of
// every read and reported once.

// checkedObjects is the outcome of checking each stored object at its
// current version. report, when set, is told once of every object version
// found invalid.
type checkedObjects struct {
	mu     sync.Mutex
	good   map[string]string // key -> version that decoded and validated
	bad    map[string]api.InvalidObject
	report func(api.InvalidObject)
}

func (c *checkedObjects) isGood(key, version string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.good[key] == version
}

func (c *checkedObjects) markGood(key, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.good == nil {
		c.good = map[string]string{}
	}
	c.good[key] = version
	delete(c.bad, key)
}

func (c *checkedObjects) markBad(b api.InvalidObject) {
	c.mu.Lock()
	if c.bad == nil {
		c.bad = map[string]api.InvalidObject{}
	}
	prev, seen := c.bad[b.Key]
	c.bad[b.Key] = b
	delete(c.good, b.Key)
	report := c.report
	c.mu.Unlock()
	if report != nil && (!seen || prev.Version != b.Version) {
		report(b)
	}
}

// list returns the invalid objects, by key.
func (c *checkedObjects) list() []api.InvalidObject {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]api.InvalidObject, 0, len(c.bad))
	for _, b := range c.bad {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Invalid returns the objects of the state that do not decode or
// validate, as last read.
func (s *Store) Invalid() []api.InvalidObject {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.checked.forget(s.st)
	return s.checked.list()
}

// forget drops what is remembered of keys no longer in st.
func (c *checkedObjects) forget(st *crdt.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.good {
		if _, ok := st.Get(k); !ok {
			delete(c.good, k)
		}
	}
	for k := range c.bad {
		if _, ok := st.Get(k); !ok {
			delete(c.bad, k)
		}
	}
}

// ReportInvalid makes report be told once of every object version found
// invalid from now on.
func (s *Store) ReportInvalid(report func(api.InvalidObject)) {
	s.checked.mu.Lock()
	defer s.checked.mu.Unlock()
	s.checked.report = report
}

// validateStored runs on a stored object the validation every write path
// applies (api.Validate, as apply's decoding does), and returns a
// *api.ManifestError naming each field at fault.
func validateStored(o api.Object) error {
	if errs := api.Validate(o); len(errs) > 0 {
		return &api.ManifestError{Errors: errs}
	}
	return nil
}
