package runtime

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
)

// SecurityConfig is how a container is confined: a pod's and a container's
// securityContext merged, as Kubernetes merges them (the container's field
// wins). The zero value is chorus' default: the image's user, the default
// capability set, the RuntimeDefault seccomp profile, no privilege
// escalation (no_new_privs), a writable root filesystem.
type SecurityConfig struct {
	RunAsUser          *int64   // uid, nil for the image's user
	RunAsGroup         *int64   // gid, nil for the user's group
	RunAsNonRoot       bool     // refuse to start as uid 0
	SupplementalGroups []int64  // additional gids (supplementalGroups and fsGroup)
	CapAdd, CapDrop    []string // canonical names without CAP_ ("NET_ADMIN"), or "ALL"
	Privileged         bool     // all capabilities and devices, no seccomp filter
	ReadOnlyRootFS     bool     //
	AllowEscalation    bool     // no no_new_privs: setuid binaries and file capabilities work
	SeccompUnconfined  bool     // no seccomp filter (the RuntimeDefault profile otherwise)
}

// ConfigError is a container configuration that cannot be started as
// asked, like Kubernetes' CreateContainerConfigError (runAsNonRoot with an
// image that runs as root). Retrying does not help until the pod changes.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// securityConfig merges the securityContext of pod spec s and of its
// container c.
func securityConfig(s *api.PodSpec, c *api.Container) SecurityConfig {
	var out SecurityConfig
	seccomp := (*api.SeccompProfile)(nil)
	if p := s.SecurityContext; p != nil {
		out.RunAsUser, out.RunAsGroup = p.RunAsUser, p.RunAsGroup
		out.RunAsNonRoot = p.RunAsNonRoot != nil && *p.RunAsNonRoot
		out.SupplementalGroups = append(out.SupplementalGroups, p.SupplementalGroups...)
		if p.FSGroup != nil {
			out.SupplementalGroups = append(out.SupplementalGroups, *p.FSGroup)
		}
		seccomp = p.SeccompProfile
	}
	allowEscalation := (*bool)(nil)
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			out.RunAsUser = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			out.RunAsGroup = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			out.RunAsNonRoot = *sc.RunAsNonRoot
		}
		if sc.SeccompProfile != nil {
			seccomp = sc.SeccompProfile
		}
		if caps := sc.Capabilities; caps != nil {
			out.CapAdd, out.CapDrop = canonicalCaps(caps.Add), canonicalCaps(caps.Drop)
		}
		out.Privileged = sc.Privileged != nil && *sc.Privileged
		out.ReadOnlyRootFS = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
		allowEscalation = sc.AllowPrivilegeEscalation
	}
	out.AllowEscalation = out.Privileged || allowEscalation != nil && *allowEscalation
	out.SeccompUnconfined = out.Privileged || seccomp != nil && seccomp.Type == api.SeccompUnconfined
	return out
}

func canonicalCaps(names []string) []string {
	var out []string
	for _, n := range names {
		if c, ok := api.CapabilityName(n); ok {
			out = append(out, c)
		}
	}
	return out
}

// applyCaps returns the capability set (CAP_ names) that Kubernetes' rules
// make of base: add ALL gives every capability in all, drop ALL empties the
// set, then the named ones are added, then the named ones dropped.
func applyCaps(base, all, add, drop []string) []string {
	set := map[string]bool{}
	for _, c := range base {
		set[c] = true
	}
	if slices.Contains(add, "ALL") {
		for _, c := range all {
			set[c] = true
		}
	}
	if slices.Contains(drop, "ALL") {
		clear(set)
	}
	for _, c := range add {
		if c != "ALL" {
			set["CAP_"+c] = true
		}
	}
	for _, c := range drop {
		delete(set, "CAP_"+c)
	}
	return slices.Sorted(maps.Keys(set))
}

// checkNonRoot refuses, as the kubelet does, a container that must not run
// as root but would: runAsUser 0, or no runAsUser and an image whose user is
// root (or a name, which cannot be verified). imageUser is the image
// config's User ("", "1000", "1000:1000", "app"); who names the container
// in the message ("pod: default/web, container: web").
func checkNonRoot(sec SecurityConfig, imageUser, who string) error {
	if !sec.RunAsNonRoot {
		return nil
	}
	if sec.RunAsUser != nil {
		if *sec.RunAsUser == 0 {
			return &ConfigError{Msg: fmt.Sprintf("container's runAsUser breaks non-root policy (%s)", who)}
		}
		return nil
	}
	user, _, _ := strings.Cut(imageUser, ":")
	if user == "" || user == "root" {
		return &ConfigError{Msg: fmt.Sprintf("container has runAsNonRoot and image will run as root (%s)", who)}
	}
	uid, err := strconv.ParseUint(user, 10, 32)
	if err != nil {
		return &ConfigError{Msg: fmt.Sprintf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (%s)", user, who)}
	}
	if uid == 0 {
		return &ConfigError{Msg: fmt.Sprintf("container has runAsNonRoot and image will run as root (%s)", who)}
	}
	return nil
}
