package api

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

func TestTemplateHashIsPinned(t *testing.T) {
	// The hash names pods and must not change between versions that keep the
	// types: a change would restart every pod on upgrade.
	tmpl := PodTemplateSpec{
		Metadata: ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:     PodSpec{Containers: []Container{{Name: "web", Image: "example/web:1"}}},
	}
	if got, want := TemplateHash(&tmpl), "ab7322056d"; got != want {
		t.Errorf("TemplateHash = %s, want %s", got, want)
	}
}

func TestPodName(t *testing.T) {
	if got := PodName("web", "0123456789", 2); got != "web-0123456789-2" {
		t.Errorf("PodName = %q", got)
	}
}

func TestPodsForDeployment(t *testing.T) {
	objs, _, err := Decode([]byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: web}
      annotations: {note: x}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: A, value: b}]
`), "")
	if err != nil {
		t.Fatal(err)
	}
	d := objs[0].(*Deployment)
	pods := PodsForDeployment(d)
	if len(pods) != 3 {
		t.Fatalf("got %d pods", len(pods))
	}
	hash := TemplateHash(&d.Spec.Template)
	for i, p := range pods {
		if p.APIVersion != "v1" || p.Kind != "Pod" {
			t.Errorf("TypeMeta = %+v", p.TypeMeta)
		}
		if p.Metadata.Name != fmt.Sprintf("web-%s-%d", hash, i) || p.Metadata.Namespace != "shop" {
			t.Errorf("pod %d: %s/%s", i, p.Metadata.Namespace, p.Metadata.Name)
		}
		want := map[string]string{"app": "web", LabelTemplateHash: hash, LabelDeployment: "web"}
		if fmt.Sprint(p.Metadata.Labels) != fmt.Sprint(want) {
			t.Errorf("labels = %v, want %v", p.Metadata.Labels, want)
		}
		if p.Metadata.Annotations["note"] != "x" {
			t.Errorf("annotations = %v", p.Metadata.Annotations)
		}
		if !d.Spec.Selector.Matches(p.Metadata.Labels) {
			t.Error("the deployment's selector does not match its pod")
		}
		if errs := Validate(&p); len(errs) != 0 {
			t.Errorf("pod does not validate: %v", errs)
		}
	}
	// The pods share nothing with the deployment; with each other, only
	// their spec (one copy for all, as documented), not their labels.
	pods[0].Spec.Containers[0].Env[0].Value = "changed"
	pods[0].Metadata.Labels["app"] = "changed"
	if d.Spec.Template.Spec.Containers[0].Env[0].Value != "b" {
		t.Error("pod spec shares memory with the deployment")
	}
	if d.Spec.Template.Metadata.Labels["app"] != "web" || pods[1].Metadata.Labels["app"] != "web" {
		t.Error("pod labels share memory")
	}
	zero := int32(0)
	d.Spec.Replicas = &zero
	if n := len(PodsForDeployment(d)); n != 0 {
		t.Errorf("0 replicas gave %d pods", n)
	}
}

func TestLongestPodName(t *testing.T) {
	name := strings.Repeat("d", maxDeploymentName)
	if got := PodName(name, "0123456789", maxReplicas-1); len(got) != 63 {
		t.Errorf("longest pod name %q has %d characters, want 63", got, len(got))
	}
}

// genTemplate generates a valid pod template.
func genTemplate() *rapid.Generator[PodTemplateSpec] {
	word := rapid.StringMatching(`[a-z]([a-z0-9-]{0,10}[a-z0-9])?`)
	return rapid.Custom(func(t *rapid.T) PodTemplateSpec {
		labels := rapid.MapOfN(word, word, 1, 4).Draw(t, "labels")
		var containers []Container
		for i := range rapid.IntRange(1, 3).Draw(t, "containers") {
			c := Container{
				Name:    fmt.Sprintf("c%d", i),
				Image:   word.Draw(t, "image") + ":" + word.Draw(t, "tag"),
				Command: rapid.SliceOfN(rapid.String(), 0, 3).Draw(t, "command"),
				Env: rapid.SliceOfN(rapid.Custom(func(t *rapid.T) EnvVar {
					return EnvVar{Name: "E" + word.Draw(t, "env"), Value: rapid.String().Draw(t, "value")}
				}), 0, 3).Draw(t, "env"),
			}
			if rapid.Bool().Draw(t, "port") {
				c.Ports = []ContainerPort{{ContainerPort: rapid.Int32Range(1, 65535).Draw(t, "containerPort")}}
			}
			if rapid.Bool().Draw(t, "resources") {
				c.Resources.Limits = ResourceList{"cpu": fmt.Sprintf("%dm", rapid.IntRange(1, 4000).Draw(t, "cpu"))}
			}
			containers = append(containers, c)
		}
		return PodTemplateSpec{
			Metadata: ObjectMeta{Labels: labels},
			Spec:     PodSpec{Containers: containers},
		}
	})
}

func TestTemplateHashProperties(t *testing.T) {
	hexRE := regexp.MustCompile(`^[0-9a-f]{10}$`)
	rapid.Check(t, func(t *rapid.T) {
		tmpl := genTemplate().Draw(t, "template")
		h := TemplateHash(&tmpl)
		if !hexRE.MatchString(h) {
			t.Fatalf("hash %q is not 10 hex characters", h)
		}
		// Deterministic: the same for a copy, and for the template after a
		// trip through JSON (as when another peer sends it).
		cp := DeepCopy(tmpl)
		if TemplateHash(&cp) != h {
			t.Fatal("hash of a copy differs")
		}
		b, err := json.Marshal(tmpl)
		if err != nil {
			t.Fatal(err)
		}
		var back PodTemplateSpec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if TemplateHash(&back) != h {
			t.Fatal("hash changed across a JSON round trip")
		}
		// Sensitive: another image gives another hash.
		cp.Spec.Containers[0].Image += "x"
		if TemplateHash(&cp) == h {
			t.Fatal("changing the image did not change the hash")
		}
	})
}

func TestPodsForDeploymentProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		name := rapid.StringMatching(`[a-z]([a-z0-9-]{0,45}[a-z0-9])?`).Draw(t, "name")
		replicas := rapid.Int32Range(0, 200).Draw(t, "replicas")
		d := &Deployment{
			Metadata: ObjectMeta{Name: name},
			Spec:     DeploymentSpec{Replicas: &replicas, Template: genTemplate().Draw(t, "template")},
		}
		SetDefaults(d)
		if errs := Validate(d); len(errs) != 0 {
			t.Fatalf("generated deployment is invalid: %v", errs)
		}
		pods := PodsForDeployment(d)
		if len(pods) != int(replicas) {
			t.Fatalf("got %d pods for %d replicas", len(pods), replicas)
		}
		seen := map[string]bool{}
		for _, p := range pods {
			if seen[p.Metadata.Name] {
				t.Fatalf("duplicate pod name %q", p.Metadata.Name)
			}
			seen[p.Metadata.Name] = true
			if len(p.Metadata.Name) > 63 {
				t.Fatalf("pod name %q is longer than 63", p.Metadata.Name)
			}
			if !d.Spec.Selector.Matches(p.Metadata.Labels) {
				t.Fatalf("selector does not match pod %q", p.Metadata.Name)
			}
			if errs := Validate(&p); len(errs) != 0 {
				t.Fatalf("pod %q is invalid: %v", p.Metadata.Name, errs)
			}
		}
	})
}
