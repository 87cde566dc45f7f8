package runtime

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
)

// ConfigSource gives the pod manager the cluster's ConfigMaps and Secrets
// (the agent's replica, Secrets decrypted). ok is false for one that does
// not exist.
type ConfigSource interface {
	ConfigMap(namespace, name string) (cm *api.ConfigMap, ok bool)
	Secret(namespace, name string) (s *api.Secret, ok bool)
	// Claim returns a PersistentVolumeClaim.
	Claim(namespace, name string) (c *api.PersistentVolumeClaim, ok bool)
}

// PodContext is what the downward API reads besides the pod spec: where
// the pod runs and with what address.
type PodContext struct {
	NodeName string
	HostIP   string
	PodIP    string
	// NodeCPUMilli and NodeMemBytes stand for a limit a container does not
	// set (Kubernetes uses the node's allocatable).
	NodeCPUMilli int64
	NodeMemBytes int64
}

// envNameRE is what envFrom keys must be to become variables.
var envNameRE = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

func isOptional(b *bool) bool { return b != nil && *b }

// ResolveEnv returns the environment of container c of pod p, as
// KEY=VALUE: HOSTNAME, then every envFrom source in order, then env in
// order, a later definition of a name replacing an earlier one in place.
// A ConfigMap, Secret or key that does not exist and is not optional is a
// *ConfigError saying which (the container waits with
// CreateContainerConfigError). Keys of an envFrom source that are not
// valid variable names are skipped and listed in skipped. ResolveEnv is
// pure: it reads only its arguments.
func ResolveEnv(p *api.Pod, c *api.Container, pc PodContext, src ConfigSource) (env []string, skipped []string, err error) {
	ns := p.Metadata.Namespace
	var names []string
	values := map[string]string{}
	set := func(k, v string) {
		if _, ok := values[k]; !ok {
			names = append(names, k)
		}
		values[k] = v
	}
	set("HOSTNAME", p.Metadata.Name)
	for _, from := range c.EnvFrom {
		var vals map[string][]byte
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := src.ConfigMap(ns, from.ConfigMapRef.Name)
			if !ok {
				if isOptional(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, &ConfigError{Msg: fmt.Sprintf("configmap %q not found", from.ConfigMapRef.Name)}
			}
			vals = cm.Values()
			for k := range cm.BinaryData {
				delete(vals, k) // as Kubernetes: envFrom takes data only
			}
		case from.SecretRef != nil:
			s, ok := src.Secret(ns, from.SecretRef.Name)
			if !ok {
				if isOptional(from.SecretRef.Optional) {
					continue
				}
				return nil, nil, &ConfigError{Msg: fmt.Sprintf("secret %q not found", from.SecretRef.Name)}
			}
			vals = s.Values()
		}
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := from.Prefix + k
			if !envNameRE.MatchString(name) {
				skipped = append(skipped, name)
				continue
			}
			set(name, string(vals[k]))
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, e.Value)
			continue
		}
		v, ok, err := envValue(p, c, pc, src, e.ValueFrom)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			set(e.Name, v)
		}
	}
	for _, k := range names {
		env = append(env, k+"="+values[k])
	}
	return env, skipped, nil
}

// envValue resolves one valueFrom; ok is false for an optional value that
// does not exist (the variable is then not set, as in Kubernetes).
func envValue(p *api.Pod, c *api.Container, pc PodContext, src ConfigSource, from *api.EnvVarSource) (string, bool, error) {
	ns := p.Metadata.Namespace
	switch {
	case from.FieldRef != nil:
		v, err := FieldValue(p, pc, from.FieldRef.FieldPath)
		return v, err == nil, err
	case from.ResourceFieldRef != nil:
		v, err := ResourceValue(p, c, pc, from.ResourceFieldRef)
		return v, err == nil, err
	case from.ConfigMapKeyRef != nil:
		r := from.ConfigMapKeyRef
		cm, ok := src.ConfigMap(ns, r.Name)
		if !ok {
			if isOptional(r.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{Msg: fmt.Sprintf("configmap %q not found", r.Name)}
		}
		v, ok := cm.Values()[r.Key]
		if !ok {
			if isOptional(r.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{Msg: fmt.Sprintf("couldn't find key %s in ConfigMap %s/%s", r.Key, ns, r.Name)}
		}
		return string(v), true, nil
	case from.SecretKeyRef != nil:
		r := from.SecretKeyRef
		s, ok := src.Secret(ns, r.Name)
		if !ok {
			if isOptional(r.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{Msg: fmt.Sprintf("secret %q not found", r.Name)}
		}
		v, ok := s.Values()[r.Key]
		if !ok {
			if isOptional(r.Optional) {
				return "", false, nil
			}
			return "", false, &ConfigError{Msg: fmt.Sprintf("couldn't find key %s in Secret %s/%s", r.Key, ns, r.Name)}
		}
		return string(v), true, nil
	}
	return "", false, nil
}

// FieldValue is the value of a downward API field of the pod.
func FieldValue(p *api.Pod, pc PodContext, fieldPath string) (string, error) {
	if field, key, ok := api.ParseFieldSubscript(fieldPath); ok {
		if field == "labels" {
			return p.Metadata.Labels[key], nil
		}
		return p.Metadata.Annotations[key], nil
	}
	switch fieldPath {
	case "metadata.name":
		return p.Metadata.Name, nil
	case "metadata.namespace":
		return p.Metadata.Namespace, nil
	case "metadata.uid":
		return p.Metadata.UID, nil
	case "metadata.labels":
		return formatMap(p.Metadata.Labels), nil
	case "metadata.annotations":
		return formatMap(p.Metadata.Annotations), nil
	case "spec.nodeName":
		return pc.NodeName, nil
	case "spec.serviceAccountName":
		return "default", nil // chorus has no service accounts: every pod runs as the namespace's default
	case "status.podIP":
		return pc.PodIP, nil
	case "status.hostIP":
		return pc.HostIP, nil
	}
	return "", &ConfigError{Msg: fmt.Sprintf("unsupported fieldPath %q", fieldPath)}
}

// formatMap renders labels or annotations as the downward API does:
// key="value" lines, sorted by key.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return b.String()
}

// ResourceValue is a container's limit or request in units of the
// selector's divisor, rounded up (as Kubernetes does). An unset limit is
// the node's capacity; an unset request is the limit when it is set, else
// 0.
func ResourceValue(p *api.Pod, c *api.Container, pc PodContext, r *api.ResourceFieldSelector) (string, error) {
	if r.ContainerName != "" {
		c = nil
		for _, list := range [][]api.Container{p.Spec.InitContainers, p.Spec.Containers} {
			for i := range list {
				if list[i].Name == r.ContainerName {
					c = &list[i]
				}
			}
		}
		if c == nil {
			return "", &ConfigError{Msg: fmt.Sprintf("resourceFieldRef: no container %q in the pod", r.ContainerName)}
		}
	}
	kind, res, _ := strings.Cut(r.Resource, ".")
	q := ""
	switch kind {
	case "limits":
		q = c.Resources.Limits[res]
	case "requests":
		if q = c.Resources.Requests[res]; q == "" {
			q = c.Resources.Limits[res]
		}
	default:
		return "", &ConfigError{Msg: fmt.Sprintf("unsupported resource %q", r.Resource)}
	}
	var val, div int64
	var err error
	switch res {
	case "cpu":
		val, div = pc.NodeCPUMilli, 1000
		if kind == "requests" {
			val = 0
		}
		if q != "" {
			if val, err = api.ParseCPU(q); err != nil {
				return "", &ConfigError{Msg: err.Error()}
			}
		}
		if r.Divisor != "" {
			if div, err = api.ParseCPU(r.Divisor); err != nil {
				return "", &ConfigError{Msg: err.Error()}
			}
		}
	case "memory":
		val, div = pc.NodeMemBytes, 1
		if kind == "requests" {
			val = 0
		}
		if q != "" {
			if val, err = api.ParseMemory(q); err != nil {
				return "", &ConfigError{Msg: err.Error()}
			}
		}
		if r.Divisor != "" {
			if div, err = api.ParseMemory(r.Divisor); err != nil {
				return "", &ConfigError{Msg: err.Error()}
			}
		}
	default:
		return "", &ConfigError{Msg: fmt.Sprintf("unsupported resource %q", r.Resource)}
	}
	if div <= 0 {
		return "", &ConfigError{Msg: fmt.Sprintf("divisor %q must be greater than 0", r.Divisor)}
	}
	return strconv.FormatInt((val+div-1)/div, 10), nil
}
