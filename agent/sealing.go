package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/trust"
)

// Secrets are encrypted in the replicated state: the fields of a Secret
// that hold its values (data, and the annotations, where kubectl apply
// keeps a copy of the last applied object) are stored as
// "sealed:<field>" registers holding base64 of AES-256-GCM ciphertext
// (trust.Sealer, keyed from the cluster secret), with the object key and
// the field as additional data, so that a sealed value cannot be moved to
// another object. state.crdt, deltas and anti-entropy only ever carry the
// sealed registers; the store opens them when it rebuilds an object.

// sealedPrefix starts the name of a sealed register.
const sealedPrefix = "sealed:"

// sealedFields lists, per kind, the fields stored sealed.
var sealedFields = map[string][]string{
	api.KindSecret: {"data", "metadata.annotations"},
}

func sealAD(key, field string) []byte { return []byte(key + "\x00" + field) }

// seal replaces, in fields (about to be written to key), the fields of
// sealedFields by their sealed registers. With partial (a write of only
// some fields), a sealed field written as null clears its register, and
// its clear register is cleared too. Without a sealer (an --insecure
// cluster with no gossip key) fields stay clear.
func (s *store) seal(key string, fields map[string]json.RawMessage, partial bool) error {
	kind, _, _ := splitKey(key)
	sealer := s.sealer.Load()
	if sealer == nil {
		return nil
	}
	for _, f := range sealedFields[kind] {
		v, ok := fields[f]
		if !ok {
			continue
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			fields[sealedPrefix+f] = json.RawMessage("null")
		} else {
			ct := sealer.Seal(v, sealAD(key, f))
			b, err := json.Marshal(base64.StdEncoding.EncodeToString(ct))
			if err != nil {
				return err
			}
			fields[sealedPrefix+f] = b
		}
		if partial {
			fields[f] = json.RawMessage("null")
		} else {
			delete(fields, f)
		}
	}
	return nil
}

// unseal returns fields (as stored for key) with its sealed registers
// opened; fields itself is not changed.
func (s *store) unseal(key string, fields map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	var out map[string]json.RawMessage
	sealer := s.sealer.Load()
	for f, v := range fields {
		name, ok := cutPrefix(f, sealedPrefix)
		if !ok {
			continue
		}
		if out == nil {
			out = cloneFields(fields)
		}
		delete(out, f)
		if sealer == nil {
			return nil, fmt.Errorf("%s is encrypted, and this peer holds no key (it runs --insecure without the cluster's --gossip-key)", name)
		}
		var b64 string
		if err := json.Unmarshal(v, &b64); err != nil {
			return nil, fmt.Errorf("sealed %s: %w", name, err)
		}
		ct, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("sealed %s: %w", name, err)
		}
		plain, err := sealer.Open(ct, sealAD(key, name))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = plain
	}
	if out == nil {
		return fields, nil
	}
	return out, nil
}

func cutPrefix(s, prefix string) (string, bool) {
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		return s[len(prefix):], true
	}
	return s, false
}

// objectOf decodes the fields of key, as stored, into an object.
func (s *store) objectOf(key string, fields map[string]json.RawMessage) (api.Object, error) {
	fields, err := s.unseal(key, fields)
	if err != nil {
		return nil, err
	}
	doc, err := crdt.Join(key, fields)
	if err != nil {
		return nil, err
	}
	return decodeStored(doc)
}

// sealerFor seals under use's at-rest key and opens under also's too
// (while a rotation moves from one secret to the other).
func sealerFor(use trust.Secret, also *trust.Secret) (*trust.Sealer, error) {
	if also != nil {
		return trust.NewSealer(use.DataKey(), also.DataKey())
	}
	return trust.NewSealer(use.DataKey())
}

// newSealer returns the sealer of a peer: keyed from the cluster secret,
// or from an explicit gossip key on an --insecure peer; nil when neither
// exists (Secrets are then stored in clear, which the caller says).
func newSealer(tr *peerTrust, gossipKey string) (*trust.Sealer, error) {
	switch {
	case tr != nil:
		return sealerFor(tr.secrets())
	case gossipKey != "":
		k, err := base64.StdEncoding.DecodeString(gossipKey)
		if err != nil {
			k = []byte(gossipKey)
		}
		return trust.NewSealer(trust.DataKeyFromGossipKey(k))
	}
	return nil, nil
}

// configSource gives the pod manager this peer's replica of the cluster's
// ConfigMaps and Secrets (Secrets opened).
type configSource struct{ s *store }

func (c configSource) ConfigMap(ns, name string) (*api.ConfigMap, bool) {
	o, ok := c.s.get(objectKey(api.KindConfigMap, ns, name))
	if !ok {
		return nil, false
	}
	cm, ok := o.(*api.ConfigMap)
	return cm, ok
}

func (c configSource) Claim(ns, name string) (*api.PersistentVolumeClaim, bool) {
	o, ok := c.s.get(objectKey(api.KindPersistentVolumeClaim, ns, name))
	if !ok {
		return nil, false
	}
	pvc, ok := o.(*api.PersistentVolumeClaim)
	return pvc, ok
}

func (c configSource) Secret(ns, name string) (*api.Secret, bool) {
	o, ok := c.s.get(objectKey(api.KindSecret, ns, name))
	if !ok {
		return nil, false
	}
	sec, ok := o.(*api.Secret)
	return sec, ok
}
