package runtime

import (
	"bytes"
	"context"
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
		pod("userns", func(s *api.PodSpec, _ *api.SecurityContext) {
			s.HostUsers = ptr(false)
			s.RestartPolicy = api.RestartNever
			s.Containers[0].Args = []string{"security"}
			s.Containers[0].ReadinessProbe = nil
		}),
	}
	for _, p := range pods {
		if errs := api.Validate(&p); len(errs) > 0 {
			t.Fatalf("pod %s does not validate: %v", p.Metadata.Name, errs)
		}
	}
	r.pm.Sync(pods)
	for _, p := range pods {
		name := p.Metadata.Name
		if name == "nonroot" || name == "userns" {
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

	// hostUsers: false: root inside, a range of ids of its own outside.
	// (runc 1.1 cannot exec into it: the report is the container's log.)
	waitFor(t, 60*time.Second, "userns reported", func() (bool, string) {
		p := r.pod(t, "userns")
		return p.Status.Phase == api.PodSucceeded, fmt.Sprintf("%+v", p.Status)
	})
	path, err := r.pm.LogPath("default", "userns", "", false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	rep = parseReport(string(b))
	want("userns", rep, "Uid", "0 0 0 0")
	if f := strings.Fields(rep["uid_map"]); len(f) != 3 || f[0] != "0" || f[1] == "0" || f[2] != "65536" {
		t.Errorf("userns: uid_map %q, want 0 <host id> 65536", rep["uid_map"])
	}
	want("userns", rep, "write /", "ok") // the remapped root file system is its own
	refused("userns", rep, "userns")

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
