// Package placement decides which peer runs each pod replica. There is no
// scheduler in chorus: every peer calls [Assign] with the same alive members
// and the same desired replicas and gets the same answer, because Assign is
// a pure, deterministic function of the values it is given (not of their
// order, nor of map iteration order). The package imports nothing from
// chorus; the agent turns members into [Node] values and pods into
// [Replica] values.
//
// # Scores
//
// Placement is rendezvous (highest-random-weight) hashing. Every pair of a
// replica r and a node n has a fixed score
//
//	σ(r, n) = (λ(slot(r), n), ρ(r, n))   compared lexicographically,
//
// ties (probability 2⁻⁶⁴) going to the smaller node name, where slot(r) is
// the top 16 bits of a hash of r.Key, or of r.Affinity when it is set
// (65,536 slots), λ is an 8-bit hash of
// the slot and the node name (the "level") and ρ a 64-bit hash of that key
// and the node name. The hashes are FNV-1a with a MurmurHash3 finalizer,
// fixed in this package because peers running different builds must agree.
// A replica ranks all nodes by σ. Since σ(r, n) depends on r and n alone,
// the order of two nodes for a replica never depends on which other nodes
// exist, so nodes coming and going only disturb the replicas that
// preferred them. λ and ρ are uniform, so a replica's top node is uniform
// over the nodes.
//
// Why two levels: scoring every node for every replica would take R·N
// hashes (5·10⁹ for a million replicas over 5,000 nodes). Instead, the
// first time a slot is used with a given node selector, one pass over the
// matching nodes keeps, as that slot's candidate list, every node whose
// level is at least a threshold picked so that about 48 qualify. Every node
// outside the list has a lower level, so it scores below every node in it.
// A replica then computes ρ only for the nodes of the highest level in its
// list (about N/256 + 1 of them) and goes down the list as needed; only if
// no node in the list will do does it scan all the nodes. The outcome is
// exactly that of walking every node by σ, which a test checks against a
// direct implementation. The price is that replicas sharing a slot share λ:
// they have the same top node unless several nodes tie at the top level
// (likely only when N is well above 256). With R replicas, the number of
// them whose top node is a given node is therefore binomial with a variance
// inflated by a factor of at most about 1 + R/65,536.
//
// # Algorithm
//
// Nodes are taken in name order; of several nodes with one name, or
// several replicas with one key, one is kept (the least by a fixed
// comparison of all fields). A node is schedulable if not cordoned; cordoned
// nodes get no replica at all, pinned ones included (kubelet-style
// DaemonSet tolerations are not modelled: cordoning a peer empties it).
// The static nodes of a replica are the schedulable nodes matching its
// NodeSelector (and its Pin, if set). Let
//
//	U = number of schedulable nodes,
//	R = number of replicas with at least one static node,
//	ε = Options.LoadFactor (0.25 if not positive),
//	B = ⌈(1+ε)·R/U⌉ (the load bound; IEEE-754 double arithmetic as written,
//	    at least 1; unbounded for ε = +Inf).
//
// Replicas are processed one at a time in a fixed order: fewest static nodes
// first (pinned replicas, then narrow selectors: the most constrained choose
// first), then by Ordinal (replica i of every deployment before replica
// i+1 of any), then by the hash of Affinity or Key, then by key. A node
// "fits" a replica if it is
// one of its static nodes and has the free CPU and memory for its requests
// (a node with a non-positive allocatable amount is unlimited in it); it is
// "usable" if it fits and holds fewer than B replicas. Each replica takes
// the best-scoring usable node of the first non-empty tier:
//
//  1. a node holding no replica of its Group, and, if SpreadKey is set, in
//     a domain (value of the SpreadKey label) holding no replica of it; a
//     node without the label is a domain of its own;
//  2. a node holding no replica of its Group (topology spread relaxed);
//  3. any usable node (spread relaxed).
//
// A replica with an empty Group has no spread constraint. If no node is
// usable but some fit (all of them hold B or more), the replica overflows to
// the least loaded node that fits it, the best-scoring among equals: the
// bound is relaxed rather than leave a replica pending that can run. Spread
// and the bound are soft; cordon, selector, pin and capacity never are. A
// pinned replica goes to its node if it fits (overflowing if need be, as it
// is its only node). A replica that fits no node is pending, with a
// kube-scheduler style reason computed from the final state: for each node
// the first failing check among pin ("node(s) didn't match pinned node
// name"), cordon ("node(s) were unschedulable"), selector ("node(s) didn't
// match node selector") and resources ("Insufficient cpu", "Insufficient
// memory", both if both), counted and sorted by count, e.g. "0/5 nodes are
// available: 3 node(s) didn't match node selector, 2 Insufficient cpu".
//
// # Guarantees
//
// Each is checked by a property test (pgregory.net/rapid) over random
// nodes, labels, cordons, capacities, groups, selectors, spread keys and
// pins.
//
//   - Determinism: any permutation of nodes and replicas, and any label map
//     construction order, gives the same [Result].
//   - Hard constraints: no replica on a cordoned node, a node failing its
//     selector, or another node than its pin; no node's requests above its
//     allocatable; every replica in exactly one of Assign and Pending; a
//     pending replica fits no node even in the final state.
//   - Load bound: a replica goes to a node already holding B or more only
//     when every node that fits it does, and then to the least loaded. So
//     when no replica has a selector, a pin or requests, no node ever holds
//     more than B replicas; and in general every node n holding more than B
//     holds a replica r such that every other node that r would still fit
//     holds at least max(B, load(n)−1) replicas.
//   - Spread: take a group whose replicas share selector, requests and
//     spread key and are not pinned, and let E be the nodes that, in the
//     final state, would take one more replica of it below the bound. If E
//     has at least as many nodes as the group has replicas, the replicas are
//     on distinct nodes; if E spans at least as many SpreadKey domains, they
//     are in distinct domains. (A replica drops to tier 3 only when every
//     usable node already holds a replica of its group, to tier 2 only when
//     every usable node is in a domain holding one; nodes only get fuller,
//     so E lies within those nodes.)
//   - Minimal disruption without bound pressure: when replicas do not
//     interact (no groups, no capacities, no node reaching B: ε = +Inf, or
//     in practice ε = 10 with R ≥ 10·N), every replica is on its
//     top-scoring static node. Removing
//     a node then moves exactly the replicas it held, and adding one moves
//     exactly the replicas whose top node it is, about R/(N+1): for 10,000
//     replicas over 20 nodes plus one, 490 moved (10,000/21 ≈ 476 ± 21).
//   - With the default bound, a departure also moves some replicas the
//     departed node did not hold: a displaced replica fills a node that then
//     turns a later replica away, B changes with U, and replicas of a group
//     compete for distinct nodes. Over 20,000 random departures (2 to 151
//     nodes, 1 to 100 replicas per node, replicas alone or in groups of up
//     to N/10 with zone spread) the mean was 0.10·held (alone) and 0.22·held
//     (groups) extra moves, the worst moved = 2·held + 16; the tests assert
//     moved ≤ 2·held + 20 on every departure of a fixed ensemble and bound
//     the mean. In the 100-node benchmark cluster (deployments of 1 to 20
//     replicas, a tenth with a selector) a departure moves 1.25% of the
//     replicas against the ideal 1%. Groups with about as many replicas as
//     there are nodes fare worse, as their replicas chain-displace each
//     other: with 10 nodes and groups of 10, a departure moved on average
//     about three times what the node held.
//   - Growth (scale up or down): take two sets of replicas over the same nodes
//     such that in every group one set's replicas are the other's of lowest
//     Ordinal (a deployment scaled from n to m replicas: ordinals 0 to n-1 and
//     0 to m-1), the replicas of a group sharing NodeSelector and Pin; replicas
//     in no group may differ freely. If in both placements the load bound and
//     capacity change nothing (Assign gives what it gives with ε = +Inf on
//     nodes of unlimited capacity; for instance, no node has limited capacity
//     and every node ends below B), every replica the two sets share is on the
//     same node in both. Why: without bound and capacity, replicas of different
//     groups do not interact, and a replica's node depends only on the replicas
//     of its group placed before it, those of lower Ordinal, the same in both
//     sets. So a deployment of 3 replicas on 3 nodes scaled to 5 (B is 2 then
//     3, the loads one each, then two, two and one) moves none of the 3, and a
//     deployment alone of k ≤ U replicas without requests scaled to any size
//     moves none (the agent's test). Under pressure a scale can move others:
//     when B steps up (R crosses a multiple of U/(1+ε)) replicas that a full
//     node turned away may now stay there, and the replicas added in ordinal
//     i's turn can fill a node before another group's ordinal i+1 comes.
//     Measured (a test keeps the figures) on 2,000 small clusters of 2 to N
//     nodes without capacities, 1 to 6 groups of 1 to 2N replicas spread over
//     nodes and zones, one group scaled up by 1 to 5, the default bound: a
//     replica that stays moved in 10% of the scales for N = 5, 16% for N = 10,
//     22% for N = 30, B having stepped up in 94%, 85% and 65% of those; with
//     the order by hash alone, as before ordinals, in 60%, 72% and 77%. In the
//     100-node benchmark cluster (9,990 replicas, capacities at 55%) a scale-up
//     by one moved another replica in 7 of 100 scales and a scale-down by one
//     in 8 (by hash: 2 and 25); at R = 10,000, where one more replica makes B
//     126, each scale-up by one moved about 9 others either way. (The ordinal
//     order changed where deployments' replicas go: peers of builds before and
//     after it disagree, a replica running on two peers or on none, until all
//     run one build; chorus has no placement version to negotiate.)
//   - Joins and spread: a node joining, without pressure in either
//     placement, moves a replica in no group (or alone in its group) only
//     onto itself (see minimal disruption above). A group's replicas can
//     also shift between old nodes: when one of them moves to the newcomer,
//     the node it leaves is free for a later ordinal that preferred it, and
//     so on (a vacancy chain); a newcomer in a new SpreadKey domain, or a
//     smaller B, can start chains too. It is the price of spread. Rules that
//     give each replica the top of its own ranking of the nodes move
//     replicas only onto a newcomer and only off a leaver, but cannot keep
//     3 replicas on distinct nodes once there are 5 nodes or more: 3
//     rankings with distinct tops on every 3 nodes exist only up to 4 nodes
//     (the order dimension of the complete graph K_n exceeds 3 from n = 5).
//     Measured (a test keeps the figures) with the default bound, one
//     deployment alone, 400 names each: 5 replicas over 3 nodes plus one, 1.24 replicas per join moved
//     to the newcomer and 0.79 between old nodes (59% of the joins had such
//     a move); 3 replicas, 0.77 and 0.30; 10 replicas over 10 nodes plus
//     one, 0.91 and 1.15. The agent makes every such move before it breaks.
//
// # Cost
//
// O(R log R) to sort the replicas; one pass over the matching nodes per
// (slot, selector) pair in use, at most 65,536·N level hashes per distinct
// selector; then per replica the ρ of the top level of its candidate list,
// about N/256 + 1 hashes. A replica scans all its nodes only when its
// candidate list has no usable node of the first tier: when most nodes are
// full or at the bound, or its group has nearly run out of nodes to spread
// over; requests known to fit nowhere are remembered so that further
// replicas as large are declared pending at once. On one core: 100,000
// replicas over 1,000 nodes in about 0.3 s, 1,000,000 over 5,000 in about 3
// s (see the benchmarks).
package placement
