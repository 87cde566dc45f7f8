package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/podnet"
)

// wireGuardKeyFile holds, in the data dir, this peer's WireGuard private
// key (base64, 0600). It is made once and kept: the public key other peers
// hold stays valid across restarts.
const wireGuardKeyFile = "wireguard.key"

// tagWireGuard advertises this peer's WireGuard port and public key,
// "<port>/<key>" (49 bytes of serf's 512).
const tagWireGuard = "wg"

// wireGuardOn reports whether the peer runs the encrypted pod network: a
// secured cluster (not --insecure) and a WireGuard port.
func wireGuardOn(cfg Config, secured bool) bool {
	return secured && cfg.WireGuardPort > 0
}

// wireGuardName is the name of the WireGuard device of the peer whose
// pod bridge is br: "cw" and a hash of the bridge, 10 characters.
func wireGuardName(br string) string {
	sum := sha256.Sum256([]byte(br))
	return "cw" + hex.EncodeToString(sum[:4])
}

// loadWireGuardKey reads this peer's WireGuard private key from the data
// dir, making one if there is none.
func loadWireGuardKey(dataDir string) (podnet.Key, error) {
	path := filepath.Join(dataDir, wireGuardKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := podnet.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return k, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return podnet.Key{}, fmt.Errorf("read the WireGuard key: %w", err)
	}
	k, err := podnet.NewKey()
	if err != nil {
		return k, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(k.String()+"\n"), 0o600); err != nil {
		return k, fmt.Errorf("write the WireGuard key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return k, fmt.Errorf("write the WireGuard key: %w", err)
	}
	return k, nil
}

// wireGuardTag is the value of tagWireGuard.
func wireGuardTag(port int, pub podnet.Key) string {
	return strconv.Itoa(port) + "/" + pub.String()
}

// parseWireGuardTag reads a tagWireGuard value; ok is false for none or
// one that is not "<port>/<key>".
func parseWireGuardTag(v string) (port int, key string, ok bool) {
	p, k, found := strings.Cut(v, "/")
	if !found {
		return 0, "", false
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 || !podnet.ValidKey(k) {
		return 0, "", false
	}
	return port, k, true
}
