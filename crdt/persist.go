package crdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The state file is fileMagic, then every register as in a delta (version
// byte, count, entries; no limit on the count), then the CRC-32C of all
// that.
var fileMagic = []byte("chorus-crdt\n")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes the whole state, tombstones included, to path atomically: to
// a temporary file in the same directory, synced, renamed over path, and
// the directory synced. After Save returns nil the state survives a crash;
// if it fails, path holds the previous state. It fails, writing nothing,
// if the state holds a register DecodeDelta would reject (only possible if
// a hand-made Delta was merged, or a Clock's node name is too long).
func (s *State) Save(path string) error {
	b := append([]byte(nil), fileMagic...)
	b = append(b, wireVersion)
	b, err := appendEntries(b, s.entries(s.allKeys()).Entries)
	if err != nil {
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("crdt: save %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("crdt: save %s: sync directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("crdt: save %s: sync directory: %w", path, err)
	}
	return nil
}

// Load reads a state written by Save. A missing file is an empty state; a
// file that cannot be read or is corrupt is an error naming it (corrupt
// ones wrap ErrMalformed).
func Load(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return New(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("crdt: load %s: %w", path, err)
	}
	s, err := decodeFile(b)
	if err != nil {
		return nil, fmt.Errorf("crdt: state file %s is corrupt: %w", path, err)
	}
	return s, nil
}

func decodeFile(b []byte) (*State, error) {
	if !bytes.HasPrefix(b, fileMagic) {
		return nil, fmt.Errorf("%w: not a chorus state file", ErrMalformed)
	}
	if len(b) < len(fileMagic)+1+4 {
		return nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrMalformed)
	}
	body = body[len(fileMagic):]
	if body[0] != wireVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrMalformed, body[0])
	}
	r := reader{b: body[1:]}
	entries, err := r.entries(0)
	if err == nil && len(r.b) != 0 {
		err = errors.New("trailing bytes")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	s := New()
	for _, e := range entries {
		s.set(e.Key, e.Field, e.Reg)
	}
	return s, nil
}
