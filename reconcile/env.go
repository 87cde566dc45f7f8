package reconcile

import (
	"slices"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
)

// serviceEnv returns the Kubernetes-style variables of the services in
// namespace ns: NAME_SERVICE_HOST, NAME_SERVICE_PORT, NAME_SERVICE_PORT_<PORT NAME>.
func serviceEnv(services []*api.Service, ips map[string]string, ns string) []api.EnvVar {
	var env []api.EnvVar
	for _, s := range services {
		if s.Metadata.Namespace != ns || len(s.Spec.Ports) == 0 {
			continue
		}
		ip := ips[api.ObjectKey(s)]
		if ip == "" {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(s.Metadata.Name, "-", "_"))
		env = append(env, api.EnvVar{Name: prefix + "_SERVICE_HOST", Value: ip},
			api.EnvVar{Name: prefix + "_SERVICE_PORT", Value: strconv.Itoa(int(s.Spec.Ports[0].Port))})
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env = append(env, api.EnvVar{Name: prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")),
					Value: strconv.Itoa(int(p.Port))})
			}
		}
	}
	return env
}

// withServiceEnv adds the service variables to every container of p,
// before the container's own variables (which win).
func withServiceEnv(p *api.Pod, env []api.EnvVar) {
	if len(env) == 0 {
		return
	}
	p.Spec.Containers = slices.Clone(p.Spec.Containers) // not the caller's
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		c.Env = append(append([]api.EnvVar{}, env...), c.Env...)
	}
}
