package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
)

// Secrets are encrypted in the replicated state: the fields of a Secret
// that hold its values (data, and the annotations, where kubectl apply
// keeps a copy of the last applied object) are stored as
// "sealed:<field>" registers holding base64 of AES-256-GCM ciphertext (by
// the Sealer the store is given: trust.Sealer, keyed from the cluster
// secret), with the object key and the field as additional data, so that
// a sealed value cannot be moved to another object. state.crdt, deltas and anti-entropy only ever carry the
// sealed registers; the store opens them when it rebuilds an object.

// SealedPrefix starts the name of a sealed register.
const SealedPrefix = "sealed:"

// sealedFields lists, per kind, the fields stored sealed.
var sealedFields = map[string][]string{
	api.KindSecret: {"data", "metadata.annotations"},
}

// SealAD is the additional data a sealed register of field of key is
// sealed with.
func SealAD(key, field string) []byte { return []byte(key + "\x00" + field) }

// Sealer seals and opens the sealed fields of Secrets, with ad as
// additional data (trust.Sealer is one).
type Sealer interface {
	Seal(plain, ad []byte) []byte
	Open(sealed, ad []byte) ([]byte, error)
}

// sealerBox holds a Sealer in an atomic.Pointer.
type sealerBox struct{ Sealer }

// SetSealer makes sl the store's sealer, from its next write or read on;
// nil (an untyped nil interface) stores Secrets in clear (an --insecure
// peer without a gossip key). A rotation of the cluster secret replaces it
// while the peer serves.
func (s *Store) SetSealer(sl Sealer) {
	if sl == nil {
		s.sealer.Store(nil)
		return
	}
	s.sealer.Store(&sealerBox{sl})
}

// loadSealer returns the sealer, nil if none.
func (s *Store) loadSealer() Sealer {
	if b := s.sealer.Load(); b != nil {
		return b.Sealer
	}
	return nil
}

// seal replaces, in fields (about to be written to key), the fields of
// sealedFields by their sealed registers. With partial (a write of only
// some fields), a sealed field written as null clears its register, and
// its clear register is cleared too. Without a sealer (an --insecure
// cluster with no gossip key) fields stay clear.
func (s *Store) seal(key string, fields map[string]json.RawMessage, partial bool) error {
	kind, _, _ := SplitKey(key)
	sealer := s.loadSealer()
	if sealer == nil {
		return nil
	}
	for _, f := range sealedFields[kind] {
		v, ok := fields[f]
		if !ok {
			continue
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			fields[SealedPrefix+f] = json.RawMessage("null")
		} else {
			ct := sealer.Seal(v, SealAD(key, f))
			b, err := json.Marshal(base64.StdEncoding.EncodeToString(ct))
			if err != nil {
				return err
			}
			fields[SealedPrefix+f] = b
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
func (s *Store) unseal(key string, fields map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	var out map[string]json.RawMessage
	sealer := s.loadSealer()
	for f, v := range fields {
		name, ok := cutPrefix(f, SealedPrefix)
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
		plain, err := sealer.Open(ct, SealAD(key, name))
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
func (s *Store) objectOf(key string, fields map[string]json.RawMessage) (api.Object, error) {
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
