package state

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/trust"
)

func sealedStore(t *testing.T, path string, secret trust.Secret) *Store {
	t.Helper()
	s, err := Open(path, "n1")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := trust.NewSealer(secret.DataKey())
	if err != nil {
		t.Fatal(err)
	}
	s.SetSealer(sl)
	return s
}

const secretManifest = `apiVersion: v1
kind: Secret
metadata:
  name: db
  annotations: {note: "the password is s3cr3t-pass-word"}
stringData:
  password: s3cr3t-pass-word
`

// The clear value of a Secret is nowhere in state.crdt (nor in the deltas,
// which carry the same registers); reads open it.
func TestSecretSealedAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.crdt")
	cs, _ := trust.NewSecret()
	s := sealedStore(t, path, cs)
	res, err := s.Apply(decode(secretManifest), time.Now(), false)
	if err != nil || res[0].Action != "created" {
		t.Fatalf("apply: %+v %v", res, err)
	}
	disk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	clear := []byte("s3cr3t-pass-word")
	b64 := []byte(base64.StdEncoding.EncodeToString(clear))
	if bytes.Contains(disk, clear) || bytes.Contains(disk, b64) {
		t.Fatal("state.crdt holds the Secret's value")
	}
	if !bytes.Contains(disk, []byte(SealedPrefix+"data")) {
		t.Fatal("state.crdt holds no sealed data register")
	}
	got, ok := s.Get(Key(api.KindSecret, "default", "db"))
	if !ok {
		t.Fatalf("secret not readable: %+v", s.checked.list())
	}
	sec := got.(*api.Secret)
	if sec.Data["password"] != string(b64) || sec.Type != api.SecretTypeOpaque || sec.Metadata.Annotations["note"] == "" {
		t.Fatalf("read back %+v", sec)
	}
	// The same apply again changes nothing, though the ciphertext differs.
	res, err = s.Apply(decode(secretManifest), time.Now(), false)
	if err != nil || res[0].Action != "unchanged" {
		t.Fatalf("second apply: %+v %v", res, err)
	}
	// Another cluster's key cannot read it: left out and reported.
	other, _ := trust.NewSecret()
	s2 := sealedStore(t, path, other)
	if _, ok := s2.Get(Key(api.KindSecret, "default", "db")); ok {
		t.Fatal("a peer with another key read the secret")
	}
	if bad := s2.Invalid(); len(bad) != 1 {
		t.Fatalf("invalid = %+v", bad)
	}
	// The right key, reopened from disk, reads it.
	s3 := sealedStore(t, path, cs)
	if got, ok := s3.Get(Key(api.KindSecret, "default", "db")); !ok || got.(*api.Secret).Data["password"] != string(b64) {
		t.Fatalf("reopened: %+v %v", got, ok)
	}
}

func TestImmutableConfigRefusesDataChanges(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "state.crdt"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nimmutable: true\ndata: {a: \"1\"}\n"
	if _, err := s.Apply(decode(cm), time.Now(), false); err != nil {
		t.Fatal(err)
	}
	changed := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nimmutable: true\ndata: {a: \"2\"}\n"
	_, err = s.Apply(decode(changed), time.Now(), false)
	var ie *InvalidError
	if !errors.As(err, &ie) || ie.Err.Errors[0].Field != "data" {
		t.Fatalf("apply over an immutable ConfigMap: %v", err)
	}
	// Labels may still change.
	relabel := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {x: z1}}\nimmutable: true\ndata: {a: \"1\"}\n"
	if _, err := s.Apply(decode(relabel), time.Now(), false); err != nil {
		t.Fatalf("relabel: %v", err)
	}
	old, _ := s.Get(Key(api.KindConfigMap, "default", "c"))
	next := decode(changed)[0]
	if _, err := s.Update(old, next, time.Now()); !errors.As(err, &ie) {
		t.Fatalf("update of an immutable ConfigMap: %v", err)
	}
}

// FuzzUnseal: whatever a sealed register holds (from the disk or another
// peer), opening it never panics and never yields a value for another key.
func FuzzUnseal(f *testing.F) {
	f.Add([]byte(`"AQ=="`), "data")
	f.Add([]byte(`"not base64"`), "metadata.annotations")
	f.Add([]byte(`12`), "data")
	f.Add([]byte(`null`), "")
	cs := trust.Secret{1}
	sl, err := trust.NewSealer(cs.DataKey())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v []byte, field string) {
		s := &Store{}
		s.SetSealer(sl)
		out, err := s.unseal("Secret/default/s", map[string]json.RawMessage{SealedPrefix + field: v})
		for k := range out {
			if err == nil && !strings.HasPrefix(k, SealedPrefix) {
				t.Fatalf("a forged register opened: %q", out)
			}
		}
	})
}
