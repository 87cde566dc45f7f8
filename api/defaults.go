package api

import (
	"maps"
	"strings"
)

// Defaults Kubernetes applies, and so does chorus.
const (
	defaultReplicas             = 1
	defaultRevisionHistoryLimit = 10
	defaultMaxUnavailable       = "25%"
	defaultMaxSurge             = "25%"
	defaultGracePeriodSeconds   = 30
	defaultProbeTimeoutSeconds  = 1
	defaultProbePeriodSeconds   = 10
	defaultProbeSuccess         = 1
	defaultProbeFailure         = 3
)

// Values of enumerated fields.
const (
	StrategyRollingUpdate = "RollingUpdate"
	StrategyRecreate      = "Recreate"

	RestartAlways    = "Always"
	RestartOnFailure = "OnFailure"
	RestartNever     = "Never"

	PullAlways       = "Always"
	PullIfNotPresent = "IfNotPresent"
	PullNever        = "Never"

	ProtocolTCP = "TCP"
	ProtocolUDP = "UDP"

	ServiceTypeClusterIP = "ClusterIP"
	ServiceTypeNodePort  = "NodePort"

	ResourceCPU    = "cpu"
	ResourceMemory = "memory"
)

// SetDefaults fills in what a manifest may leave out, as Kubernetes does:
// canonical apiVersion and kind; namespace "default" (and none for a
// Namespace); for a Deployment 1 replica, a selector matching the template's
// labels, a RollingUpdate strategy with maxUnavailable and maxSurge 25%, a
// revisionHistoryLimit of 10; for pod specs restartPolicy Always, a 30 s
// termination grace period, imagePullPolicy Always for an image tagged
// latest or untagged and IfNotPresent otherwise, port protocol TCP, resource
// requests equal to the limits where only limits are set, and probe
// timeoutSeconds 1, periodSeconds 10, successThreshold 1, failureThreshold 3,
// httpGet path "/" and scheme HTTP; for a Service type ClusterIP, port
// protocol TCP and targetPort equal to port. It sets only what is unset.
func SetDefaults(o Object) {
	o.SetTypeMeta()
	m := o.Meta()
	if !namespaced(o.GetKind()) {
		m.Namespace = ""
	} else if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
	switch o := o.(type) {
	case *Deployment:
		defaultDeploymentSpec(&o.Spec)
	case *DaemonSet:
		d := o.Spec.asDeploymentSpec()
		defaultDeploymentSpec(d)
		o.Spec.Selector, o.Spec.Template, o.Spec.RevisionHistoryLimit = d.Selector, d.Template, d.RevisionHistoryLimit
		if o.Spec.UpdateStrategy.Type == "" {
			o.Spec.UpdateStrategy.Type = StrategyRollingUpdate
		}
	case *Service:
		defaultServiceSpec(&o.Spec)
	case *Pod:
		defaultPodSpec(&o.Spec)
	case *Secret:
		defaultSecret(o)
	case *Job:
		defaultJobSpec(&o.Spec, o.Metadata.Name)
	case *CronJob:
		defaultCronJobSpec(&o.Spec)
	case *StatefulSet:
		defaultStatefulSetSpec(&o.Spec)
	case *PersistentVolumeClaim:
		defaultClaimSpec(&o.Spec)
	case *HorizontalPodAutoscaler:
		defaultHPASpec(&o.Spec)
	}
}

func defaultDeploymentSpec(s *DeploymentSpec) {
	if s.Replicas == nil {
		s.Replicas = ptr[int32](defaultReplicas)
	}
	if s.Selector == nil && len(s.Template.Metadata.Labels) > 0 {
		s.Selector = &LabelSelector{MatchLabels: maps.Clone(s.Template.Metadata.Labels)}
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = StrategyRollingUpdate
	}
	if s.Strategy.Type == StrategyRollingUpdate {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &RollingUpdateDeployment{}
		}
		ru := s.Strategy.RollingUpdate
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = ptr(FromString(defaultMaxUnavailable))
		}
		if ru.MaxSurge == nil {
			ru.MaxSurge = ptr(FromString(defaultMaxSurge))
		}
	}
	if s.RevisionHistoryLimit == nil {
		s.RevisionHistoryLimit = ptr[int32](defaultRevisionHistoryLimit)
	}
	defaultPodSpec(&s.Template.Spec)
}

func defaultPodSpec(s *PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = RestartAlways
	}
	// No default service account is written into the spec ("" is
	// "default"): a default here would change the template hash, so the
	// pods, of every deployment stored before service accounts existed.
	if s.ServiceAccountName == "" {
		s.ServiceAccountName = s.DeprecatedServiceAccount
	}
	s.DeprecatedServiceAccount = s.ServiceAccountName
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = ptr[int64](defaultGracePeriodSeconds)
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i])
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i])
	}
}

// defaultContainer fills in what a container (or an init container) may
// leave out.
func defaultContainer(c *Container) {
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = PullIfNotPresent
		if tag := imageTag(c.Image); tag == "" || tag == "latest" {
			c.ImagePullPolicy = PullAlways
		}
	}
	for j := range c.Ports {
		if c.Ports[j].Protocol == "" {
			c.Ports[j].Protocol = ProtocolTCP
		}
	}
	for name, q := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; !ok {
			if c.Resources.Requests == nil {
				c.Resources.Requests = ResourceList{}
			}
			c.Resources.Requests[name] = q
		}
	}
	defaultProbe(c.LivenessProbe)
	defaultProbe(c.ReadinessProbe)
	defaultProbe(c.StartupProbe)
	if l := c.Lifecycle; l != nil {
		for _, h := range []*LifecycleHandler{l.PostStart, l.PreStop} {
			if h != nil {
				defaultHTTPGet(h.HTTPGet)
			}
		}
	}
}

// imageTag returns the tag of an image reference, "" if it has none. An image
// pinned by digest counts as tagged.
func imageTag(image string) string {
	if at := strings.LastIndexByte(image, '@'); at >= 0 {
		return image[at:]
	}
	name := image[strings.LastIndexByte(image, '/')+1:]
	if colon := strings.LastIndexByte(name, ':'); colon >= 0 {
		return name[colon+1:]
	}
	return ""
}

func defaultProbe(p *Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = defaultProbeTimeoutSeconds
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = defaultProbePeriodSeconds
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = defaultProbeSuccess
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = defaultProbeFailure
	}
	defaultHTTPGet(p.HTTPGet)
}

func defaultHTTPGet(h *HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = "HTTP"
	}
}

func defaultServiceSpec(s *ServiceSpec) {
	if s.Type == "" {
		s.Type = ServiceTypeClusterIP
	}
	if s.SessionAffinity == "" {
		s.SessionAffinity = AffinityNone
	}
	if s.SessionAffinity == AffinityClientIP {
		if s.SessionAffinityConfig == nil {
			s.SessionAffinityConfig = &SessionAffinityConfig{}
		}
		if s.SessionAffinityConfig.ClientIP == nil {
			s.SessionAffinityConfig.ClientIP = &ClientIPConfig{}
		}
		if s.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			s.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptr(int32(DefaultAffinityTimeout))
		}
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = ProtocolTCP
		}
		if p.TargetPort.IsZero() {
			p.TargetPort = FromInt(p.Port)
		}
	}
}

func ptr[T any](v T) *T { return &v }
