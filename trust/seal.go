package trust

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// sealVersion starts every sealed value: the format (AES-256-GCM, 12-byte
// random nonce, then the ciphertext and its 16-byte tag).
const sealVersion = 1

// DataKey is the AES-256 key that encrypts Secrets in the replicated state
// (on disk and between peers).
func (s Secret) DataKey() []byte { return s.derive("secrets at rest", 32) }

// DataKeyFromGossipKey derives the key that encrypts Secrets from an
// explicit gossip key, for a cluster run with --insecure and --gossip-key:
// every peer holds that key, and it is never used as is for two purposes.
func DataKeyFromGossipKey(gossipKey []byte) []byte {
	b, err := hkdf.Key(sha256.New, gossipKey, []byte("chorus gossip key"), "secrets at rest", 32)
	if err != nil {
		panic("trust: hkdf: " + err.Error())
	}
	return b
}

// Sealer encrypts and authenticates values with AES-256-GCM: under its
// first key, while it opens values sealed under any of its keys (a cluster
// changing its secret opens what the old key sealed until everything is
// sealed anew). Safe for concurrent use.
type Sealer struct{ aeads []cipher.AEAD }

// NewSealer returns a Sealer that seals under key and opens values sealed
// under key or any of older; every key is 32 bytes.
func NewSealer(key []byte, older ...[]byte) (*Sealer, error) {
	s := &Sealer{}
	for _, k := range append([][]byte{key}, older...) {
		if len(k) != 32 {
			return nil, fmt.Errorf("sealer: the key is %d bytes, want 32", len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("sealer: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("sealer: %w", err)
		}
		s.aeads = append(s.aeads, aead)
	}
	return s, nil
}

// Seal encrypts plain, binding it to ad (additional data that is not
// stored but must be given again to Open): version byte, nonce, ciphertext.
func (s *Sealer) Seal(plain, ad []byte) []byte {
	aead := s.aeads[0]
	ns := aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		panic("trust: random nonce: " + err.Error()) // crypto/rand does not fail
	}
	return aead.Seal(out, out[1:], plain, ad)
}

// ErrUnseal is returned by Open for a value that is not one Seal made
// with this key and this additional data.
var ErrUnseal = errors.New("sealed value does not open: another key, another object, or damaged")

// Open decrypts what Seal returned for the same ad, under any key of the
// Sealer.
func (s *Sealer) Open(sealed, ad []byte) ([]byte, error) {
	plain, _, err := s.OpenKey(sealed, ad)
	return plain, err
}

// OpenKey is Open, also telling whether the value was sealed under the
// first key (false: under an older one, to be sealed anew).
func (s *Sealer) OpenKey(sealed, ad []byte) (plain []byte, first bool, err error) {
	for i, aead := range s.aeads {
		ns := aead.NonceSize()
		if len(sealed) < 1+ns+aead.Overhead() || sealed[0] != sealVersion {
			return nil, false, ErrUnseal
		}
		if plain, err := aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], ad); err == nil {
			return plain, i == 0, nil
		}
	}
	return nil, false, ErrUnseal
}
