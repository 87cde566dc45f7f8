// Package trust holds what a chorus cluster's security rests on: the
// cluster secret, the join token that carries it, and everything derived
// from it with HKDF (the gossip key, the admin API token, the cluster CA),
// the certificates the CA issues to peers, and the admin kubeconfig.
//
// One 32-byte random secret per cluster: whoever holds it is a member.
// Every derivation is deterministic, so every peer derives the same keys,
// the same CA key and the same API token without talking to the others.
package trust

import (
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SecretSize is the size of a cluster secret in bytes.
const SecretSize = 32

// tokenPrefix starts every join token: the format's version.
const tokenPrefix = "chorus1."

// Secret is a cluster secret.
type Secret [SecretSize]byte

// NewSecret returns a new random cluster secret.
func NewSecret() (Secret, error) {
	var s Secret
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("generate the cluster secret: %w", err)
	}
	return s, nil
}

// derive returns n bytes derived from the secret for one purpose (label).
func (s Secret) derive(label string, n int) []byte {
	b, err := hkdf.Key(sha256.New, s[:], []byte("chorus cluster secret"), label, n)
	if err != nil { // only for n beyond 255*32 bytes
		panic("trust: hkdf: " + err.Error())
	}
	return b
}

// Token returns the join token that carries the secret:
// "chorus1.<secret, base64url>.<check, base64url>". The check (3 bytes
// derived from the secret) catches a token mangled by a copy and paste.
func (s Secret) Token() string {
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(s[:]) + "." +
		base64.RawURLEncoding.EncodeToString(s.derive("token check", 3))
}

// ParseToken returns the secret a join token carries. Surrounding spaces
// and newlines are ignored.
func ParseToken(token string) (Secret, error) {
	var s Secret
	t := strings.TrimSpace(token)
	if t == "" {
		return s, errors.New("the join token is empty")
	}
	rest, ok := strings.CutPrefix(t, tokenPrefix)
	if !ok {
		return s, fmt.Errorf("not a chorus join token: it must start with %q (the token is in the first peer's <data-dir>/token)", tokenPrefix)
	}
	body, check, ok := strings.Cut(rest, ".")
	if !ok {
		return s, errors.New("the join token is truncated: its check part is missing")
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(b) != SecretSize {
		return s, fmt.Errorf("the join token's secret is not %d bytes of base64url", SecretSize)
	}
	copy(s[:], b)
	c, err := base64.RawURLEncoding.DecodeString(check)
	if err != nil || !bytes.Equal(c, s.derive("token check", 3)) {
		return Secret{}, errors.New("the join token is damaged: its check does not match its secret")
	}
	return s, nil
}

// GossipKey is the serf/memberlist encryption key (AES-256); the gossip
// package also admits to its data plane only the peers that members
// advertise under it.
func (s Secret) GossipKey() []byte { return s.derive("gossip key", 32) }

// APIToken is the admin bearer token of every peer's API.
func (s Secret) APIToken() string {
	return "chorus-admin." + base64.RawURLEncoding.EncodeToString(s.derive("api token", 24))
}

// ClusterID names the cluster without revealing the secret: "chorus-" and
// 8 hex digits. The kubeconfig's cluster and context carry it.
func (s Secret) ClusterID() string {
	return "chorus-" + hex.EncodeToString(s.derive("cluster id", 4))
}

// TokenFile is the name of the file, in a peer's data dir, that holds the
// join token (mode 0600).
const TokenFile = "token"

// ReadTokenFile reads a join token from a file.
func ReadTokenFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, err
	}
	s, err := ParseToken(string(b))
	if err != nil {
		return Secret{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// WriteFile writes data to path with mode 0600 through a temporary file
// renamed into place, so a reader never sees half a file and nobody but
// the owner ever can read it.
func WriteFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
