package api

import (
	"errors"
	"strings"
	"testing"
)

// securityDeployment is a deployment with podSpec lines added to its pod
// spec and container lines to its container (both indented already).
func securityDeployment(podSpec, container string) string {
	return strings.Replace(deployment("web", container), "    spec:\n      containers:", "    spec:\n"+podSpec+"      containers:", 1)
}

func TestSecurityContextRejected(t *testing.T) {
	const base = "spec.template.spec."
	tests := []struct {
		name, pod, container string
		want                 []string // one substring per expected error
	}{
		{"negative runAsUser", "", "        securityContext: {runAsUser: -1}\n",
			[]string{base + "containers[0].securityContext.runAsUser: must be between 0 and 2147483647, inclusive, got -1"}},
		{"runAsGroup too big", "      securityContext: {runAsGroup: 2147483648}\n", "",
			[]string{base + "securityContext.runAsGroup: must be between 0 and 2147483647, inclusive, got 2147483648"}},
		{"bad supplemental group and fsGroup", "      securityContext: {supplementalGroups: [1, -2], fsGroup: -3}\n", "",
			[]string{base + "securityContext.fsGroup: must be between", base + "securityContext.supplementalGroups[1]: must be between"}},
		{"runAsNonRoot with runAsUser 0", "", "        securityContext: {runAsNonRoot: true, runAsUser: 0}\n",
			[]string{base + "containers[0].securityContext.runAsNonRoot: is true but " + base + "containers[0].securityContext.runAsUser is 0: the container would run as root"}},
		{"pod runAsNonRoot, pod runAsUser 0", "      securityContext: {runAsNonRoot: true, runAsUser: 0}\n", "",
			[]string{base + "containers[0].securityContext.runAsNonRoot: is true but " + base + "securityContext.runAsUser is 0"}},
		{"unknown capability", "", "        securityContext: {capabilities: {add: [NET_ADMIN, CAP_FLY], drop: [all, sys-admin]}}\n",
			[]string{base + `containers[0].securityContext.capabilities.add[1]: unknown capability "CAP_FLY"`,
				base + `containers[0].securityContext.capabilities.drop[1]: unknown capability "sys-admin"`}},
		{"privileged without escalation", "", "        securityContext: {privileged: true, allowPrivilegeEscalation: false}\n",
			[]string{base + "containers[0].securityContext.allowPrivilegeEscalation: cannot be false when privileged is true"}},
		{"SYS_ADMIN without escalation", "", "        securityContext: {capabilities: {add: [CAP_SYS_ADMIN]}, allowPrivilegeEscalation: false}\n",
			[]string{base + "containers[0].securityContext.allowPrivilegeEscalation: cannot be false when capabilities.add has SYS_ADMIN"}},
		{"Localhost seccomp", "      securityContext: {seccompProfile: {type: Localhost, localhostProfile: my.json}}\n", "",
			[]string{base + "securityContext.seccompProfile.type: Localhost profiles are not supported"}},
		{"seccomp without type", "", "        securityContext: {seccompProfile: {}}\n",
			[]string{base + "containers[0].securityContext.seccompProfile.type: required: RuntimeDefault or Unconfined"}},
		{"seccomp unknown type", "", "        securityContext: {seccompProfile: {type: Strict}}\n",
			[]string{base + `containers[0].securityContext.seccompProfile.type: unsupported value "Strict"`}},
		{"localhostProfile with RuntimeDefault", "", "        securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: x}}\n",
			[]string{base + "containers[0].securityContext.seccompProfile.localhostProfile: may only be set when type is Localhost"}},
		{"hostUsers false", "      hostUsers: false\n", "",
			[]string{base + "hostUsers: false is not supported: a pod's network namespace is made by the host before its containers"}},
		{"privileged not a bool", "", "        securityContext: {privileged: \"yes\"}\n",
			[]string{base + `containers[0].securityContext.privileged: want true or false, got "yes"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, err := Decode([]byte(securityDeployment(tt.pod, tt.container)), "app.yaml")
			var me *ManifestError
			if !errors.As(err, &me) || objs != nil {
				t.Fatalf("Decode = %v, %v; want a *ManifestError", objs, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain\n  %s\ngot:\n%s", w, err)
				}
			}
			if len(me.Errors) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(me.Errors), len(tt.want), err)
			}
		})
	}
}

func TestSecurityContextAccepted(t *testing.T) {
	manifest := securityDeployment(`      hostUsers: true
      securityContext:
        runAsUser: 1000
        runAsGroup: 2000
        runAsNonRoot: true
        supplementalGroups: [3000]
        fsGroup: 4000
        seccompProfile: {type: RuntimeDefault}
        sysctls: [{name: net.core.somaxconn, value: "1024"}]
`, `        securityContext:
          runAsUser: 1001
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          privileged: false
          capabilities: {drop: [ALL], add: [NET_BIND_SERVICE, cap_chown]}
          seccompProfile: {type: Unconfined}
          procMount: Default
`)
	objs, warnings, err := Decode([]byte(manifest), "app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	wantWarnings := []string{
		`app.yaml: document 1 (Deployment web): ignored field "spec.template.spec.containers[0].securityContext.procMount": chorus does not support it (line 30)`,
		`app.yaml: document 1 (Deployment web): ignored field "spec.template.spec.securityContext.sysctls": chorus does not support it (line 19)`,
	}
	if strings.Join(warnings, "\n") != strings.Join(wantWarnings, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warnings, "\n"), strings.Join(wantWarnings, "\n"))
	}
	spec := objs[0].(*Deployment).Spec.Template.Spec
	psc, sc := spec.SecurityContext, spec.Containers[0].SecurityContext
	switch {
	case spec.HostUsers == nil || !*spec.HostUsers:
		t.Errorf("hostUsers = %v", spec.HostUsers)
	case psc == nil || *psc.RunAsUser != 1000 || *psc.RunAsGroup != 2000 || !*psc.RunAsNonRoot ||
		len(psc.SupplementalGroups) != 1 || psc.SupplementalGroups[0] != 3000 || *psc.FSGroup != 4000 ||
		psc.SeccompProfile.Type != SeccompRuntimeDefault:
		t.Errorf("pod securityContext = %+v", psc)
	case sc == nil || *sc.RunAsUser != 1001 || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || *sc.Privileged ||
		strings.Join(sc.Capabilities.Drop, ",") != "ALL" || strings.Join(sc.Capabilities.Add, ",") != "NET_BIND_SERVICE,cap_chown" ||
		sc.SeccompProfile.Type != SeccompUnconfined:
		t.Errorf("container securityContext = %+v", sc)
	}
}

func TestCapabilityName(t *testing.T) {
	for in, want := range map[string]string{
		"NET_ADMIN": "NET_ADMIN", "CAP_NET_ADMIN": "NET_ADMIN", "net_admin": "NET_ADMIN", "cap_chown": "CHOWN",
		"ALL": "ALL", "all": "ALL", "CHECKPOINT_RESTORE": "CHECKPOINT_RESTORE",
		"": "", "CAP_": "", "CAP_ALL": "", "NET-ADMIN": "", "FLY": "",
	} {
		got, ok := CapabilityName(in)
		if got != want || ok != (want != "") {
			t.Errorf("CapabilityName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if len(knownCapabilities) != 41 {
		t.Errorf("%d capabilities, want 41 (CAP_CHOWN to CAP_CHECKPOINT_RESTORE)", len(knownCapabilities))
	}
}
