package placement

// The hash functions below are part of the placement contract: every peer
// must compute bit-identical values, so they are fixed here rather than taken
// from a library whose output could change between versions. They use only
// integer arithmetic, which Go defines exactly on every platform.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211

	seedKey   = 0x243f6a8885a308d3 // replica key hash
	seedNode  = 0x13198a2e03707344 // node name hash
	seedScore = 0xa4093822299f31d0 // per-replica score key
	seedSlot  = 0x082efa98ec4e6c89 // per-slot level key

	// slotBits is the number of bits of a replica's key hash that select its
	// slot; replicas of one slot share the coarse level of every node.
	slotBits = 16
	// minCands is the least number of nodes the candidate list of a slot
	// holds (whole levels are taken, so it usually holds a few more).
	minCands = 32
)

// hashString is FNV-1a over the bytes of s, started from a seeded offset and
// finished with a strong 64-bit mixer (FNV alone mixes its last bytes poorly).
func hashString(s string, seed uint64) uint64 {
	h := uint64(fnvOffset) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix(h ^ uint64(len(s)))
}

// mix is the MurmurHash3 64-bit finalizer: a bijection with full avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// keyHashes derives, from a replica key, the hash that orders replicas and
// selects the slot, the slot, and the per-replica score key.
func keyHashes(key string) (kh uint64, slot uint32, rk uint64) {
	kh = hashString(key, seedKey)
	return kh, uint32(kh >> (64 - slotBits)), mix(kh ^ seedScore)
}

// nodeHash is the hash of a node name that every score of the node uses.
func nodeHash(name string) uint64 { return hashString(name, seedNode) }

// slotKey is the key of a slot for the level function.
func slotKey(slot uint32) uint64 { return mix(uint64(slot)*0x9e3779b97f4a7c15 ^ seedSlot) }

// levelOf is the coarse, 8-bit part of the score of a node (with hash nh)
// for every replica of the slot whose key is sk. It is the top byte of a
// second, independent mixer (constants of "moremur"); the mixer's final
// xor-shift does not change the top byte and is left out.
func levelOf(sk, nh uint64) uint8 {
	x := sk ^ nh
	x ^= x >> 27
	x *= 0x3c79ac492ba7b653
	x ^= x >> 33
	x *= 0x1c69b3f74ac4ae35
	return uint8(x >> 56)
}

// rscore is the fine, per-replica part of the score of a node (hash nh) for
// the replica whose score key is rk.
func rscore(rk, nh uint64) uint64 { return mix(rk ^ nh) }

// Leader returns the name, among names, that leads key: the one whose
// hash with key scores highest (rendezvous hashing). Every peer that sees
// the same names picks the same leader, and a name that leaves moves only
// the keys it led. It returns "" when names is empty. Controllers that
// must act once per object cluster-wide (a Job's pods, a CronJob's runs)
// act on the peer that leads the object's key among the alive peers.
func Leader(key string, names []string) string {
	kh := hashString(key, seedKey)
	best, bestScore := "", uint64(0)
	for _, n := range names {
		s := mix(kh ^ nodeHash(n))
		if best == "" || s > bestScore || s == bestScore && n < best {
			best, bestScore = n, s
		}
	}
	return best
}
