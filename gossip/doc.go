// Package gossip is chorus's membership plane and data plane transport. It
// knows nothing about chorus objects: it tells who is in the cluster and moves
// opaque bytes between members. The agent wires it to the crdt package.
//
// # Membership plane
//
// Membership is serf on top of memberlist (SWIM: UDP probes, indirect probes,
// TCP fallback, suspicion with refutation, gossip and periodic TCP push/pull).
// A node is started with [Start] and is known by its unique Config.Name. With
// Config.Key set every memberlist packet and stream is AES-GCM encrypted and
// authenticated; a node without the key (or with another key) cannot join
// and learns nothing: its packets are dropped (and counted in
// [Stats].GossipRejected) and it cannot decrypt ours. Config.Profile picks the
// failure-detection timings (see [ProfileLocal], [ProfileLAN], [ProfileWAN]).
// With Config.DataDir set, serf keeps a snapshot there so that a restarted
// node rejoins the peers it knew without a seed.
//
// # Data plane
//
// Each node also runs a libp2p host (TCP, Noise, yamux) whose Ed25519 identity
// is kept in DataDir/p2p.key. The host's peer id and address are published as
// the serf tags [TagPeerID] and [TagP2PAddr], so members find each other's data
// plane through membership and connect automatically. With Config.Discover,
// libp2p mDNS (service "chorus") finds hosts on the local network and the
// "/chorus/hello/2" protocol turns such a discovery into a serf join.
//
// Deltas are broadcast with GossipSub on topic "chorus/deltas/1" ([Node.Publish],
// [Node.Deltas]); anti-entropy uses one-request-one-response streams on
// "/chorus/sync/1" ([Node.HandleSync], [Node.Sync]). Payloads are at most
// [MaxMessageSize] bytes each way.
//
// # Who is served on the data plane
//
// The data plane only serves alive serf members, so a peer refused by the
// membership plane learns nothing here either:
//
//   - With Config.Key set, a connection gater refuses connections of peer ids
//     that no alive member advertises (without Config.Discover): a peer
//     without the key cannot even complete a connection. It is not a libp2p
//     private network, whose single pre-shared key could not change without a
//     pause; the gossip keys change without one (keys.go).
//   - "/chorus/sync/1": the stream is reset unless the remote peer id is the
//     [TagPeerID] tag of a member whose status is Alive.
//   - GossipSub (the floodsub protocol is off): mesh links are only formed
//     with alive members; a non-member gets a peer score below the publish
//     and gossip thresholds, so no delta, IHAVE or IWANT answer is sent to
//     it; and a validator rejects any message whose author or forwarder is
//     not an alive member, or whose payload exceeds [MaxMessageSize].
//   - "/chorus/hello/2": with a key, each side proves it holds a gossip key of
//     the cluster (an HMAC of both peer ids and its address), or is refused.
//     An alive member gets our serf address. A peer that is
//     not (yet) a member, which is the normal case for an mDNS discovery, gets
//     nothing: it sends its own serf address, and we serf-join that address
//     (only if its IP is the one the stream comes from, or both are loopback).
//     That join succeeds only if the peer holds the gossip key, after which
//     the peer is a member and the reply carries our address.
//
// Connections to peers that are not alive members are closed once they are
// 30 s old. Without Config.Key the cluster is open: anyone who reaches the
// serf port can join (and with Discover, keyless nodes on one network merge),
// so the checks above then only keep non-members out until they join.
//
// # Resource bounds
//
// Dials, streams and handlers have deadlines; inbound sync and hello streams
// are limited in number; every channel handed out is bounded and, when a
// consumer is too slow, items are dropped and counted in [Stats] rather than
// blocking the planes (consumers resynchronise with [Node.Members] and
// anti-entropy).
package gossip
