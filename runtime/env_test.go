package runtime

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
)

type fakeConfig struct {
	cms     map[string]*api.ConfigMap
	secrets map[string]*api.Secret
	claims  map[string]*api.PersistentVolumeClaim
}

func (f fakeConfig) Claim(ns, name string) (*api.PersistentVolumeClaim, bool) {
	c, ok := f.claims[ns+"/"+name]
	return c, ok
}

func (f fakeConfig) ConfigMap(ns, name string) (*api.ConfigMap, bool) {
	c, ok := f.cms[ns+"/"+name]
	return c, ok
}

func (f fakeConfig) Secret(ns, name string) (*api.Secret, bool) {
	s, ok := f.secrets[ns+"/"+name]
	return s, ok
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func testSource() fakeConfig {
	return fakeConfig{
		cms: map[string]*api.ConfigMap{"default/cfg": {Data: map[string]string{"mode": "fast", "bad key": "x", "1digit": "y"},
			BinaryData: map[string]string{"bin": b64("\x00")}}},
		secrets: map[string]*api.Secret{"default/db": {Data: map[string]string{"password": b64("hunter2")}}},
	}
}

func testPod() *api.Pod {
	yes := true
	return &api.Pod{
		Metadata: api.ObjectMeta{Name: "web-1", Namespace: "default", UID: "u-1", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec: api.PodSpec{Containers: []api.Container{{
			Name: "app",
			EnvFrom: []api.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &api.ConfigMapEnvSource{Name: "cfg"}},
				{SecretRef: &api.SecretEnvSource{Name: "missing", Optional: &yes}}},
			Env: []api.EnvVar{
				{Name: "PASSWORD", ValueFrom: &api.EnvVarSource{SecretKeyRef: &api.SecretKeySelector{Name: "db", Key: "password"}}},
				{Name: "MODE", ValueFrom: &api.EnvVarSource{ConfigMapKeyRef: &api.ConfigMapKeySelector{Name: "cfg", Key: "mode"}}},
				{Name: "OPT", ValueFrom: &api.EnvVarSource{ConfigMapKeyRef: &api.ConfigMapKeySelector{Name: "cfg", Key: "nope", Optional: &yes}}},
				{Name: "POD", ValueFrom: &api.EnvVarSource{FieldRef: &api.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "APP", ValueFrom: &api.EnvVarSource{FieldRef: &api.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
				{Name: "IP", ValueFrom: &api.EnvVarSource{FieldRef: &api.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "NODE", ValueFrom: &api.EnvVarSource{FieldRef: &api.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
				{Name: "MEM", ValueFrom: &api.EnvVarSource{ResourceFieldRef: &api.ResourceFieldSelector{Resource: "limits.memory", Divisor: "1Mi"}}},
				{Name: "CPU", ValueFrom: &api.EnvVarSource{ResourceFieldRef: &api.ResourceFieldSelector{Resource: "limits.cpu"}}},
				{Name: "CPU_REQ", ValueFrom: &api.EnvVarSource{ResourceFieldRef: &api.ResourceFieldSelector{Resource: "requests.cpu", Divisor: "1m"}}},
				{Name: "CFG_mode", Value: "override"},
			},
			Resources: api.ResourceRequirements{Limits: api.ResourceList{"memory": "129Mi", "cpu": "250m"}},
		}}},
	}
}

func TestResolveEnv(t *testing.T) {
	p := testPod()
	env, skipped, err := ResolveEnv(p, &p.Spec.Containers[0], PodContext{NodeName: "n1", PodIP: "10.0.0.5", HostIP: "127.0.0.1"}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	want := "HOSTNAME=web-1 CFG_1digit=y CFG_mode=override PASSWORD=hunter2 MODE=fast POD=web-1 APP=web IP=10.0.0.5 NODE=n1 MEM=129 CPU=1 CPU_REQ=250"
	if got := strings.Join(env, " "); got != want {
		t.Fatalf("env\n got %s\nwant %s", got, want)
	}
	if strings.Join(skipped, ",") != "CFG_bad key" {
		t.Fatalf("skipped %q", skipped)
	}
}

func TestResolveEnvMissing(t *testing.T) {
	for _, c := range []struct {
		src  api.EnvVarSource
		want string
	}{
		{api.EnvVarSource{ConfigMapKeyRef: &api.ConfigMapKeySelector{Name: "nope", Key: "k"}}, `configmap "nope" not found`},
		{api.EnvVarSource{ConfigMapKeyRef: &api.ConfigMapKeySelector{Name: "cfg", Key: "k"}}, "couldn't find key k in ConfigMap default/cfg"},
		{api.EnvVarSource{SecretKeyRef: &api.SecretKeySelector{Name: "db", Key: "user"}}, "couldn't find key user in Secret default/db"},
		{api.EnvVarSource{SecretKeyRef: &api.SecretKeySelector{Name: "x", Key: "user"}}, `secret "x" not found`},
	} {
		p := &api.Pod{Metadata: api.ObjectMeta{Name: "p", Namespace: "default"}, Spec: api.PodSpec{Containers: []api.Container{{Name: "a", Env: []api.EnvVar{{Name: "V", ValueFrom: &c.src}}}}}}
		_, _, err := ResolveEnv(p, &p.Spec.Containers[0], PodContext{}, testSource())
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Msg != c.want {
			t.Errorf("error %v, want ConfigError %q", err, c.want)
		}
	}
}

// Properties: literal env values come out as given, each name once, the
// last definition winning, HOSTNAME first; resolution is deterministic.
func TestResolveEnvProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		names := rapid.SliceOfN(rapid.StringMatching(`[A-Z][A-Z0-9_]{0,3}`), 0, 12).Draw(t, "names")
		c := api.Container{Name: "a"}
		last := map[string]string{}
		for _, n := range names {
			v := rapid.String().Draw(t, "v"+n)
			c.Env = append(c.Env, api.EnvVar{Name: n, Value: v})
			last[n] = v
		}
		p := &api.Pod{Metadata: api.ObjectMeta{Name: "p", Namespace: "default"}, Spec: api.PodSpec{Containers: []api.Container{c}}}
		env, _, err := ResolveEnv(p, &c, PodContext{}, testSource())
		if err != nil {
			t.Fatal(err)
		}
		again, _, _ := ResolveEnv(p, &c, PodContext{}, testSource())
		if strings.Join(env, "\x00") != strings.Join(again, "\x00") {
			t.Fatal("not deterministic")
		}
		if !strings.HasPrefix(env[0], "HOSTNAME=") {
			t.Fatalf("first %q", env[0])
		}
		seen := map[string]bool{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			if seen[k] {
				t.Fatalf("%s twice", k)
			}
			seen[k] = true
			if want, ok := last[k]; ok && v != want {
				t.Fatalf("%s=%q, want %q", k, v, want)
			}
		}
		want := len(last)
		if _, ok := last["HOSTNAME"]; !ok {
			want++
		}
		if len(seen) != want {
			t.Fatalf("%d variables for %d names", len(seen), len(last))
		}
	})
}

func TestVolumeContents(t *testing.T) {
	p := testPod()
	mode := int32(0o400)
	vol := api.Volume{Name: "all", Projected: &api.ProjectedVolumeSource{Sources: []api.VolumeProjection{
		{ConfigMap: &api.ConfigMapProjection{Name: "cfg", Items: []api.KeyToPath{{Key: "mode", Path: "conf/mode"}}}},
		{Secret: &api.SecretProjection{Name: "db", Items: []api.KeyToPath{{Key: "password", Path: "pw", Mode: &mode}}}},
		{DownwardAPI: &api.DownwardAPIProjection{Items: []api.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &api.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}},
	}}}
	files, err := VolumeContents(p, &vol, PodContext{}, testSource())
	if err != nil {
		t.Fatal(err)
	}
	if string(files["conf/mode"].Data) != "fast" || files["conf/mode"].Mode != 0o644 || string(files["pw"].Data) != "hunter2" ||
		files["pw"].Mode != 0o400 || string(files["labels"].Data) != `app="web"` || len(files) != 3 {
		t.Fatalf("files %+v", files)
	}
	missing := api.Volume{Name: "m", Secret: &api.SecretVolumeSource{SecretName: "db", Items: []api.KeyToPath{{Key: "user", Path: "u"}}}}
	var ve *VolumeError
	if _, err := VolumeContents(p, &missing, PodContext{}, testSource()); !errors.As(err, &ve) || !strings.Contains(err.Error(), "non-existent key: user") {
		t.Fatalf("missing key: %v", err)
	}
}
