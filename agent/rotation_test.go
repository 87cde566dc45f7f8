package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
	"github.com/chorus-sh/chorus/trust"
)

// secretManifest is a Secret stored before a rotation.
const secretManifest = "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: rotate-me}\n"

// rotationPeer is a peer of a one-peer cluster (no gossip: it is the only
// alive member) with its store, sealed under the cluster secret.
func rotationPeer(t *testing.T) (*Agent, trust.Secret) {
	t.Helper()
	s, _ := trust.NewSecret()
	a := testPeer(t, s, "n1")
	st, err := state.Open(filepath.Join(a.cfg.DataDir, "state.crdt"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := newSealer(a.trust, a.cfg.GossipKey)
	if err != nil {
		t.Fatal(err)
	}
	a.store = st
	a.setSealer(sl)
	if err := a.writeKubeconfig(); err != nil {
		t.Fatal(err)
	}
	return a, s
}

func readKubeconfig(t *testing.T, a *Agent) *trust.ClientConfig {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, KubeconfigFile))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := trust.ParseKubeconfig(b, a.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return cc
}

// tokenAccepted reports whether the peer's API accepts a bearer token now.
func tokenAccepted(t *testing.T, a *Agent, token string) bool {
	t.Helper()
	h := a.withToken(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	req := httptest.NewRequest("GET", "/version", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code == http.StatusOK
}

// TestRotationOnePeer walks a one-peer cluster through a rotation, step by
// step: each phase changes what the peer accepts, presents and stores as
// trust.Decide says, a Secret stored before reads back after, the stored
// ciphertext opens only under the new key at the end, and a second
// rotation is refused while one is under way.
func TestRotationOnePeer(t *testing.T) {
	a, oldS := rotationPeer(t)
	if _, err := a.store.Apply(decodeAll(t, secretManifest), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	secretKey := state.Key(api.KindSecret, "default", "db")
	before, _ := a.store.Get(secretKey)
	oldToken := oldS.APIToken()
	if !tokenAccepted(t, a, oldToken) {
		t.Fatal("the old token is refused before the rotation")
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st, err := a.startRotation(now)
	if err != nil {
		t.Fatal(err)
	}
	if st.From != oldS.ClusterID() || st.ID == st.From || st.Phase != "pending" || st.Total != 1 {
		t.Fatalf("status %+v", st)
	}
	// The record holds the new secret sealed, never in clear.
	raw := a.store.RawFields(rotationKey())
	var spec rotationSpec
	if err := json.Unmarshal(raw[fieldRotationSpec], &spec); err != nil {
		t.Fatal(err)
	}
	newS, err := a.openRotationSecret(spec)
	if err != nil || newS.ClusterID() != st.ID {
		t.Fatalf("open the record's secret: %v", err)
	}
	disk, _ := os.ReadFile(a.store.Path())
	for _, clear := range [][]byte{newS[:], []byte(base64.StdEncoding.EncodeToString(newS[:])), []byte(newS.Token())} {
		if bytes.Contains(disk, clear) {
			t.Fatal("the new secret is in clear in state.crdt")
		}
	}
	if _, err := a.startRotation(now); err == nil || !strings.Contains(err.Error(), "under way") {
		t.Fatalf("second rotation: %v", err)
	}

	step := func(want trust.Phase) {
		t.Helper()
		now = now.Add(trust.PhaseDwell)
		if err := a.rotationStep(now); err != nil {
			t.Fatal(err)
		}
		if a.rot.applied != want {
			t.Fatalf("applied %v, want %v", a.rot.applied, want)
		}
	}
	tokenFile := func() trust.Secret {
		s, err := trust.ReadTokenFile(filepath.Join(a.cfg.DataDir, trust.TokenFile))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	newCA, _ := newS.CA()
	oldCA, _ := oldS.CA()

	step(trust.PhaseInstalled)
	// Not out of a phase before trust.PhaseDwell.
	if err := a.rotationStep(now.Add(trust.PhaseDwell - time.Millisecond)); err != nil || a.rot.applied != trust.PhaseInstalled {
		t.Fatalf("left installed before the dwell: %v %v", a.rot.applied, err)
	}
	if !tokenAccepted(t, a, oldToken) || !tokenAccepted(t, a, newS.APIToken()) {
		t.Fatal("installed: both tokens must be accepted")
	}
	if cc := readKubeconfig(t, a); cc.Token != oldToken || !bytes.Contains(cc.CAPEM, newCA.CertPEM()) || !bytes.Contains(cc.CAPEM, oldCA.CertPEM()) {
		t.Fatal("installed: the kubeconfig must carry both CAs and the old token")
	}
	if tokenFile() != oldS {
		t.Fatal("installed: the token file changed")
	}

	step(trust.PhaseUsing)
	if tokenFile() != newS {
		t.Fatal("using: the token file does not hold the new token")
	}
	if prev, err := trust.ReadTokenFile(filepath.Join(a.cfg.DataDir, PreviousTokenFile)); err != nil || prev != oldS {
		t.Fatalf("using: token.previous: %v", err)
	}
	if cc := readKubeconfig(t, a); cc.Token != newS.APIToken() {
		t.Fatal("using: the kubeconfig must carry the new token")
	}
	if _, err := a.trust.creds.Certificate().Leaf.Verify(x509Opts(&peerTrust{ca: newCA}, "127.0.0.1")); err != nil {
		t.Fatalf("using: the peer does not present a certificate of the new CA: %v", err)
	}
	// A restart here starts with both secrets, the new one in use.
	cfg := Config{Name: "n1", Bind: "127.0.0.1", DataDir: a.cfg.DataDir}
	if tr, err := setupTrust(&cfg, quiet, now); err != nil {
		t.Fatal(err)
	} else if s, o := tr.secrets(); s != newS || o == nil || *o != oldS {
		t.Fatal("a restart while using does not hold both secrets")
	}

	step(trust.PhaseUsing) // the only peer reseals
	var sealedData string
	_ = json.Unmarshal(a.store.RawFields(secretKey)[state.SealedPrefix+"data"], &sealedData)
	ct, _ := base64.StdEncoding.DecodeString(sealedData)
	onlyNew, _ := trust.NewSealer(newS.DataKey())
	if _, err := onlyNew.Open(ct, state.SealAD(secretKey, "data")); err != nil {
		t.Fatalf("the Secret was not sealed anew: %v", err)
	}
	if _, r, _ := parseRotation(a.store.RawFields(rotationKey())); !r.Resealed {
		t.Fatal("resealed not recorded")
	}

	step(trust.PhaseRetired)
	if tokenAccepted(t, a, oldToken) || !tokenAccepted(t, a, newS.APIToken()) {
		t.Fatal("retired: only the new token may be accepted")
	}
	if cc := readKubeconfig(t, a); cc.Token != newS.APIToken() || bytes.Contains(cc.CAPEM, oldCA.CertPEM()) {
		t.Fatal("retired: the kubeconfig must carry only the new CA")
	}
	if _, err := os.Stat(filepath.Join(a.cfg.DataDir, PreviousTokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("retired: token.previous is still there: %v", err)
	}
	// A service passing the token of before at every start still starts,
	// with the new one; a token of another cluster is still refused.
	cfg = Config{Name: "n1", Bind: "127.0.0.1", DataDir: a.cfg.DataDir, JoinToken: oldS.Token()}
	if tr, err := setupTrust(&cfg, quiet, now); err != nil {
		t.Fatalf("restart with the retired token: %v", err)
	} else if s, o := tr.secrets(); s != newS || o != nil {
		t.Fatal("a restart with the retired token does not use the new secret only")
	}
	stranger, _ := trust.NewSecret()
	cfg = Config{Name: "n1", Bind: "127.0.0.1", DataDir: a.cfg.DataDir, JoinToken: stranger.Token()}
	if _, err := setupTrust(&cfg, quiet, now); err == nil {
		t.Fatal("a token of another cluster was taken")
	}
	after, ok := a.store.Get(secretKey)
	if !ok || after.(*api.Secret).Data["password"] != before.(*api.Secret).Data["password"] {
		t.Fatalf("the Secret does not read back: %+v", a.store.Invalid())
	}
	// Asked an hour later: the elapsed time stopped at the end.
	st, err = a.rotationStatus(now.Add(time.Hour))
	if err != nil || !st.Complete || st.Done != 1 || st.Phase != "retired" || st.Elapsed != (4*trust.PhaseDwell).String() {
		t.Fatalf("status %+v %v", st, err)
	}
	// Done: another rotation may start, from the new secret.
	st2, err := a.startRotation(now)
	if err != nil || st2.From != newS.ClusterID() {
		t.Fatalf("next rotation: %+v %v", st2, err)
	}
}

func TestParseRotationIgnoresBadValues(t *testing.T) {
	spec, _ := json.Marshal(rotationSpec{ID: "chorus-new", From: "chorus-old"})
	p := func(id string, ph trust.Phase) json.RawMessage {
		b, _ := json.Marshal(rotationProgress{ID: id, Phase: ph})
		return b
	}
	_, r, ok := parseRotation(map[string]json.RawMessage{
		fieldRotationSpec:            spec,
		rotationProgressPrefix + "a": p("chorus-new", trust.PhaseUsing),
		rotationProgressPrefix + "b": p("chorus-earlier", trust.PhaseRetired), // another rotation's
		rotationProgressPrefix + "c": p("chorus-new", trust.Phase(42)),
		rotationProgressPrefix + "d": json.RawMessage(`"x"`),
		fieldRotationResealed:        json.RawMessage(`"chorus-earlier"`),
	})
	if !ok || len(r.Progress) != 1 || r.Progress["a"] != trust.PhaseUsing || r.Resealed {
		t.Fatalf("%+v %v", r, ok)
	}
	if _, _, ok := parseRotation(map[string]json.RawMessage{fieldRotationSpec: json.RawMessage(`{"id":""}`)}); ok {
		t.Fatal("a spec without ids parsed")
	}
	if _, _, ok := parseRotation(nil); ok {
		t.Fatal("no record parsed")
	}
}

// FuzzParseRotation: a rotation record from another peer or the disk, of
// any bytes, never panics and yields only known phases of its own
// rotation.
func FuzzParseRotation(f *testing.F) {
	f.Add([]byte(`{"id":"chorus-new","from":"chorus-old","secret":"AQ=="}`), []byte(`{"id":"chorus-new","phase":2}`), []byte(`"chorus-new"`))
	f.Add([]byte(`{"id":"x","from":"y"}`), []byte(`{"id":"x","phase":-1}`), []byte(`null`))
	f.Add([]byte(`[]`), []byte(`{}`), []byte(`7`))
	f.Fuzz(func(t *testing.T, spec, progress, resealed []byte) {
		s, r, ok := parseRotation(map[string]json.RawMessage{fieldRotationSpec: spec,
			rotationProgressPrefix + "p": progress, fieldRotationResealed: resealed})
		if !ok {
			return
		}
		if s.ID == "" || s.From == "" || r.ID != s.ID {
			t.Fatalf("parsed %+v %+v", s, r)
		}
		for _, ph := range r.Progress {
			if !ph.Valid() {
				t.Fatalf("phase %v", ph)
			}
		}
		// Deciding on it never panics either.
		_ = trust.Decide(r, []string{"p", "q"}, "q", trust.Local{}, time.Now())
	})
}

// Two rotations asked at the same moment: a peer that installed the one
// the record no longer holds installs the one it holds instead, and
// accepts the first one's token no more.
func TestRotationReplacedBeforeUse(t *testing.T) {
	a, oldS := rotationPeer(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first, err := a.startRotation(now)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.rotationStep(now); err != nil || a.rot.applied != trust.PhaseInstalled {
		t.Fatalf("installed %v %v", a.rot.applied, err)
	}
	_, firstOther := a.trust.secrets()
	if firstOther == nil || firstOther.ClusterID() != first.ID {
		t.Fatal("the first rotation's secret is not accepted")
	}
	// Another peer's record, written at the same moment, wins.
	theirs, _ := trust.NewSecret()
	sealer := a.sealer.Load()
	spec, _ := json.Marshal(rotationSpec{ID: theirs.ClusterID(), From: oldS.ClusterID(), Started: now, By: "n2",
		Secret: base64.StdEncoding.EncodeToString(sealer.Seal(theirs[:], rotationAD(theirs.ClusterID())))})
	if err := a.store.WriteFields(rotationKey(), map[string]json.RawMessage{fieldRotationSpec: spec}); err != nil {
		t.Fatal(err)
	}
	if err := a.rotationStep(now.Add(time.Second)); err != nil || a.rot.applied != trust.PhaseInstalled {
		t.Fatalf("after the replacement: %v %v", a.rot.applied, err)
	}
	use, other := a.trust.secrets()
	if use != oldS || other == nil || *other != theirs {
		t.Fatal("the peer does not hold the old secret and the winning one")
	}
	if tokenAccepted(t, a, firstOther.APIToken()) || !tokenAccepted(t, a, theirs.APIToken()) {
		t.Fatal("the replaced rotation's token is still accepted, or the winner's is not")
	}
}
