package agent

import (
	"encoding/base64"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
	"github.com/chorus-sh/chorus/trust"
)

// setSealer makes sl this peer's sealer of Secrets at rest, and the
// store's; nil stores them in clear.
func (a *Agent) setSealer(sl *trust.Sealer) {
	a.sealer.Store(sl)
	if sl == nil {
		a.store.SetSealer(nil) // not a nil *trust.Sealer in a non-nil interface
		return
	}
	a.store.SetSealer(sl)
}

// sealerFor seals under use's at-rest key and opens under also's too
// (while a rotation moves from one secret to the other).
func sealerFor(use trust.Secret, also *trust.Secret) (*trust.Sealer, error) {
	if also != nil {
		return trust.NewSealer(use.DataKey(), also.DataKey())
	}
	return trust.NewSealer(use.DataKey())
}

// newSealer returns the sealer of a peer: keyed from the cluster secret,
// or from an explicit gossip key on an --insecure peer; nil when neither
// exists (Secrets are then stored in clear, which the caller says).
func newSealer(tr *peerTrust, gossipKey string) (*trust.Sealer, error) {
	switch {
	case tr != nil:
		return sealerFor(tr.secrets())
	case gossipKey != "":
		k, err := base64.StdEncoding.DecodeString(gossipKey)
		if err != nil {
			k = []byte(gossipKey)
		}
		return trust.NewSealer(trust.DataKeyFromGossipKey(k))
	}
	return nil, nil
}

// configSource gives the pod manager this peer's replica of the cluster's
// ConfigMaps and Secrets (Secrets opened).
type configSource struct{ s *state.Store }

func (c configSource) ConfigMap(ns, name string) (*api.ConfigMap, bool) {
	o, ok := c.s.Get(state.Key(api.KindConfigMap, ns, name))
	if !ok {
		return nil, false
	}
	cm, ok := o.(*api.ConfigMap)
	return cm, ok
}

func (c configSource) Claim(ns, name string) (*api.PersistentVolumeClaim, bool) {
	o, ok := c.s.Get(state.Key(api.KindPersistentVolumeClaim, ns, name))
	if !ok {
		return nil, false
	}
	pvc, ok := o.(*api.PersistentVolumeClaim)
	return pvc, ok
}

func (c configSource) Secret(ns, name string) (*api.Secret, bool) {
	o, ok := c.s.Get(state.Key(api.KindSecret, ns, name))
	if !ok {
		return nil, false
	}
	sec, ok := o.(*api.Secret)
	return sec, ok
}
