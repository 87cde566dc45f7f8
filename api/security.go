package api

import "strings"

// maxID is the largest uid or gid Kubernetes accepts.
const maxID = 2147483647

// knownCapabilities are Linux' capabilities, without their CAP_ prefix, in
// the kernel's order (CAP_CHOWN is 0).
var knownCapabilities = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
	"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
	"IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
	"LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
	"WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// CapabilityName returns the canonical name of capability c ("NET_ADMIN"
// for "net_admin" or "CAP_NET_ADMIN"), "ALL" for "all", and false if c is
// not a capability Linux knows.
func CapabilityName(c string) (string, bool) {
	u := strings.ToUpper(c)
	if u == "ALL" {
		return u, true
	}
	u = strings.TrimPrefix(u, "CAP_")
	for _, k := range knownCapabilities {
		if k == u {
			return u, true
		}
	}
	return "", false
}

// validateSecurityContext checks the pod's and its containers' security
// settings: ids in range, known capabilities, a seccomp profile chorus
// supports, and no combination that cannot hold (runAsNonRoot with
// runAsUser 0, no privilege escalation for a privileged container).
func (v *validator) validateSecurityContext(s *PodSpec, path string) {
	psc := s.SecurityContext
	if s.HostUsers != nil && !*s.HostUsers {
		v.add(child(path, "hostUsers"), "false is not supported: a pod's network namespace is made by the host before its containers, "+
			"and runc 1.1 cannot exec into (nor run exec probes in) a container whose user namespace does not own it; leave hostUsers unset")
	}
	if psc != nil {
		p := child(path, "securityContext")
		v.id(psc.RunAsUser, child(p, "runAsUser"))
		v.id(psc.RunAsGroup, child(p, "runAsGroup"))
		v.id(psc.FSGroup, child(p, "fsGroup"))
		for i, g := range psc.SupplementalGroups {
			v.id(&g, index(child(p, "supplementalGroups"), i))
		}
		v.seccomp(psc.SeccompProfile, child(p, "seccompProfile"))
	}
	for _, c := range s.allContainers(path) {
		sc := c.ctr.SecurityContext
		cp := c.path
		// runAsNonRoot with a runAsUser of 0, the container's or the pod's.
		nonRoot, user, userAt := false, (*int64)(nil), ""
		if psc != nil {
			nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
			user, userAt = psc.RunAsUser, child(child(path, "securityContext"), "runAsUser")
		}
		if sc != nil {
			if sc.RunAsNonRoot != nil {
				nonRoot = *sc.RunAsNonRoot
			}
			if sc.RunAsUser != nil {
				user, userAt = sc.RunAsUser, child(cp, "securityContext.runAsUser")
			}
		}
		if nonRoot && user != nil && *user == 0 {
			v.add(child(cp, "securityContext.runAsNonRoot"), "is true but %s is 0: the container would run as root", userAt)
		}
		if sc == nil {
			continue
		}
		p := child(cp, "securityContext")
		v.id(sc.RunAsUser, child(p, "runAsUser"))
		v.id(sc.RunAsGroup, child(p, "runAsGroup"))
		v.seccomp(sc.SeccompProfile, child(p, "seccompProfile"))
		sysAdmin := false
		if c := sc.Capabilities; c != nil {
			for _, list := range []struct {
				name  string
				names []string
			}{{"add", c.Add}, {"drop", c.Drop}} {
				for j, name := range list.names {
					canon, ok := CapabilityName(name)
					if !ok {
						v.add(index(child(child(p, "capabilities"), list.name), j),
							"unknown capability %q: want a Linux capability like NET_ADMIN or CAP_NET_ADMIN, or ALL", name)
					}
					if list.name == "add" && (canon == "SYS_ADMIN" || canon == "ALL") {
						sysAdmin = true
					}
				}
			}
		}
		privileged := sc.Privileged != nil && *sc.Privileged
		if ape := sc.AllowPrivilegeEscalation; ape != nil && !*ape {
			switch {
			case privileged:
				v.add(child(p, "allowPrivilegeEscalation"), "cannot be false when privileged is true")
			case sysAdmin:
				v.add(child(p, "allowPrivilegeEscalation"), "cannot be false when capabilities.add has SYS_ADMIN (or ALL)")
			}
		}
	}
}

// id checks a uid or gid.
func (v *validator) id(x *int64, path string) {
	if x != nil && (*x < 0 || *x > maxID) {
		v.add(path, "must be between 0 and %d, inclusive, got %d", maxID, *x)
	}
}

func (v *validator) seccomp(sp *SeccompProfile, path string) {
	if sp == nil {
		return
	}
	switch sp.Type {
	case SeccompRuntimeDefault, SeccompUnconfined:
		if sp.LocalhostProfile != nil {
			v.add(child(path, "localhostProfile"), "may only be set when type is Localhost")
		}
	case SeccompLocalhost:
		v.add(child(path, "type"), "Localhost profiles are not supported: chorus runs the same containers on every peer and reads no profile files from them; use RuntimeDefault (the default) or Unconfined")
	case "":
		v.add(child(path, "type"), "required: RuntimeDefault or Unconfined")
	default:
		v.add(child(path, "type"), "unsupported value %q: supported values: RuntimeDefault, Unconfined", sp.Type)
	}
}
