package api

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

const (
	// maxDeploymentName keeps pod names "<name>-<10 hex>-<ordinal up to
	// 4 digits>" within 63 characters.
	maxDeploymentName = 47
	// maxReplicas keeps ordinals within 4 digits.
	maxReplicas = 10000
	// maxAnnotationsBytes is Kubernetes' limit on all annotations of an object.
	maxAnnotationsBytes = 256 << 10
)

var (
	dns1123LabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1035LabelRE  = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	dns1123SubRE    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelNameRE     = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	envNameRE       = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	ianaSvcNameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	ianaHasLetterRE = regexp.MustCompile(`[a-z]`)
)

// Validate checks o, which should be defaulted (SetDefaults), and returns
// what is wrong with it, each with the path of the field at fault. Kind and
// Name are set in each error; Source and Doc are left for Decode. Fields that
// Kubernetes accepts but chorus ignores are not errors.
func Validate(o Object) []FieldError {
	errs, _ := validate(o)
	return errs
}

// reservedLabels checks that a pod of a manifest (a standalone pod) does
// not carry the labels that mark the pods chorus derives from deployments
// and daemon sets.
func reservedLabels(o Object) []FieldError {
	p, ok := o.(*Pod)
	if !ok {
		return nil
	}
	v := &validator{kind: KindPod, name: p.Metadata.Name}
	for _, l := range []string{LabelDeployment, LabelDaemonSet} {
		if _, ok := p.Metadata.Labels[l]; ok {
			v.add(keyPath("metadata.labels", l), "reserved: chorus sets it on the pods of deployments and daemon sets")
		}
	}
	return v.errs
}

// validate returns errors and warnings (things chorus ignores).
func validate(o Object) (errs, warns []FieldError) {
	v := &validator{kind: o.GetKind(), name: o.Meta().Name}
	switch o := o.(type) {
	case *Namespace:
		v.objectMeta(&o.Metadata, "metadata")
	case *Deployment:
		v.objectMeta(&o.Metadata, "metadata")
		v.deploymentSpec(&o.Spec, "spec")
	case *Service:
		v.objectMeta(&o.Metadata, "metadata")
		v.serviceSpec(&o.Spec, "spec")
	case *DaemonSet:
		v.objectMeta(&o.Metadata, "metadata")
		v.deploymentSpec(o.Spec.asDeploymentSpec(), "spec")
		if t := o.Spec.UpdateStrategy.Type; t != StrategyRollingUpdate && t != "OnDelete" {
			v.add("spec.updateStrategy.type", "must be RollingUpdate or OnDelete, got %q", t)
		}
	case *Pod:
		v.objectMeta(&o.Metadata, "metadata")
		v.podSpec(&o.Spec, "spec", false)
	case *ConfigMap:
		v.objectMeta(&o.Metadata, "metadata")
		v.configMap(o)
	case *Secret:
		v.objectMeta(&o.Metadata, "metadata")
		v.secret(o)
	case *Job:
		v.objectMeta(&o.Metadata, "metadata")
		v.jobSpec(&o.Spec, "spec", false)
	case *CronJob:
		v.objectMeta(&o.Metadata, "metadata")
		v.cronJobSpec(&o.Spec)
	case *ServiceAccount:
		v.objectMeta(&o.Metadata, "metadata")
	case *StatefulSet:
		v.objectMeta(&o.Metadata, "metadata")
		v.statefulSetSpec(&o.Spec)
	case *PersistentVolumeClaim:
		v.objectMeta(&o.Metadata, "metadata")
		v.claimSpec(&o.Spec, "spec")
	case *Ingress:
		v.objectMeta(&o.Metadata, "metadata")
		v.ingressSpec(&o.Spec, "spec")
	case *IngressClass:
		v.objectMeta(&o.Metadata, "metadata")
		v.ingressClass(o)
	case *HorizontalPodAutoscaler:
		v.objectMeta(&o.Metadata, "metadata")
		v.hpaSpec(&o.Spec)
	}
	return v.errs, v.warns
}

type validator struct {
	kind, name  string
	errs, warns []FieldError
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Kind: v.kind, Name: v.name, Field: field, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) warn(field, format string, args ...any) {
	v.warns = append(v.warns, FieldError{Kind: v.kind, Name: v.name, Field: field, Reason: fmt.Sprintf(format, args...)})
}

// child returns the path of field name under path.
func child(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// keyPath returns the path of map key k under path: path.k for a plain key,
// path[k] for one with dots, slashes or other punctuation.
func keyPath(path, k string) string {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return path + "[" + k + "]"
		}
	}
	if k == "" {
		return path + "[]"
	}
	return child(path, k)
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func (v *validator) objectMeta(m *ObjectMeta, path string) {
	name := child(path, "name")
	switch {
	case m.Name == "":
		v.add(name, "required")
	case v.kind == KindNamespace:
		if msg := checkDNS1123Label(m.Name); msg != "" {
			v.add(name, "%q is not a valid namespace name: %s", m.Name, msg)
		}
	case v.kind == KindService:
		if msg := checkDNS1035Label(m.Name); msg != "" {
			v.add(name, "%q is not a valid service name: %s", m.Name, msg)
		}
	case v.kind == KindDeployment || v.kind == KindDaemonSet:
		if msg := checkDNS1123Subdomain(m.Name); msg != "" {
			v.add(name, "%q is not a valid deployment name: %s", m.Name, msg)
		} else if len(m.Name) > maxDeploymentName {
			v.add(name, "%q is %d characters; a deployment name may have at most %d, so that its pod names (\"<name>-<10-character hash>-<ordinal>\") fit in 63",
				m.Name, len(m.Name), maxDeploymentName)
		}
	default:
		if msg := checkDNS1123Subdomain(m.Name); msg != "" {
			v.add(name, "%q is not a valid name: %s", m.Name, msg)
		}
	}
	if namespaced(v.kind) && m.Namespace != "" {
		if msg := checkDNS1123Label(m.Namespace); msg != "" {
			v.add(child(path, "namespace"), "%q is not a valid namespace name: %s", m.Namespace, msg)
		}
	}
	v.labels(m.Labels, child(path, "labels"))
	v.annotations(m.Annotations, child(path, "annotations"))
}

func (v *validator) labels(labels map[string]string, path string) {
	for _, k := range sortedKeys(labels) {
		p := keyPath(path, k)
		if msg := checkQualifiedName(k); msg != "" {
			v.add(p, "invalid label key %q: %s", k, msg)
		}
		if msg := checkLabelValue(labels[k]); msg != "" {
			v.add(p, "invalid label value %q: %s", labels[k], msg)
		}
	}
}

func (v *validator) annotations(ann map[string]string, path string) {
	size := 0
	for _, k := range sortedKeys(ann) {
		size += len(k) + len(ann[k])
		if msg := checkQualifiedName(k); msg != "" {
			v.add(keyPath(path, k), "invalid annotation key %q: %s", k, msg)
		}
	}
	if size > maxAnnotationsBytes {
		v.add(path, "annotations take %d bytes; the limit is %d", size, maxAnnotationsBytes)
	}
}

func (v *validator) deploymentSpec(s *DeploymentSpec, path string) {
	if s.Replicas != nil {
		switch r := *s.Replicas; {
		case r < 0:
			v.add(child(path, "replicas"), "must be greater than or equal to 0, got %d", r)
		case r > maxReplicas:
			v.add(child(path, "replicas"), "must be at most %d, got %d", maxReplicas, r)
		}
	}
	if s.MinReadySeconds < 0 {
		v.add(child(path, "minReadySeconds"), "must be greater than or equal to 0, got %d", s.MinReadySeconds)
	}
	if s.RevisionHistoryLimit != nil && *s.RevisionHistoryLimit < 0 {
		v.add(child(path, "revisionHistoryLimit"), "must be greater than or equal to 0, got %d", *s.RevisionHistoryLimit)
	}
	tmpl := child(path, "template")
	tmplLabels := child(child(tmpl, "metadata"), "labels")
	sel := child(path, "selector")
	switch {
	case s.Selector == nil:
		v.add(sel, "required: set spec.template.metadata.labels (spec.selector.matchLabels defaults to them)")
	case len(s.Selector.MatchLabels) == 0 && len(s.Selector.MatchExpressions) == 0:
		v.add(sel, "must not be empty: a deployment needs labels to find its pods")
	case len(s.Selector.MatchExpressions) == 0 && maps.Equal(s.Selector.MatchLabels, s.Template.Metadata.Labels):
		// Matches; the labels are checked as the template's below.
	default:
		if v.selector(s.Selector, sel) && !s.Selector.Matches(s.Template.Metadata.Labels) {
			reason := "does not match spec.template.metadata.labels"
			if len(s.Selector.MatchExpressions) == 0 {
				reason += fmt.Sprintf(" (selector %s, labels %s)", formatLabels(s.Selector.MatchLabels), formatLabels(s.Template.Metadata.Labels))
			}
			v.add(sel, "%s", reason)
		}
	}
	v.labels(s.Template.Metadata.Labels, tmplLabels)
	v.annotations(s.Template.Metadata.Annotations, child(child(tmpl, "metadata"), "annotations"))
	v.strategy(&s.Strategy, child(path, "strategy"))
	v.podSpec(&s.Template.Spec, child(tmpl, "spec"), true)
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// selector checks s and reports whether it is valid.
func (v *validator) selector(s *LabelSelector, path string) bool {
	n := len(v.errs)
	v.labels(s.MatchLabels, child(path, "matchLabels"))
	for i, r := range s.MatchExpressions {
		p := index(child(path, "matchExpressions"), i)
		if msg := checkQualifiedName(r.Key); msg != "" {
			v.add(child(p, "key"), "invalid label key %q: %s", r.Key, msg)
		}
		switch r.Operator {
		case OpIn, OpNotIn:
			if len(r.Values) == 0 {
				v.add(child(p, "values"), "must be specified when operator is %s", r.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(r.Values) > 0 {
				v.add(child(p, "values"), "may not be specified when operator is %s", r.Operator)
			}
		default:
			v.add(child(p, "operator"), "unsupported value %q: supported values: In, NotIn, Exists, DoesNotExist", r.Operator)
		}
		for j, val := range r.Values {
			if msg := checkLabelValue(val); msg != "" {
				v.add(index(child(p, "values"), j), "invalid label value %q: %s", val, msg)
			}
		}
	}
	return len(v.errs) == n
}

func (v *validator) strategy(s *DeploymentStrategy, path string) {
	switch s.Type {
	case "", StrategyRollingUpdate:
	case StrategyRecreate:
		if s.RollingUpdate != nil {
			v.add(child(path, "rollingUpdate"), "may not be specified when strategy type is Recreate")
		}
		return
	default:
		v.add(child(path, "type"), "unsupported value %q: supported values: RollingUpdate, Recreate", s.Type)
		return
	}
	ru := s.RollingUpdate
	if ru == nil {
		return
	}
	p := child(path, "rollingUpdate")
	unavailable := v.intOrPercent(ru.MaxUnavailable, child(p, "maxUnavailable"))
	surge := v.intOrPercent(ru.MaxSurge, child(p, "maxSurge"))
	if unavailable == 0 && surge == 0 {
		v.add(child(p, "maxUnavailable"), "may not be 0 when maxSurge is 0: the rollout could never make progress")
	}
}

// intOrPercent checks a non-negative integer or a percentage from 0% to
// 100%, returning it (a percentage as its number), -1 if unset or invalid.
func (v *validator) intOrPercent(x *IntOrString, path string) int {
	if x == nil {
		return -1
	}
	if !x.IsString {
		if x.IntVal < 0 {
			v.add(path, "must be greater than or equal to 0, got %d", x.IntVal)
			return -1
		}
		return int(x.IntVal)
	}
	s, ok := strings.CutSuffix(x.StrVal, "%")
	p, err := strconv.Atoi(s)
	if !ok || err != nil || p < 0 || strings.HasPrefix(s, "+") {
		v.add(path, "%q is neither a non-negative integer nor a percentage like 25%%", x.StrVal)
		return -1
	}
	if p > 100 {
		v.add(path, "%q is more than 100%%", x.StrVal)
		return -1
	}
	return p
}

func (v *validator) podSpec(s *PodSpec, path string, inDeployment bool) {
	containers := child(path, "containers")
	if len(s.Containers) == 0 {
		v.add(containers, "required: a pod needs at least one container")
	}
	rp := child(path, "restartPolicy")
	switch {
	case inDeployment && s.RestartPolicy != "" && s.RestartPolicy != RestartAlways:
		v.add(rp, "unsupported value %q: a deployment's pods must have restartPolicy Always", s.RestartPolicy)
	case s.RestartPolicy != "" && s.RestartPolicy != RestartAlways && s.RestartPolicy != RestartOnFailure && s.RestartPolicy != RestartNever:
		v.add(rp, "unsupported value %q: supported values: Always, OnFailure, Never", s.RestartPolicy)
	}
	v.labels(s.NodeSelector, child(path, "nodeSelector"))
	if s.Hostname != "" {
		if msg := checkDNS1123Label(s.Hostname); msg != "" {
			v.add(child(path, "hostname"), "%q is not a valid hostname: %s", s.Hostname, msg)
		}
	}
	if s.Subdomain != "" {
		if msg := checkDNS1123Label(s.Subdomain); msg != "" {
			v.add(child(path, "subdomain"), "%q is not a valid subdomain: %s", s.Subdomain, msg)
		}
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		v.add(child(path, "terminationGracePeriodSeconds"), "must be greater than or equal to 0, got %d", *g)
	}
	v.validateSecurityContext(s, path)
	volumes := v.volumes(s, path)
	all := s.allContainers(path)
	var ctrNames []string
	for _, c := range all {
		ctrNames = append(ctrNames, c.ctr.Name)
	}
	names := map[string]string{}
	portNames := map[string]string{}
	for _, pc := range all {
		c, p := pc.ctr, pc.path
		switch {
		case c.Name == "":
			v.add(child(p, "name"), "required")
		default:
			if msg := checkDNS1123Label(c.Name); msg != "" {
				v.add(child(p, "name"), "%q is not a valid container name: %s", c.Name, msg)
			} else if other, dup := names[c.Name]; dup {
				v.add(child(p, "name"), "duplicate container name %q (also %s)", c.Name, other)
			} else {
				names[c.Name] = p
			}
		}
		v.containerKind(c, p, pc.init)
		v.container(c, p, portNames)
		v.lifecycle(c.Lifecycle, child(p, "lifecycle"), c, s.TerminationGracePeriodSeconds)
		v.env(c, p, ctrNames)
		v.volumeMounts(c, p, volumes)
	}
}

// podContainer is a container of a pod spec with its field path.
type podContainer struct {
	ctr  *Container
	path string
	init bool
}

// allContainers returns the init containers then the containers of s,
// each with its path under path.
func (s *PodSpec) allContainers(path string) []podContainer {
	out := make([]podContainer, 0, len(s.InitContainers)+len(s.Containers))
	for i := range s.InitContainers {
		out = append(out, podContainer{&s.InitContainers[i], index(child(path, "initContainers"), i), true})
	}
	for i := range s.Containers {
		out = append(out, podContainer{&s.Containers[i], index(child(path, "containers"), i), false})
	}
	return out
}

// containerKind checks what only some kinds of containers may have, as
// Kubernetes does: restartPolicy only on an init container, and only
// Always (a sidecar); probes and lifecycle hooks not on an init container
// that is not a sidecar (it runs to completion before anything could use
// them).
func (v *validator) containerKind(c *Container, p string, init bool) {
	if c.RestartPolicy != nil {
		switch {
		case !init:
			v.add(child(p, "restartPolicy"), "may not be set for a container that is not an init container (only an init container with restartPolicy Always, a sidecar, has one)")
		case *c.RestartPolicy != RestartAlways:
			v.add(child(p, "restartPolicy"), "unsupported value %q: supported values: Always (a sidecar)", *c.RestartPolicy)
		}
	}
	if !init || c.IsSidecar() {
		return
	}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"lifecycle", c.Lifecycle != nil},
		{"livenessProbe", c.LivenessProbe != nil},
		{"readinessProbe", c.ReadinessProbe != nil},
		{"startupProbe", c.StartupProbe != nil},
	} {
		if f.set {
			v.add(child(p, f.name), "may not be set for an init container without restartPolicy Always: it runs to completion before the pod starts")
		}
	}
}

// lifecycle checks a container's postStart and preStop hooks.
func (v *validator) lifecycle(l *Lifecycle, path string, c *Container, grace *int64) {
	if l == nil {
		return
	}
	for _, h := range []struct {
		name string
		h    *LifecycleHandler
	}{{"postStart", l.PostStart}, {"preStop", l.PreStop}} {
		if h.h == nil {
			continue
		}
		hp := child(path, h.name)
		var handlers []string
		if h.h.Exec != nil {
			handlers = append(handlers, "exec")
			if len(h.h.Exec.Command) == 0 {
				v.add(child(child(hp, "exec"), "command"), "required")
			}
		}
		if h.h.HTTPGet != nil {
			handlers = append(handlers, "httpGet")
			v.httpGet(h.h.HTTPGet, child(hp, "httpGet"), c)
		}
		if h.h.TCPSocket != nil {
			handlers = append(handlers, "tcpSocket")
			v.probePort(h.h.TCPSocket.Port, child(child(hp, "tcpSocket"), "port"), c)
			v.warn(child(hp, "tcpSocket"), "deprecated: a tcpSocket lifecycle hook does nothing (as in Kubernetes)")
		}
		if h.h.Sleep != nil {
			handlers = append(handlers, "sleep")
			sec, max := h.h.Sleep.Seconds, int64(defaultGracePeriodSeconds)
			if grace != nil {
				max = *grace
			}
			if sec < 0 || sec > max {
				v.add(child(child(hp, "sleep"), "seconds"), "must be greater than or equal to 0 and less than or equal to terminationGracePeriodSeconds (%d), got %d", max, sec)
			}
		}
		switch len(handlers) {
		case 0:
			v.add(hp, "must specify a handler: one of exec, httpGet, sleep, tcpSocket")
		case 1:
		default:
			v.add(hp, "may not specify more than one handler, got %s", strings.Join(handlers, " and "))
		}
	}
}

// httpGet checks an httpGet action of a probe or a hook.
func (v *validator) httpGet(h *HTTPGetAction, path string, c *Container) {
	v.probePort(h.Port, child(path, "port"), c)
	switch h.Scheme {
	case "", "HTTP", "HTTPS":
	default:
		v.add(child(path, "scheme"), "unsupported value %q: supported values: HTTP, HTTPS", h.Scheme)
	}
}

func (v *validator) container(c *Container, path string, portNames map[string]string) {
	image := child(path, "image")
	switch {
	case c.Image == "":
		v.add(image, "required")
	case strings.TrimSpace(c.Image) != c.Image || strings.ContainsAny(c.Image, " \t\n"):
		v.add(image, "%q may not contain spaces", c.Image)
	}
	switch c.ImagePullPolicy {
	case "", PullAlways, PullIfNotPresent, PullNever:
	default:
		v.add(child(path, "imagePullPolicy"), "unsupported value %q: supported values: Always, IfNotPresent, Never", c.ImagePullPolicy)
	}
	for i, port := range c.Ports {
		p := index(child(path, "ports"), i)
		if port.ContainerPort < 1 || port.ContainerPort > 65535 {
			v.add(child(p, "containerPort"), "must be between 1 and 65535, inclusive, got %d", port.ContainerPort)
		}
		v.protocol(port.Protocol, child(p, "protocol"))
		if port.Name != "" {
			if msg := checkPortName(port.Name); msg != "" {
				v.add(child(p, "name"), "%q is not a valid port name: %s", port.Name, msg)
			} else if other, dup := portNames[port.Name]; dup {
				v.add(child(p, "name"), "duplicate port name %q (also %s)", port.Name, other)
			} else {
				portNames[port.Name] = p
			}
		}
	}
	v.resources(&c.Resources, child(path, "resources"))
	v.probe(c.LivenessProbe, child(path, "livenessProbe"), true, c)
	v.probe(c.ReadinessProbe, child(path, "readinessProbe"), false, c)
	v.probe(c.StartupProbe, child(path, "startupProbe"), true, c)
}

func (v *validator) protocol(proto, path string) {
	switch proto {
	case "", ProtocolTCP, ProtocolUDP:
	case "SCTP":
		v.add(path, "SCTP is not supported; supported values: TCP, UDP")
	default:
		v.add(path, "unsupported value %q: supported values: TCP, UDP", proto)
	}
}

func (v *validator) resources(r *ResourceRequirements, path string) {
	parsed := map[string]map[string]int64{}
	for _, list := range []struct {
		name string
		l    ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		parsed[list.name] = map[string]int64{}
		for _, k := range sortedKeys(list.l) {
			p := keyPath(child(path, list.name), k)
			if list.name == "requests" && r.Limits[k] == list.l[k] {
				// The same as the limit (defaulted from it): checked there.
				if n, ok := parsed["limits"][k]; ok {
					parsed["requests"][k] = n
				}
				continue
			}
			var n int64
			var err error
			switch k {
			case ResourceCPU:
				n, err = ParseCPU(list.l[k])
			case ResourceMemory:
				n, err = ParseMemory(list.l[k])
			default:
				v.warn(p, "ignored: chorus knows only the resources cpu and memory")
				continue
			}
			if err != nil {
				v.add(p, "%v", err)
				continue
			}
			parsed[list.name][k] = n
		}
	}
	for _, k := range []string{ResourceCPU, ResourceMemory} {
		req, okr := parsed["requests"][k]
		lim, okl := parsed["limits"][k]
		if okr && okl && req > lim {
			v.add(keyPath(child(path, "requests"), k), "%s must be less than or equal to the %s limit (%s)", r.Requests[k], k, r.Limits[k])
		}
	}
}

func (v *validator) probe(p *Probe, path string, liveness bool, c *Container) {
	if p == nil {
		return
	}
	var handlers []string
	if p.Exec != nil {
		handlers = append(handlers, "exec")
		if len(p.Exec.Command) == 0 {
			v.add(child(child(path, "exec"), "command"), "required")
		}
	}
	if p.HTTPGet != nil {
		handlers = append(handlers, "httpGet")
		v.httpGet(p.HTTPGet, child(path, "httpGet"), c)
	}
	if p.TCPSocket != nil {
		handlers = append(handlers, "tcpSocket")
		v.probePort(p.TCPSocket.Port, child(child(path, "tcpSocket"), "port"), c)
	}
	if p.GRPC != nil {
		handlers = append(handlers, "grpc")
		if port := p.GRPC.Port; port < 1 || port > 65535 {
			v.add(child(child(path, "grpc"), "port"), "must be between 1 and 65535, inclusive, got %d", port)
		}
	}
	switch len(handlers) {
	case 0:
		v.add(path, "must specify a handler: one of exec, httpGet, tcpSocket, grpc")
	case 1:
	default:
		v.add(path, "may not specify more than one handler, got %s", strings.Join(handlers, " and "))
	}
	for _, f := range []struct {
		name string
		val  int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds},
		{"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds},
		{"successThreshold", p.SuccessThreshold},
		{"failureThreshold", p.FailureThreshold},
	} {
		if f.val < 0 {
			v.add(child(path, f.name), "must be greater than or equal to 0, got %d", f.val)
		}
	}
	if liveness && p.SuccessThreshold > 1 {
		v.add(child(path, "successThreshold"), "must be 1 for a %s, got %d", path[strings.LastIndexByte(path, '.')+1:], p.SuccessThreshold)
	}
}

// probePort checks a probe's port: a number from 1 to 65535 or the name of
// one of the container's ports.
func (v *validator) probePort(port IntOrString, path string, c *Container) {
	if !port.IsString {
		if port.IntVal < 1 || port.IntVal > 65535 {
			v.add(path, "must be between 1 and 65535, inclusive, got %d", port.IntVal)
		}
		return
	}
	if msg := checkPortName(port.StrVal); msg != "" {
		v.add(path, "%q is neither a port number nor a valid port name: %s", port.StrVal, msg)
		return
	}
	if !slices.ContainsFunc(c.Ports, func(p ContainerPort) bool { return p.Name == port.StrVal }) {
		v.add(path, "the container has no port named %q", port.StrVal)
	}
}

func (v *validator) serviceSpec(s *ServiceSpec, path string) {
	switch s.Type {
	case "", ServiceTypeClusterIP, ServiceTypeNodePort, ServiceTypeLoadBalancer:
	case "ExternalName":
		v.add(child(path, "type"), "%q is not supported; supported types: ClusterIP, NodePort, LoadBalancer", s.Type)
	default:
		v.add(child(path, "type"), "unsupported value %q: supported types: ClusterIP, NodePort, LoadBalancer", s.Type)
	}
	v.labels(s.Selector, child(path, "selector"))
	headless := s.ClusterIP == ClusterIPNone
	if s.ClusterIP != "" && !headless {
		if _, err := netip.ParseAddr(s.ClusterIP); err != nil {
			v.add(child(path, "clusterIP"), "%q is not an IP address", s.ClusterIP)
		}
	}
	if headless && (s.Type == ServiceTypeNodePort || s.Type == ServiceTypeLoadBalancer) {
		v.add(child(path, "clusterIP"), "may not be None for a %s service (a headless service has no address to forward from)", s.Type)
	}
	switch s.SessionAffinity {
	case "", AffinityNone, AffinityClientIP:
	default:
		v.add(child(path, "sessionAffinity"), "unsupported value %q: supported values: None, ClientIP", s.SessionAffinity)
	}
	if c := s.SessionAffinityConfig; c != nil && c.ClientIP != nil {
		cp := child(child(path, "sessionAffinityConfig"), "clientIP")
		if s.SessionAffinity != AffinityClientIP {
			v.add(cp, "may only be set when spec.sessionAffinity is ClientIP")
		}
		if t := c.ClientIP.TimeoutSeconds; t != nil && (*t < 1 || *t > MaxAffinityTimeout) {
			v.add(child(cp, "timeoutSeconds"), "must be between 1 and %d, inclusive, got %d", MaxAffinityTimeout, *t)
		}
	}
	ports := child(path, "ports")
	if len(s.Ports) == 0 && !headless {
		v.add(ports, "required: a service needs at least one port")
	}
	names := map[string]string{}
	seen := map[string]string{}
	nodePorts := map[int32]string{}
	for i, port := range s.Ports {
		p := index(ports, i)
		switch {
		case port.Name == "" && len(s.Ports) > 1:
			v.add(child(p, "name"), "required when a service has more than one port")
		case port.Name == "":
		case checkDNS1123Label(port.Name) != "":
			v.add(child(p, "name"), "%q is not a valid port name: %s", port.Name, checkDNS1123Label(port.Name))
		default:
			if other, dup := names[port.Name]; dup {
				v.add(child(p, "name"), "duplicate port name %q (also %s)", port.Name, other)
			}
			names[port.Name] = p
		}
		if port.Port < 1 || port.Port > 65535 {
			v.add(child(p, "port"), "must be between 1 and 65535, inclusive, got %d", port.Port)
		}
		v.protocol(port.Protocol, child(p, "protocol"))
		proto := port.Protocol
		if proto == "" {
			proto = ProtocolTCP
		}
		key := fmt.Sprintf("%d/%s", port.Port, proto)
		if other, dup := seen[key]; dup {
			v.add(p, "duplicate port %s (also %s)", key, other)
		}
		seen[key] = p
		tp := child(p, "targetPort")
		switch t := port.TargetPort; {
		case t.IsString:
			if msg := checkPortName(t.StrVal); msg != "" {
				v.add(tp, "%q is neither a port number nor a valid port name: %s", t.StrVal, msg)
			}
		case t.IntVal == 0 || t.IntVal == port.Port: // unset, or defaulted from port (reported there)
		case t.IntVal < 1 || t.IntVal > 65535:
			v.add(tp, "must be between 1 and 65535, inclusive, got %d", t.IntVal)
		}
		if port.NodePort != 0 {
			np := child(p, "nodePort")
			switch {
			case s.Type != ServiceTypeNodePort && s.Type != ServiceTypeLoadBalancer:
				v.add(np, "may only be set when spec.type is NodePort or LoadBalancer")
			case port.NodePort < 30000 || port.NodePort > 32767:
				v.add(np, "must be between 30000 and 32767, inclusive, got %d", port.NodePort)
			default:
				if other, dup := nodePorts[port.NodePort]; dup {
					v.add(np, "duplicate nodePort %d (also %s)", port.NodePort, other)
				}
				nodePorts[port.NodePort] = np
			}
		}
	}
}

func checkDNS1123Label(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	}
	if !dns1123LabelRE.MatchString(s) {
		return "must consist of lowercase letters, digits and '-', and start and end with a letter or digit (a DNS-1123 label)"
	}
	return ""
}

func checkDNS1035Label(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("must be at most 63 characters, got %d", len(s))
	}
	if !dns1035LabelRE.MatchString(s) {
		return "must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit (an RFC 1035 label)"
	}
	return ""
}

func checkDNS1123Subdomain(s string) string {
	if len(s) > 253 {
		return fmt.Sprintf("must be at most 253 characters, got %d", len(s))
	}
	if !dns1123SubRE.MatchString(s) {
		return "must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit (a DNS-1123 subdomain)"
	}
	return ""
}

// checkQualifiedName checks a label or annotation key: an optional DNS
// subdomain prefix and '/', then a name of at most 63 characters.
func checkQualifiedName(k string) string {
	name := k
	if prefix, rest, ok := strings.Cut(k, "/"); ok {
		if prefix == "" {
			return "the prefix before '/' must not be empty"
		}
		if msg := checkDNS1123Subdomain(prefix); msg != "" {
			return "the prefix before '/' " + msg
		}
		name = rest
	}
	switch {
	case name == "":
		return "the name must not be empty"
	case len(name) > 63:
		return fmt.Sprintf("the name must be at most 63 characters, got %d", len(name))
	case !labelNameRE.MatchString(name):
		return "the name must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
	}
	return ""
}

func checkLabelValue(v string) string {
	switch {
	case len(v) > 63:
		return fmt.Sprintf("must be at most 63 characters, got %d", len(v))
	case v != "" && !labelNameRE.MatchString(v):
		return "must be empty or consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
	}
	return ""
}

// checkPortName checks an IANA service name, as container port names are.
func checkPortName(s string) string {
	switch {
	case len(s) > 15:
		return fmt.Sprintf("must be at most 15 characters, got %d", len(s))
	case !ianaSvcNameRE.MatchString(s):
		return "must consist of lowercase letters, digits and '-', and start and end with a letter or digit"
	case strings.Contains(s, "--"):
		return "must not contain \"--\""
	case !ianaHasLetterRE.MatchString(s):
		return "must contain at least one letter"
	}
	return ""
}

func sortedKeys[M ~map[string]V, V any](m M) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
