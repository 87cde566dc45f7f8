package trust

import (
	"fmt"
	"slices"
	"time"
)

// Rotation of the cluster secret, without downtime.
//
// A rotation moves every peer from the cluster secret it has (old) to a new
// one. It is a replicated record (the agent keeps it in the CRDT state): the
// new secret, sealed under the old secrets-at-rest key, and each peer's
// progress, a register only that peer writes. Each peer goes through the
// phases below, entering one only once every alive member has reached the
// previous one, so that at every moment every pair of alive peers shares a
// key they both accept for what one sends and the other receives:
//
//   - Installed: the peer accepts both secrets (both gossip keys, both CAs,
//     both API tokens, opens Secrets sealed under either at-rest key), and
//     still sends and presents the old ones.
//   - Using: the peer sends under the new gossip key, presents a certificate
//     of the new CA, seals new Secrets under the new at-rest key and keeps
//     the new join token on disk; it still accepts the old ones, as peers
//     not yet Using still send them.
//   - Retired: the peer accepts only the new secret. Before any peer
//     retires, one peer (the resealer) seals every stored Secret anew under
//     the new at-rest key, so that nothing sealed under the old one is left.
//
// Decide is the whole decision: a pure function of the record, the alive
// members and what the peer has applied; the agent only applies it.

// Phase is a peer's progress in a rotation.
type Phase int

// Phases, in order.
const (
	PhaseNone Phase = iota
	PhaseInstalled
	PhaseUsing
	PhaseRetired
)

func (p Phase) String() string {
	switch p {
	case PhaseNone:
		return "pending"
	case PhaseInstalled:
		return "installed"
	case PhaseUsing:
		return "using"
	case PhaseRetired:
		return "retired"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Valid reports whether p is a known phase.
func (p Phase) Valid() bool { return p >= PhaseNone && p <= PhaseRetired }

// Rotation is what a peer knows of a rotation: the replicated record read
// from its replica of the state.
type Rotation struct {
	// ID names the rotation: the cluster id of the new secret.
	ID string
	// From is the cluster id of the old secret.
	From string
	// Started is when the rotation was asked for.
	Started time.Time
	// Progress is each peer's phase in this rotation (absent: PhaseNone).
	Progress map[string]Phase
	// Resealed is set once a peer sealed every stored Secret anew under
	// the new key.
	Resealed bool
	// Completed is when a peer saw every alive peer retired (zero
	// before); the status's Elapsed stops there.
	Completed time.Time
}

// PhaseDwell is the least time a peer stays in the installed and using
// phases, so that a client that read the peer's kubeconfig a moment before
// the peer rewrote it (both CAs at installed, the new token at using) is
// still served with what it read: the peer presents the new certificate
// and refuses the old token only that long after.
const PhaseDwell = 2 * time.Second

// Local is what a peer itself has applied of a rotation.
type Local struct {
	// Applied is the phase it applied (in memory; after a restart, what
	// its data dir holds).
	Applied Phase
	// Since is when it applied it (after a restart: the start).
	Since time.Time
}

// Decision is what a peer does next in a rotation.
type Decision struct {
	// Target is the phase the peer must have applied, and recorded as its
	// progress. It is never below what the peer recorded or applied.
	Target Phase
	// Reseal: this peer seals every stored Secret anew under the new key,
	// then records Resealed (only one peer at a time is chosen).
	Reseal bool
	// WaitingFor lists the alive members whose progress holds this peer
	// back (sorted), empty when it may move on or is done.
	WaitingFor []string
	// NotBefore, when set, is when the peer may move on (PhaseDwell).
	NotBefore time.Time
}

// Resealer returns the alive member that reseals the Secrets: the first
// name in order.
func Resealer(alive []string) string {
	if len(alive) == 0 {
		return ""
	}
	return slices.Min(alive)
}

// Decide returns what peer self does next in rotation r at now, given the
// names of the alive members (self among them or not: it is counted as
// alive) and what it applied. Decide moves self by at most one phase per
// call beyond what it recorded or applied, into a phase only when every
// alive member recorded the previous one, and out of installed or using
// only PhaseDwell after it applied it.
func Decide(r Rotation, alive []string, self string, local Local, now time.Time) Decision {
	members := slices.Clone(alive)
	if !slices.Contains(members, self) {
		members = append(members, self)
	}
	slices.Sort(members)
	recorded := r.Progress[self]
	cur := max(recorded, local.Applied)
	d := Decision{Target: cur}
	if local.Applied < cur {
		// A restart behind its record: apply what it recorded first.
		return d
	}
	dwelt := !now.Before(local.Since.Add(PhaseDwell))
	if !dwelt {
		d.NotBefore = local.Since.Add(PhaseDwell)
	}
	if cur == PhaseRetired {
		return d
	}
	// Every alive member but self must have recorded at least cur before
	// self moves past it (self has applied cur).
	for _, m := range members {
		if m != self && r.Progress[m] < cur {
			d.WaitingFor = append(d.WaitingFor, m)
		}
	}
	switch cur {
	case PhaseNone:
		d.Target, d.WaitingFor = PhaseInstalled, nil // installing breaks nothing
	case PhaseInstalled:
		if len(d.WaitingFor) == 0 && dwelt {
			d.Target = PhaseUsing
		}
	case PhaseUsing:
		if len(d.WaitingFor) > 0 {
			break
		}
		if r.Resealed {
			if dwelt {
				d.Target = PhaseRetired
			}
		} else if Resealer(members) == self {
			d.Reseal = true
		} else {
			d.WaitingFor = []string{Resealer(members)}
		}
	}
	return d
}

// Status summarises a rotation for a user.
type Status struct {
	ID, From string
	// Phase is the lowest phase of the alive members: the cluster's.
	Phase Phase
	// Done counts the alive members that retired the old secret; Total
	// counts the alive members.
	Done, Total int
	// Complete: every alive member retired the old secret.
	Complete bool
	// Elapsed is the time since the rotation started, at now.
	Elapsed time.Duration
	// Peers is each alive member's phase.
	Peers map[string]Phase
}

// StatusOf returns the status of rotation r among the alive members, at
// now.
func StatusOf(r Rotation, alive []string, now time.Time) Status {
	end := now
	if !r.Completed.IsZero() {
		end = r.Completed
	}
	st := Status{ID: r.ID, From: r.From, Phase: PhaseRetired, Total: len(alive), Peers: map[string]Phase{}, Elapsed: max(0, end.Sub(r.Started))}
	for _, m := range alive {
		p := r.Progress[m]
		st.Peers[m] = p
		st.Phase = min(st.Phase, p)
		if p == PhaseRetired {
			st.Done++
		}
	}
	if len(alive) == 0 {
		st.Phase = PhaseNone
	}
	st.Complete = len(alive) > 0 && st.Done == len(alive)
	return st
}
