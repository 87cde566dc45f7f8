package crdt

import "sort"

// Buckets is the number of buckets in a Digest.
const Buckets = 64

// Digest summarises a state for anti-entropy: for each bucket, the xor of
// the hashes of the registers of the keys in it (a key is in bucket
// fnv64a(key) mod Buckets). Equal states
// have equal digests. Digests compare with ==.
type Digest [Buckets]uint64

// Digest returns the state's digest. It is maintained at every write, so
// this costs nothing.
func (s *State) Digest() Digest { return s.buckets }

// bucketOf returns the digest bucket of key: fnv64a(key) mod Buckets.
func bucketOf(key string) int { return int(fnvString(fnvOffset, key) % Buckets) }

// DiffDigest returns, in increasing order, the buckets in which a and b
// differ.
func DiffDigest(a, b Digest) []int {
	var out []int
	for i := range a {
		if a[i] != b[i] {
			out = append(out, i)
		}
	}
	return out
}

// BucketKeys returns a hash of every key in the given buckets, tombstones
// included: the xor of the hashes of its registers. Bucket numbers out of
// range are ignored.
func (s *State) BucketKeys(buckets []int) map[string]uint64 {
	var want [Buckets]bool
	for _, b := range buckets {
		if b >= 0 && b < Buckets {
			want[b] = true
		}
	}
	out := map[string]uint64{}
	for k, o := range s.objs {
		if want[o.bucket] {
			out[k] = o.h
		}
	}
	return out
}

// DiffKeys returns, sorted, the keys that theirs has and mine lacks or
// holds with a different hash: what to ask the other peer for. The keys
// mine has and theirs lacks are DiffKeys(theirs, mine).
func DiffKeys(mine, theirs map[string]uint64) (iNeedOrDiffer []string) {
	for k, h := range theirs {
		if m, ok := mine[k]; !ok || m != h {
			iNeedOrDiffer = append(iNeedOrDiffer, k)
		}
	}
	sort.Strings(iNeedOrDiffer)
	return iNeedOrDiffer
}

// DeltaFor returns every register (tombstones included) of the given keys
// that the state holds, sorted by key and field. Its values share memory
// with s.
func (s *State) DeltaFor(keys []string) Delta {
	ks := append([]string(nil), keys...)
	sort.Strings(ks)
	j := 0
	for i, k := range ks { // drop duplicates
		if i == 0 || k != ks[j-1] {
			ks[j] = k
			j++
		}
	}
	return s.entries(ks[:j])
}

// FNV-1a, 64 bits.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func fnvUint64(h, v uint64) uint64 {
	for i := 0; i < 8; i++ {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

// regHash hashes a register with its key and field: key, field, stamp and
// value, each length-prefixed so that no two registers hash the same input,
// then mixed so that xors of hashes do not cancel structurally.
func regHash(key, field string, r Register) uint64 {
	h := uint64(fnvOffset)
	h = fnvUint64(h, uint64(len(key)))
	h = fnvString(h, key)
	h = fnvUint64(h, uint64(len(field)))
	h = fnvString(h, field)
	h = fnvUint64(h, uint64(r.Stamp.Wall))
	h = fnvUint64(h, uint64(r.Stamp.Logical))
	h = fnvUint64(h, uint64(len(r.Stamp.Node)))
	h = fnvString(h, r.Stamp.Node)
	h = fnvUint64(h, uint64(len(r.Value)))
	h = fnvBytes(h, r.Value)
	return mix64(h)
}

// mix64 is the splitmix64 finalizer.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
