package crdt

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
)

// Limits on what peers may send.
const (
	// MaxMessageBytes is the largest encoded delta, digest or key-hash map.
	MaxMessageBytes = 8 << 20
	// MaxEntries is the most registers in a delta, or keys in a key-hash
	// map.
	MaxEntries = 100000
)

// wireVersion is the first byte of every encoded message.
const wireVersion = 1

// ErrMalformed is wrapped by the errors of the Decode functions and Load.
var ErrMalformed = errors.New("malformed")

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("crdt: %s: %w: %s", what, ErrMalformed, fmt.Sprintf(format, args...))
}

// The wire format is binary, integers as (zigzag) varints, strings and
// values as a uvarint length and the bytes:
//
//	delta:      version(1) count entry*
//	entry:      key field wall(varint) logical(uvarint) node value
//	digest:     version(1) hash(8 bytes big-endian)*64
//	key hashes: version(1) count (key hash(8 bytes big-endian))*, keys
//	            strictly increasing
//
// Nothing may follow the last item.

// EncodeDelta encodes d for another peer. It fails if d holds a register
// DecodeDelta would reject or is too large (then send it in parts).
func EncodeDelta(d Delta) ([]byte, error) {
	if len(d.Entries) > MaxEntries {
		return nil, fmt.Errorf("crdt: encode delta: %d entries, more than %d", len(d.Entries), MaxEntries)
	}
	b, err := appendEntries([]byte{wireVersion}, d.Entries)
	if err != nil {
		return nil, fmt.Errorf("crdt: encode delta: %w", err)
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("crdt: encode delta: %d bytes, more than %d", len(b), MaxMessageBytes)
	}
	return b, nil
}

// DecodeDelta decodes a delta from another peer. It fails, and never
// panics, on anything malformed: a wrong version, truncated or trailing
// bytes, more than MaxMessageBytes or MaxEntries, an empty key, a node name
// longer than MaxNodeLen, a value that is not valid JSON, or an existence
// register (field "") that is not true or false.
func DecodeDelta(b []byte) (Delta, error) {
	const what = "decode delta"
	if len(b) > MaxMessageBytes {
		return Delta{}, malformed(what, "%d bytes, more than %d", len(b), MaxMessageBytes)
	}
	if len(b) == 0 || b[0] != wireVersion {
		return Delta{}, malformed(what, "unknown version")
	}
	r := reader{b: b[1:]}
	entries, err := r.entries(MaxEntries)
	if err == nil && len(r.b) != 0 {
		err = errors.New("trailing bytes")
	}
	if err != nil {
		return Delta{}, malformed(what, "%v", err)
	}
	return Delta{Entries: entries}, nil
}

// EncodeDigest encodes a digest: 1+64*8 bytes.
func EncodeDigest(d Digest) ([]byte, error) {
	b := make([]byte, 1, 1+8*Buckets)
	b[0] = wireVersion
	for _, h := range d {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	return b, nil
}

// DecodeDigest decodes a digest from another peer, failing on a wrong
// version or length.
func DecodeDigest(b []byte) (Digest, error) {
	const what = "decode digest"
	var d Digest
	if len(b) == 0 || b[0] != wireVersion {
		return d, malformed(what, "unknown version")
	}
	if len(b) != 1+8*Buckets {
		return d, malformed(what, "%d bytes, want %d", len(b), 1+8*Buckets)
	}
	for i := range d {
		d[i] = binary.BigEndian.Uint64(b[1+8*i:])
	}
	return d, nil
}

// EncodeKeyHashes encodes a map of key hashes (from BucketKeys). It fails
// on an empty key or if m is too large.
func EncodeKeyHashes(m map[string]uint64) ([]byte, error) {
	if len(m) > MaxEntries {
		return nil, fmt.Errorf("crdt: encode key hashes: %d keys, more than %d", len(m), MaxEntries)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k == "" {
			return nil, errors.New("crdt: encode key hashes: empty key")
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := binary.AppendUvarint([]byte{wireVersion}, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = binary.BigEndian.AppendUint64(b, m[k])
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("crdt: encode key hashes: %d bytes, more than %d", len(b), MaxMessageBytes)
	}
	return b, nil
}

// DecodeKeyHashes decodes a map of key hashes from another peer, failing on
// a wrong version, truncated or trailing bytes, more than MaxMessageBytes
// or MaxEntries, an empty key, or keys out of order or repeated.
func DecodeKeyHashes(b []byte) (map[string]uint64, error) {
	const what = "decode key hashes"
	if len(b) > MaxMessageBytes {
		return nil, malformed(what, "%d bytes, more than %d", len(b), MaxMessageBytes)
	}
	if len(b) == 0 || b[0] != wireVersion {
		return nil, malformed(what, "unknown version")
	}
	r := reader{b: b[1:]}
	n, err := r.count(MaxEntries, 1+1+8)
	if err != nil {
		return nil, malformed(what, "%v", err)
	}
	m := make(map[string]uint64, n)
	prev := ""
	for i := 0; i < n; i++ {
		k, err := r.string()
		if err != nil {
			return nil, malformed(what, "key %d: %v", i, err)
		}
		if k == "" {
			return nil, malformed(what, "key %d is empty", i)
		}
		if i > 0 && k <= prev {
			return nil, malformed(what, "key %d out of order", i)
		}
		h, err := r.uint64()
		if err != nil {
			return nil, malformed(what, "key %d: %v", i, err)
		}
		m[k] = h
		prev = k
	}
	if len(r.b) != 0 {
		return nil, malformed(what, "trailing bytes")
	}
	return m, nil
}

// checkEntry returns why a peer would reject e, or nil.
func checkEntry(e Entry) error {
	switch {
	case e.Key == "":
		return errors.New("empty key")
	case len(e.Reg.Stamp.Node) > MaxNodeLen:
		return fmt.Errorf("node name of %d bytes, more than %d", len(e.Reg.Stamp.Node), MaxNodeLen)
	case e.Field == ExistsField:
		if !bytes.Equal(e.Reg.Value, jsonTrue) && !bytes.Equal(e.Reg.Value, jsonFalse) {
			return fmt.Errorf("existence of %s is neither true nor false", e.Key)
		}
	case !json.Valid(e.Reg.Value):
		return fmt.Errorf("value of %s field %s is not valid JSON", e.Key, e.Field)
	}
	return nil
}

func appendEntries(b []byte, entries []Entry) ([]byte, error) {
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i, e := range entries {
		if err := checkEntry(e); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		b = appendString(b, e.Key)
		b = appendString(b, e.Field)
		b = binary.AppendVarint(b, e.Reg.Stamp.Wall)
		b = binary.AppendUvarint(b, uint64(e.Reg.Stamp.Logical))
		b = appendString(b, e.Reg.Stamp.Node)
		b = binary.AppendUvarint(b, uint64(len(e.Reg.Value)))
		b = append(b, e.Reg.Value...)
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader reads the wire format from b, failing rather than reading past
// its end.
type reader struct{ b []byte }

var errTruncated = errors.New("truncated")

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		if n == 0 {
			return 0, errTruncated
		}
		return 0, errors.New("varint overflows")
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) varint() (int64, error) {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		if n == 0 {
			return 0, errTruncated
		}
		return 0, errors.New("varint overflows")
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) bytes() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)) {
		return nil, errTruncated
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) string() (string, error) {
	b, err := r.bytes()
	return string(b), err
}

func (r *reader) uint64() (uint64, error) {
	if len(r.b) < 8 {
		return 0, errTruncated
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v, nil
}

// count reads an item count, at most max (if max > 0) and at most what the
// remaining bytes can hold at minSize bytes an item.
func (r *reader) count(max, minSize int) (int, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if max > 0 && n > uint64(max) {
		return 0, fmt.Errorf("%d items, more than %d", n, max)
	}
	if n > uint64(len(r.b)/minSize) {
		return 0, errTruncated
	}
	return int(n), nil
}

// minEntrySize is the fewest bytes an encoded entry takes: key (2), field
// (1), wall (1), logical (1), node (1), value (2).
const minEntrySize = 8

// entries reads a count and that many valid entries. Values are copied
// out of r.b.
func (r *reader) entries(max int) ([]Entry, error) {
	n, err := r.count(max, minEntrySize)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	entries := make([]Entry, n)
	for i := range entries {
		if err := r.entry(&entries[i]); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return entries, nil
}

// entry reads one valid entry into e, copying its value out of r.b.
func (r *reader) entry(e *Entry) error {
	var err error
	if e.Key, err = r.string(); err != nil {
		return err
	}
	if e.Field, err = r.string(); err != nil {
		return err
	}
	if e.Reg.Stamp.Wall, err = r.varint(); err != nil {
		return err
	}
	l, err := r.uvarint()
	if err != nil {
		return err
	}
	if l > math.MaxUint32 {
		return errors.New("logical clock overflows")
	}
	e.Reg.Stamp.Logical = uint32(l)
	if e.Reg.Stamp.Node, err = r.string(); err != nil {
		return err
	}
	v, err := r.bytes()
	if err != nil {
		return err
	}
	e.Reg.Value = bytes.Clone(v)
	return checkEntry(*e)
}
