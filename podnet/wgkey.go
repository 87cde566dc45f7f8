package podnet

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/curve25519"
)

// Key is a WireGuard private key (Curve25519).
type Key [32]byte

// NewKey returns a new private key, clamped as WireGuard's are.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return k, fmt.Errorf("new WireGuard key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// ParseKey reads a key in base64 (as wg(8) writes them).
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("WireGuard key: want 32 bytes in base64")
	}
	copy(k[:], b)
	return k, nil
}

// ValidKey reports whether s is a key in base64.
func ValidKey(s string) bool {
	_, err := ParseKey(s)
	return err == nil
}

// String is the key in base64.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// hex is the key as wireguard-go's configuration protocol writes it.
func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// Public returns the public key of the private key k.
func (k Key) Public() Key {
	var p Key
	pub, err := curve25519.X25519(k[:], curve25519.Basepoint)
	if err == nil { // X25519 fails only on a low-order point, never for the base point
		copy(p[:], pub)
	}
	return p
}
