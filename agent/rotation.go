package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/state"
	"github.com/chorus-sh/chorus/trust"
)

// Rotation of the cluster secret without downtime: the decision is
// trust.Decide's; this file keeps the replicated record and applies what
// Decide says.
//
// The record is one CRDT object, SecretRotation//cluster-secret:
//   - "spec": the rotation (its id, the old secret's cluster id, when and
//     through which peer it was asked for, and the new secret sealed under
//     the old secrets-at-rest key: never in clear, in the state, on disk or
//     between peers);
//   - "progress.<peer>": each peer's phase in it, written by that peer only;
//   - "resealed": the id of the rotation whose Secrets were sealed anew.
//
// Progress and resealed name their rotation, so that the registers of an
// earlier rotation mean nothing in the next one.

const (
	kindSecretRotation     = "SecretRotation"
	fieldRotationSpec      = "spec"
	fieldRotationResealed  = "resealed"
	fieldRotationCompleted = "completed" // rotationCompleted
	rotationProgressPrefix = "progress."
	// rotationEvery paces the rotation loop when nothing changes.
	rotationEvery = 500 * time.Millisecond
)

func rotationKey() string { return kindSecretRotation + "//cluster-secret" }

// rotationAD binds the sealed new secret to its record and rotation.
func rotationAD(id string) []byte { return []byte(rotationKey() + "\x00secret\x00" + id) }

// rotationSpec is the "spec" register of the record.
type rotationSpec struct {
	ID      string    `json:"id"`
	From    string    `json:"from"`
	Started time.Time `json:"started"`
	By      string    `json:"by"`
	Secret  string    `json:"secret"` // base64 of the new secret sealed under From's at-rest key
}

type rotationProgress struct {
	ID    string      `json:"id"`
	Phase trust.Phase `json:"phase"`
}

// parseRotation reads the record as stored. Values that do not decode
// are ignored (a record from a faulty peer cannot stop this one).
func parseRotation(fields map[string]json.RawMessage) (rotationSpec, trust.Rotation, bool) {
	var spec rotationSpec
	if err := json.Unmarshal(fields[fieldRotationSpec], &spec); err != nil || spec.ID == "" || spec.From == "" {
		return spec, trust.Rotation{}, false
	}
	r := trust.Rotation{ID: spec.ID, From: spec.From, Started: spec.Started, Progress: map[string]trust.Phase{}}
	var resealed string
	r.Resealed = json.Unmarshal(fields[fieldRotationResealed], &resealed) == nil && resealed == spec.ID
	var done rotationCompleted
	if json.Unmarshal(fields[fieldRotationCompleted], &done) == nil && done.ID == spec.ID {
		r.Completed = done.At
	}
	for f, v := range fields {
		peer, ok := strings.CutPrefix(f, rotationProgressPrefix)
		if !ok {
			continue
		}
		var p rotationProgress
		if json.Unmarshal(v, &p) == nil && p.ID == spec.ID && p.Phase.Valid() {
			r.Progress[peer] = p.Phase
		}
	}
	return spec, r, true
}

// rotationCompleted records when a rotation was first seen complete: any
// peer may write it, the last of a few nearly equal times wins.
type rotationCompleted struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// rotationState is what this peer applied of the current rotation; only
// the rotation loop uses it.
type rotationState struct {
	id      string
	applied trust.Phase
	since   time.Time // when applied was
	warned  string    // the id of a record of another cluster, warned about once
}

// rotationStatus is the status of a rotation, as the chorus.sh/v1
// SecretRotation object carries it.
type rotationStatus = api.SecretRotationStatus

func (a *Agent) rotationStatusOf(spec rotationSpec, r trust.Rotation, now time.Time) rotationStatus {
	st := trust.StatusOf(r, a.aliveMembers(), now)
	out := rotationStatus{ID: spec.ID, From: spec.From, Started: spec.Started, By: spec.By, Phase: st.Phase.String(),
		Done: st.Done, Total: st.Total, Complete: st.Complete, Resealed: r.Resealed, Peers: map[string]string{},
		Elapsed: st.Elapsed.Round(100 * time.Millisecond).String()}
	for p, ph := range st.Peers {
		out.Peers[p] = ph.String()
	}
	return out
}

// errNoRotation: no rotation was ever asked for.
var errNoRotation = &statusError{code: http.StatusNotFound, reason: "NotFound", msg: "the cluster secret was never rotated"}

// rotationStatus returns the status of the last rotation.
func (a *Agent) rotationStatus(now time.Time) (rotationStatus, error) {
	spec, r, ok := parseRotation(a.store.RawFields(rotationKey()))
	if !ok {
		return rotationStatus{}, errNoRotation
	}
	return a.rotationStatusOf(spec, r, now), nil
}

// startRotation asks the cluster to move to a new secret: it draws the
// secret, seals it under the at-rest key in use and writes the record;
// every peer's rotation loop does the rest. A rotation while another is
// under way is refused.
func (a *Agent) startRotation(now time.Time) (rotationStatus, error) {
	if a.trust == nil {
		return rotationStatus{}, &statusError{code: http.StatusBadRequest, reason: "BadRequest",
			msg: "this cluster runs --insecure: it has no cluster secret to rotate"}
	}
	cur, other := a.trust.secrets()
	if spec, r, ok := parseRotation(a.store.RawFields(rotationKey())); ok {
		if st := a.rotationStatusOf(spec, r, now); !st.Complete || other != nil {
			return st, &statusError{code: http.StatusConflict, reason: "Conflict",
				msg: fmt.Sprintf("a rotation of the cluster secret is under way (to %s, started %s ago through %s: %s, %d of %d peers done): wait for it to end (chorus cluster rotate-secret --status)",
					spec.ID, st.Elapsed, spec.By, st.Phase, st.Done, st.Total)}
		}
	} else if other != nil {
		return rotationStatus{}, &statusError{code: http.StatusConflict, reason: "Conflict",
			msg: "this peer still holds two cluster secrets (a rotation did not end): wait for it to end"}
	}
	sealer := a.sealer.Load()
	if sealer == nil {
		return rotationStatus{}, errors.New("no secrets-at-rest key to seal the new secret under")
	}
	next, err := trust.NewSecret()
	if err != nil {
		return rotationStatus{}, err
	}
	spec := rotationSpec{ID: next.ClusterID(), From: cur.ClusterID(), Started: now.UTC(), By: a.cfg.Name,
		Secret: base64.StdEncoding.EncodeToString(sealer.Seal(next[:], rotationAD(next.ClusterID())))}
	b, err := json.Marshal(spec)
	if err != nil {
		return rotationStatus{}, err
	}
	if err := a.store.WriteFields(rotationKey(), map[string]json.RawMessage{fieldRotationSpec: b}); err != nil {
		return rotationStatus{}, fmt.Errorf("record the rotation: %w", err)
	}
	a.log.Info("rotation of the cluster secret asked for", "from", spec.From, "to", spec.ID)
	_, r, _ := parseRotation(a.store.RawFields(rotationKey()))
	return a.rotationStatusOf(spec, r, now), nil
}

// serveRotateSecret serves POST /apis/chorus.sh/v1/secretrotations: start
// a rotation; 201 with the SecretRotation, 409 while one is under way.
func (a *Agent) serveRotateSecret(w http.ResponseWriter, r *http.Request) {
	st, err := a.startRotation(time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.NewSecretRotation(st))
}

// rotationObjects lists the SecretRotation object (none before the first
// rotation).
func (a *Agent) rotationObjects() []api.SecretRotation {
	st, err := a.rotationStatus(time.Now())
	if err != nil {
		return nil
	}
	return []api.SecretRotation{api.NewSecretRotation(st)}
}

// rotationLoop applies the rotation record whenever the state changes, and
// every rotationEvery (membership changes too).
func (a *Agent) rotationLoop(ctx context.Context) {
	if a.trust == nil {
		return
	}
	t := time.NewTicker(rotationEvery)
	defer t.Stop()
	for {
		changed := a.store.Changed()
		a.safeRotationStep(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-changed: // a rotation asked here is a change too
		case <-t.C:
		}
	}
}

func (a *Agent) safeRotationStep(now time.Time) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("rotation step panic", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	if err := a.rotationStep(now); err != nil {
		a.log.Error("rotation of the cluster secret", "err", err)
	}
}

// rotationStep does what trust.Decide says this peer does next.
func (a *Agent) rotationStep(now time.Time) error {
	spec, r, ok := parseRotation(a.store.RawFields(rotationKey()))
	if !ok {
		return nil
	}
	cur, other := a.trust.secrets()
	var oldS *trust.Secret
	var newS trust.Secret
	initial := trust.PhaseNone
	switch {
	case spec.ID == cur.ClusterID():
		// Using or done; or a peer that joined with the new token.
		newS, oldS = cur, other
		initial = trust.PhaseRetired
		if other != nil {
			initial = trust.PhaseUsing
		}
	case spec.From == cur.ClusterID():
		oldS = &cur
		if other != nil && other.ClusterID() == spec.ID {
			newS, initial = *other, trust.PhaseInstalled
		} else {
			s, err := a.openRotationSecret(spec)
			if err != nil {
				return err
			}
			newS = s
		}
	default:
		if a.rot.warned != spec.ID {
			a.rot.warned = spec.ID
			a.log.Warn("a rotation record of another cluster secret: ignored", "from", spec.From, "to", spec.ID, "cluster", cur.ClusterID())
		}
		return nil
	}
	if a.rot.id != spec.ID {
		a.rot.id, a.rot.applied, a.rot.since = spec.ID, initial, now
	}
	if a.rot.applied == trust.PhaseRetired && r.Progress[a.cfg.Name] == trust.PhaseRetired && r.Resealed && !r.Completed.IsZero() {
		return nil // this rotation is over, here and everywhere
	}
	alive := a.aliveMembers()
	d := trust.Decide(r, alive, a.cfg.Name, trust.Local{Applied: a.rot.applied, Since: a.rot.since}, now)
	if d.Target != a.rot.applied {
		if err := a.applyRotationPhase(oldS, newS, d.Target, now); err != nil {
			return fmt.Errorf("phase %s: %w", d.Target, err)
		}
		a.rot.applied, a.rot.since = d.Target, now
		a.log.Info("rotation of the cluster secret: phase "+d.Target.String(), "from", spec.From, "to", spec.ID)
	}
	if r.Progress[a.cfg.Name] < d.Target {
		b, err := json.Marshal(rotationProgress{ID: spec.ID, Phase: d.Target})
		if err != nil {
			return err
		}
		if err := a.store.WriteFields(rotationKey(), map[string]json.RawMessage{rotationProgressPrefix + a.cfg.Name: b}); err != nil {
			return fmt.Errorf("record progress: %w", err)
		}
		r.Progress[a.cfg.Name] = d.Target
	}
	if r.Completed.IsZero() && trust.StatusOf(r, alive, now).Complete {
		b, err := json.Marshal(rotationCompleted{ID: spec.ID, At: now.UTC()})
		if err != nil {
			return err
		}
		if err := a.store.WriteFields(rotationKey(), map[string]json.RawMessage{fieldRotationCompleted: b}); err != nil {
			return fmt.Errorf("record the end: %w", err)
		}
	}
	if d.Reseal {
		n, err := a.resealSecrets()
		if err != nil {
			return fmt.Errorf("seal the Secrets anew: %w", err)
		}
		b, _ := json.Marshal(spec.ID)
		if err := a.store.WriteFields(rotationKey(), map[string]json.RawMessage{fieldRotationResealed: b}); err != nil {
			return fmt.Errorf("record the resealing: %w", err)
		}
		a.log.Info("rotation of the cluster secret: Secrets sealed under the new key", "secrets", n, "to", spec.ID)
	}
	return nil
}

// openRotationSecret opens the new secret of a record with the at-rest
// key(s) this peer holds.
func (a *Agent) openRotationSecret(spec rotationSpec) (trust.Secret, error) {
	var s trust.Secret
	sealer := a.sealer.Load()
	ct, err := base64.StdEncoding.DecodeString(spec.Secret)
	if err != nil || sealer == nil {
		return s, errors.New("the rotation record's secret does not decode")
	}
	plain, err := sealer.Open(ct, rotationAD(spec.ID))
	if err != nil || len(plain) != trust.SecretSize {
		return s, fmt.Errorf("the rotation record's secret does not open with this peer's key: %w", trust.ErrUnseal)
	}
	copy(s[:], plain)
	if s.ClusterID() != spec.ID {
		return trust.Secret{}, fmt.Errorf("the rotation record's secret is not the secret of %s", spec.ID)
	}
	return s, nil
}

// applyRotationPhase makes this peer send, present and seal under one
// secret and accept one or two, as phase says (see trust.Phase), and
// writes the join token and kubeconfig that go with it.
func (a *Agent) applyRotationPhase(oldS *trust.Secret, newS trust.Secret, phase trust.Phase, now time.Time) error {
	var use trust.Secret
	var also *trust.Secret
	switch phase {
	case trust.PhaseInstalled:
		if oldS == nil {
			return errors.New("the old secret is not known")
		}
		use, also = *oldS, &newS
	case trust.PhaseUsing:
		if oldS == nil {
			return errors.New("the old secret is not known")
		}
		use, also = newS, oldS
	case trust.PhaseRetired:
		use = newS
	default:
		return nil
	}
	if a.trust.derivedGossip && a.gossip != nil {
		keep := [][]byte{use.GossipKey()}
		if also != nil {
			keep = append(keep, also.GossipKey())
			if err := a.gossip.InstallKey(also.GossipKey()); err != nil {
				return err
			}
		}
		if err := a.gossip.UseKey(use.GossipKey()); err != nil {
			return err
		}
		for _, k := range a.gossip.Keys() {
			if !slices.ContainsFunc(keep, func(x []byte) bool { return bytes.Equal(x, k) }) {
				if err := a.gossip.RemoveKey(k); err != nil {
					return err
				}
			}
		}
	}
	sealer, err := sealerFor(use, also)
	if err != nil {
		return err
	}
	// Open under both before sealing under the new key (Installed), and
	// seal under the new key before the old certificate goes (Using).
	a.setSealer(sealer)
	if err := a.trust.set(use, also, now); err != nil {
		return err
	}
	dir := a.cfg.DataDir
	if phase >= trust.PhaseUsing {
		// The new token first: a peer restarted from here on starts with
		// the new secret, and with the old one while token.previous is
		// there.
		if phase == trust.PhaseUsing {
			if err := trust.WriteFile(filepath.Join(dir, PreviousTokenFile), []byte(oldS.Token()+"\n")); err != nil {
				return fmt.Errorf("store the previous join token: %w", err)
			}
		}
		if err := trust.WriteFile(filepath.Join(dir, trust.TokenFile), []byte(newS.Token()+"\n")); err != nil {
			return fmt.Errorf("store the new join token: %w", err)
		}
		if phase == trust.PhaseRetired {
			b, err := os.ReadFile(filepath.Join(dir, RetiredFile))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("read the retired secrets: %w", err)
			}
			if oldS != nil && !slices.Contains(strings.Fields(string(b)), oldS.ClusterID()) {
				b = append(b, oldS.ClusterID()+"\n"...)
				if err := trust.WriteFile(filepath.Join(dir, RetiredFile), b); err != nil {
					return fmt.Errorf("record the retired secret: %w", err)
				}
			}
			if err := os.Remove(filepath.Join(dir, PreviousTokenFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := a.writeKubeconfig(); err != nil {
		return fmt.Errorf("write the kubeconfig: %w", err)
	}
	return nil
}

// resealSecrets seals anew, under the at-rest key in use, every sealed
// register of every Secret that an older key sealed. It writes only those
// registers, so a concurrent change of another field merges; a change of
// the same Secret's data through another peer at the same moment may be
// lost to the resealed copy (the same outcome as two concurrent writes).
func (a *Agent) resealSecrets() (int, error) {
	sealer := a.sealer.Load()
	if sealer == nil {
		return 0, errors.New("no secrets-at-rest key")
	}
	var keys []string
	a.store.Read(func(st *crdt.State) { keys = st.Keys(api.KindSecret + "/") })
	sort.Strings(keys)
	n := 0
	for _, key := range keys {
		changes := map[string]json.RawMessage{}
		for f, v := range a.store.RawFields(key) {
			name, ok := strings.CutPrefix(f, state.SealedPrefix)
			if !ok || name == "" {
				continue
			}
			var b64 string
			if json.Unmarshal(v, &b64) != nil {
				continue // null: a cleared field
			}
			ct, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				continue
			}
			plain, first, err := sealer.OpenKey(ct, state.SealAD(key, name))
			if err != nil {
				a.log.Warn("a sealed field opens under no key: not sealed anew", "key", key, "field", name)
				continue
			}
			if first {
				continue
			}
			b, err := json.Marshal(base64.StdEncoding.EncodeToString(sealer.Seal(plain, state.SealAD(key, name))))
			if err != nil {
				return n, err
			}
			changes[f] = b
		}
		if len(changes) == 0 {
			continue
		}
		if err := a.store.WriteFields(key, changes); err != nil {
			return n, fmt.Errorf("%s: %w", key, err)
		}
		n++
	}
	return n, nil
}
