package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func ptr[T any](v T) *T { return &v }

// securityReport runs the web image's security mode in a pod's container
// and returns its "key: value" lines.
func securityReport(t *testing.T, r *rig, pod string) map[string]string {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := r.pm.Exec(ctx, "default", pod, "web", []string{"/app", "security"}, nil, &out, &errb)
	if err != nil || code != 0 {
		t.Fatalf("%s: security: %d %v %q %q", pod, code, err, out.String(), errb.String())
	}
	return parseReport(out.String())
}

func parseReport(out string) map[string]string {
	rep := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			rep[k] = v
		} else if k, ok := strings.CutSuffix(l, ":"); ok {
			rep[k] = ""
		}
	}
	return rep
}

// ownCaps is this process' effective capability set, as /proc shows it.
func ownCaps(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return ""
}

// TestContainerSecurity starts pods with each kind of securityContext in a
// real containerd and runc, and asks the process inside what it may do.
func TestContainerSecurity(t *testing.T) {
	r := newRigNet(t, "sec", "10.87.3.0/24")
	r.loadImage(t, "web")
	pod := func(name string, f func(s *api.PodSpec, c *api.SecurityContext)) api.Pod {
		p := webPod(name)
		p.Spec.Containers[0].LivenessProbe = nil
		sc := &api.SecurityContext{}
		f(&p.Spec, sc)
		if *sc != (api.SecurityContext{}) {
			p.Spec.Containers[0].SecurityContext = sc
		}
		return p
	}
	pods := []api.Pod{
		pod("default", func(*api.PodSpec, *api.SecurityContext) {}),
		pod("unconfined", func(s *api.PodSpec, _ *api.SecurityContext) {
			s.SecurityContext = &api.PodSecurityContext{SeccompProfile: &api.SeccompProfile{Type: api.SeccompUnconfined}}
		}),
		pod("user", func(s *api.PodSpec, _ *api.SecurityContext) {
			s.SecurityContext = &api.PodSecurityContext{RunAsUser: ptr[int64](1000), RunAsGroup: ptr[int64](2000),
				RunAsNonRoot: ptr(true), SupplementalGroups: []int64{3000}, FSGroup: ptr[int64](4000)}
		}),
		pod("readonly", func(_ *api.PodSpec, c *api.SecurityContext) { c.ReadOnlyRootFilesystem = ptr(true) }),
		pod("dropall", func(_ *api.PodSpec, c *api.SecurityContext) {
			c.Capabilities = &api.Capabilities{Drop: []string{"ALL"}}
		}),
		pod("caps", func(_ *api.PodSpec, c *api.SecurityContext) {
			c.Capabilities = &api.Capabilities{Drop: []string{"all"}, Add: []string{"CAP_NET_RAW", "chown"}}
		}),
		pod("escalate", func(_ *api.PodSpec, c *api.SecurityContext) { c.AllowPrivilegeEscalation = ptr(true) }),
		pod("privileged", func(_ *api.PodSpec, c *api.SecurityContext) { c.Privileged = ptr(true) }),
		pod("nonroot", func(_ *api.PodSpec, c *api.SecurityContext) { c.RunAsNonRoot = ptr(true) }),
	}
	for _, p := range pods {
		if errs := api.Validate(&p); len(errs) > 0 {
			t.Fatalf("pod %s does not validate: %v", p.Metadata.Name, errs)
		}
	}
	r.pm.Sync(pods)
	for _, p := range pods {
		name := p.Metadata.Name
		if name == "nonroot" {
			continue
		}
		waitFor(t, 60*time.Second, name+" running", func() (bool, string) {
			p := r.pod(t, name)
			return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil, fmt.Sprintf("%+v", p.Status)
		})
	}
	const defaultCaps = "00000000a80425fb" // containerd's (and Docker's) default set
	want := func(pod string, rep map[string]string, key, val string) {
		t.Helper()
		if rep[key] != val {
			t.Errorf("%s: %s is %q, want %q (report %q)", pod, key, rep[key], val, rep)
		}
	}
	refused := func(pod string, rep map[string]string, key string) {
		t.Helper()
		if v, ok := rep[key]; !ok || v == "ok" || strings.HasPrefix(v, "ok") {
			t.Errorf("%s: %s is %q, want an error (report %q)", pod, key, v, rep)
		}
	}

	// The default: root with the default capabilities, RuntimeDefault
	// seccomp (mode 2, a filter), no privilege escalation, and no way to a
	// user namespace or a mount.
	rep := securityReport(t, r, "default")
	want("default", rep, "Uid", "0 0 0 0")
	want("default", rep, "CapEff", defaultCaps)
	want("default", rep, "Seccomp", "2")
	want("default", rep, "NoNewPrivs", "1")
	want("default", rep, "write /", "ok")
	refused("default", rep, "mount tmpfs")
	refused("default", rep, "userns")

	// Unconfined: the same test process makes a user namespace and mounts
	// in it, so the refusals above are the profile's doing.
	rep = securityReport(t, r, "unconfined")
	want("unconfined", rep, "Seccomp", "0")
	want("unconfined", rep, "userns", "ok")

	rep = securityReport(t, r, "user")
	want("user", rep, "Uid", "1000 1000 1000 1000")
	want("user", rep, "Gid", "2000 2000 2000 2000")
	if groups := strings.Fields(rep["Groups"]); !slices.Contains(groups, "3000") || !slices.Contains(groups, "4000") {
		t.Errorf("user: Groups %q lacks the supplemental group 3000 or the fsGroup 4000", rep["Groups"])
	}
	want("user", rep, "CapEff", "0000000000000000")
	refused("user", rep, "write /") // / belongs to root

	rep = securityReport(t, r, "readonly")
	if !strings.Contains(rep["write /"], "read-only file system") {
		t.Errorf("readonly: write / gave %q, want a read-only file system error", rep["write /"])
	}

	rep = securityReport(t, r, "dropall")
	want("dropall", rep, "Uid", "0 0 0 0")
	want("dropall", rep, "CapEff", "0000000000000000")
	want("dropall", rep, "CapBnd", "0000000000000000")

	rep = securityReport(t, r, "caps")
	want("caps", rep, "CapEff", "0000000000002001") // CAP_CHOWN (0) and CAP_NET_RAW (13)

	rep = securityReport(t, r, "escalate")
	want("escalate", rep, "NoNewPrivs", "0")
	want("escalate", rep, "Seccomp", "2")

	rep = securityReport(t, r, "privileged")
	want("privileged", rep, "CapEff", ownCaps(t))
	want("privileged", rep, "Seccomp", "0")
	want("privileged", rep, "NoNewPrivs", "0")

	// runAsNonRoot with an image that runs as root: refused, with
	// Kubernetes' reason, and not counted as a restart.
	waitFor(t, 30*time.Second, "nonroot refused", func() (bool, string) {
		p := r.pod(t, "nonroot")
		if len(p.Status.ContainerStatuses) != 1 {
			return false, fmt.Sprintf("%+v", p.Status)
		}
		cs := p.Status.ContainerStatuses[0]
		w := cs.State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError" &&
			strings.Contains(w.Message, "container has runAsNonRoot and image will run as root") &&
			cs.RestartCount == 0 && p.Status.Phase == api.PodPending, fmt.Sprintf("%+v", cs)
	})
}

func TestSecurityConfigMerge(t *testing.T) {
	s := api.PodSpec{
		SecurityContext: &api.PodSecurityContext{RunAsUser: ptr[int64](1), RunAsGroup: ptr[int64](2), RunAsNonRoot: ptr(true),
			SupplementalGroups: []int64{3}, FSGroup: ptr[int64](4), SeccompProfile: &api.SeccompProfile{Type: api.SeccompUnconfined}},
		Containers: []api.Container{
			{Name: "a"},
			{Name: "b", SecurityContext: &api.SecurityContext{RunAsUser: ptr[int64](5), RunAsNonRoot: ptr(false),
				SeccompProfile: &api.SeccompProfile{Type: api.SeccompRuntimeDefault}, AllowPrivilegeEscalation: ptr(true),
				ReadOnlyRootFilesystem: ptr(true), Capabilities: &api.Capabilities{Add: []string{"cap_net_raw"}, Drop: []string{"all"}}}},
			{Name: "c", SecurityContext: &api.SecurityContext{Privileged: ptr(true)}},
		},
	}
	a := securityConfig(&s, &s.Containers[0])
	if *a.RunAsUser != 1 || *a.RunAsGroup != 2 || !a.RunAsNonRoot || fmt.Sprint(a.SupplementalGroups) != "[3 4]" ||
		!a.SeccompUnconfined || a.AllowEscalation || a.Privileged || a.ReadOnlyRootFS {
		t.Errorf("a: %+v", a)
	}
	b := securityConfig(&s, &s.Containers[1])
	if *b.RunAsUser != 5 || *b.RunAsGroup != 2 || b.RunAsNonRoot || b.SeccompUnconfined || !b.AllowEscalation ||
		!b.ReadOnlyRootFS || fmt.Sprint(b.CapAdd, b.CapDrop) != "[NET_RAW] [ALL]" {
		t.Errorf("b: %+v", b)
	}
	c := securityConfig(&s, &s.Containers[2])
	if !c.Privileged || !c.AllowEscalation || !c.SeccompUnconfined {
		t.Errorf("c: %+v", c)
	}
	if d := securityConfig(&api.PodSpec{}, &api.Container{}); fmt.Sprintf("%+v", d) != fmt.Sprintf("%+v", SecurityConfig{}) {
		t.Errorf("no securityContext: %+v, want the zero value", d)
	}
}

func TestApplyCaps(t *testing.T) {
	base := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"}
	all := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SYS_ADMIN"}
	for _, tt := range []struct {
		add, drop []string
		want      string
	}{
		{nil, nil, "[CAP_CHOWN CAP_KILL CAP_NET_RAW]"},
		{nil, []string{"ALL"}, "[]"},
		{[]string{"NET_ADMIN"}, []string{"ALL"}, "[CAP_NET_ADMIN]"},
		{[]string{"ALL"}, []string{"SYS_ADMIN"}, "[CAP_CHOWN CAP_KILL CAP_NET_RAW]"},
		{[]string{"ALL"}, nil, "[CAP_CHOWN CAP_KILL CAP_NET_RAW CAP_SYS_ADMIN]"},
		{[]string{"NET_ADMIN"}, []string{"NET_ADMIN", "KILL"}, "[CAP_CHOWN CAP_NET_RAW]"}, // drop wins
	} {
		if got := fmt.Sprint(applyCaps(base, all, tt.add, tt.drop)); got != tt.want {
			t.Errorf("applyCaps(add %v, drop %v) = %s, want %s", tt.add, tt.drop, got, tt.want)
		}
	}
}

func TestCheckNonRoot(t *testing.T) {
	nonRoot := SecurityConfig{RunAsNonRoot: true}
	as := func(uid int64) SecurityConfig { c := nonRoot; c.RunAsUser = &uid; return c }
	for _, tt := range []struct {
		sec       SecurityConfig
		imageUser string
		want      string // "" for no error
	}{
		{SecurityConfig{}, "", ""},
		{nonRoot, "", "container has runAsNonRoot and image will run as root (who)"},
		{nonRoot, "root", "image will run as root"},
		{nonRoot, "0:1000", "image will run as root"},
		{nonRoot, "1000", ""},
		{nonRoot, "1000:1000", ""},
		{nonRoot, "app", "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root (who)"},
		{as(1000), "", ""},
		{as(0), "1000", "container's runAsUser breaks non-root policy (who)"},
	} {
		err := checkNonRoot(tt.sec, tt.imageUser, "who")
		var ce *ConfigError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v, image user %q: %v, want no error", tt.sec, tt.imageUser, err)
		case tt.want != "" && (!errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v, image user %q: %v, want a ConfigError with %q", tt.sec, tt.imageUser, err, tt.want)
		}
	}
}
