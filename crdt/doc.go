// Package crdt is the replicated desired state every chorus peer holds: a
// state-based CRDT of objects made of last-writer-wins registers, merged with
// pure functions. The I/O around it (gossip, disk) is thin: Encode/Decode
// turn deltas, digests and key hashes into bytes, Save/Load write and read a
// snapshot, and the agent moves those bytes between peers.
//
// crdt does not know chorus' object types (it does not import api): it works
// on JSON documents, and the agent converts between api objects and JSON.
//
// # Objects and fields
//
// An object is identified by its key, "Kind/namespace/name", with an empty
// namespace for cluster-scoped kinds ("Namespace//prod"). Split cuts an
// object's JSON document into fields, each stored in its own register:
//
//   - every key of "spec" as "spec.<key>" (spec.replicas, spec.template,
//     spec.selector, spec.strategy, spec.ports, spec.type, ...);
//   - every key of "metadata" as "metadata.<key>" (metadata.labels,
//     metadata.annotations, metadata.uid, metadata.creationTimestamp), but
//     for the server-set metadata.name and metadata.namespace, which the key
//     implies, and metadata.resourceVersion and metadata.generation, which
//     the agent derives (the version is [State.Meta]);
//   - every other top-level key as itself ("apiVersion", "kind"), but for
//     "status", which is observed state and never replicated.
//
// Join rebuilds the document from the key and the fields. Because every
// field is its own register, concurrent writes to different fields both
// survive: `chorus scale` on one peer ([State.PutFields] of spec.replicas)
// and an apply of a new image on another (spec.template) merge into a
// deployment with both changes.
//
// A full write ([State.Put], an apply) replaces the whole object: a field
// the object has but the new write lacks is written as a register holding
// JSON null, and a null field is absent from the object ([State.Get] and
// Join leave it out). So removing spec.strategy from a manifest and applying
// it again removes spec.strategy everywhere, even on peers that wrote it
// concurrently with an older stamp. metadata.uid and
// metadata.creationTimestamp are creation-only: Put writes them only when it
// creates (or re-creates) the object, and never clears them on an update.
//
// # Registers and hybrid logical clocks
//
// A [Register] holds a JSON value and the [Stamp] of the write that set it.
// Merging two registers keeps the one with the greater stamp; with equal
// stamps (which a correct clock never issues twice for different values)
// the bytewise greater value wins, so that merge is commutative, associative
// and idempotent whatever the input, and every peer that has received the
// same set of writes, in any order and any number of times, holds the same
// state.
//
// Stamps come from a [Clock], a hybrid logical clock: the wall time in
// nanoseconds, a logical counter that orders events within the same wall
// time, and the node name as the final tie-break. A clock issues stamps
// strictly greater than every stamp it issued or observed, so a write made
// after a peer has seen another write (even from a peer whose wall clock is
// behind) wins over it: last writer wins in causal order, and in wall-clock
// order for concurrent writes. A remote stamp more than MaxDrift ahead of
// the local wall clock is not observed (Observe returns an error the agent
// counts), so one peer with a broken clock cannot drag every clock forward.
//
// # Existence and tombstones
//
// An object exists iff its existence register, the field named "", holds
// true. Every write sets it true; [State.Delete] sets it false. A delete
// therefore beats an older update and loses to a newer one, register by
// register: an update older than the delete that arrives later leaves the
// object deleted (its fields may change underneath, but nothing is visible
// while the existence register is false), and an update newer than the
// delete brings the object back with the fields it had. A re-create by Put
// after a delete clears every field the new document lacks, so the old
// object's fields do not come back.
//
// A deleted object is kept as a tombstone (its registers, existence false)
// so that peers which still hold the object learn that it was deleted: their
// registers are older than the tombstone and lose against it. [State.GC]
// drops tombstones whose newest stamp is older than a horizon
// (DefaultTombstoneHorizon, 7 days). That is safe for every peer that is
// offline for less than the horizon: when it comes back it still meets the
// tombstone (every peer that was up keeps it until the horizon passes), its
// stale registers lose, and no deleted object comes back. A peer that was
// offline longer may hold registers of an object whose tombstone is gone
// everywhere else, and would resurrect it. So a peer must not merge a state
// it last synchronised more than the horizon ago: it must discard that
// state and resync from its peers. [State.MaxStamp] is the newest write a
// state holds, a lower bound on when it last heard from the cluster; note
// that a quiet cluster's newest write can be old too, so the agent should
// discard a stale state only when a current peer is reachable to resync
// from, and prefer a recorded time of its last successful exchange when it
// has one. A tombstone that a peer GCs before another may be sent back to
// it once by anti-entropy; it is then as old as before and is dropped again
// at the next GC.
//
// # Anti-entropy
//
// Peers find what differs without sending what is the same. A [Digest] is 64
// bucket hashes: every key falls in the bucket fnv64a(key) mod 64, and a
// bucket's hash is the xor of a 64-bit hash of each of its registers (key,
// field, stamp and value). Equal states have equal digests (and different
// states different ones, but for hash collisions), so two peers in sync
// exchange 64*8 bytes and nothing else. The digest is kept up to date at
// every write, so computing one is free. An exchange between peers A and B
// goes:
//
//  1. A and B exchange digests; each computes DiffDigest(mine, theirs), the
//     buckets that differ (the same list on both sides). If none, done.
//  2. They exchange BucketKeys(buckets): a hash per key in those buckets,
//     tombstones included.
//  3. Each computes need := DiffKeys(mine, theirs), the keys the other has
//     and it lacks or holds differently, and asks for them; the other
//     answers with DeltaFor(need), every register of those keys, which the
//     asker merges. (Equivalently, each pushes DeltaFor(DiffKeys(theirs,
//     mine)) to the other.)
//
// After both merges the two states are equal. Deltas from local writes
// ([State.Put], [State.Delete], and the changes [State.Merge] reports) can
// also be pushed to peers directly, for speed; anti-entropy repairs whatever
// such pushes lose.
//
// # Concurrency
//
// A State is a plain value, not safe for concurrent use: the agent guards
// it with its own lock. A Clock is safe for concurrent use.
package crdt
