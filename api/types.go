// Package api is chorus' object model: Namespace, Deployment, Service and Pod,
// in the shapes of the Kubernetes subset chorus accepts (apps/v1 Deployment,
// v1 Service, v1 Namespace, v1 Pod status). It decodes YAML and JSON manifests,
// fills in defaults and validates them with errors that name the document,
// the field path and the reason. It also holds the wire format of exec
// (ExecProtocol), which the agent and the CLI share.
package api

import "time"

// Kinds chorus understands.
const (
	KindNamespace  = "Namespace"
	KindDeployment = "Deployment"
	KindService    = "Service"
	KindPod        = "Pod"
)

// DefaultNamespace is used when a manifest names none.
const DefaultNamespace = "default"

// Well-known labels and annotations chorus sets on objects it creates.
const (
	// LabelDeployment names the deployment a pod belongs to.
	LabelDeployment = "chorus.io/deployment"
	// LabelTemplateHash is the hash of the pod template a pod was made from
	// (Kubernetes' pod-template-hash).
	LabelTemplateHash = "pod-template-hash"
)

// TypeMeta carries apiVersion and kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind,omitempty"`
}

// ObjectMeta is the metadata every object carries.
type ObjectMeta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	UID               string            `json:"uid,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	OwnerReferences   []OwnerReference  `json:"ownerReferences,omitempty"`
	// ManagedFields records which manager set which fields (server-side
	// apply); kept and served as written by the API.
	ManagedFields []ManagedFieldsEntry `json:"managedFields,omitempty"`
}

// ManagedFieldsEntry is one manager's fields, as Kubernetes writes it.
type ManagedFieldsEntry struct {
	Manager     string     `json:"manager,omitempty"`
	Operation   string     `json:"operation,omitempty"`
	APIVersion  string     `json:"apiVersion,omitempty"`
	Time        *time.Time `json:"time,omitempty"`
	FieldsType  string     `json:"fieldsType,omitempty"`
	FieldsV1    any        `json:"fieldsV1,omitempty"`
	Subresource string     `json:"subresource,omitempty"`
}

// Namespace is a v1 Namespace.
type Namespace struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Status   NamespaceStatus `json:"status,omitempty"`
}

// NamespaceStatus is a Namespace's status.
type NamespaceStatus struct {
	Phase string `json:"phase,omitempty"`
}

// Deployment is an apps/v1 Deployment.
type Deployment struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta       `json:"metadata"`
	Spec     DeploymentSpec   `json:"spec"`
	Status   DeploymentStatus `json:"status,omitempty"`
}

// DeploymentSpec is the desired state of a Deployment.
type DeploymentSpec struct {
	Replicas             *int32             `json:"replicas,omitempty"`
	Selector             *LabelSelector     `json:"selector,omitempty"`
	Template             PodTemplateSpec    `json:"template"`
	Strategy             DeploymentStrategy `json:"strategy,omitempty"`
	MinReadySeconds      int32              `json:"minReadySeconds,omitempty"`
	RevisionHistoryLimit *int32             `json:"revisionHistoryLimit,omitempty"`
	Paused               bool               `json:"paused,omitempty"`
}

// DeploymentStrategy says how pods are replaced.
type DeploymentStrategy struct {
	Type          string                   `json:"type,omitempty"` // RollingUpdate or Recreate
	RollingUpdate *RollingUpdateDeployment `json:"rollingUpdate,omitempty"`
}

// RollingUpdateDeployment bounds a rolling update. Values are an integer or a
// percentage ("25%").
type RollingUpdateDeployment struct {
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
	MaxSurge       *IntOrString `json:"maxSurge,omitempty"`
}

// DeploymentStatus is the observed state of a Deployment, aggregated from
// its pods.
type DeploymentStatus struct {
	ObservedGeneration  int64 `json:"observedGeneration,omitempty"`
	Replicas            int32 `json:"replicas,omitempty"`
	UpdatedReplicas     int32 `json:"updatedReplicas,omitempty"`
	ReadyReplicas       int32 `json:"readyReplicas,omitempty"`
	AvailableReplicas   int32 `json:"availableReplicas,omitempty"`
	UnavailableReplicas int32 `json:"unavailableReplicas,omitempty"`
}

// LabelSelector selects objects by labels.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"` // In, NotIn, Exists, DoesNotExist
	Values   []string `json:"values,omitempty"`
}

// PodTemplateSpec is the template pods are made from.
type PodTemplateSpec struct {
	Metadata ObjectMeta `json:"metadata,omitempty"`
	Spec     PodSpec    `json:"spec"`
}

// PodSpec describes a pod.
type PodSpec struct {
	Containers         []Container       `json:"containers"`
	RestartPolicy      string            `json:"restartPolicy,omitempty"` // Always, OnFailure, Never
	NodeSelector       map[string]string `json:"nodeSelector,omitempty"`
	NodeName           string            `json:"nodeName,omitempty"`
	Hostname           string            `json:"hostname,omitempty"`
	Subdomain          string            `json:"subdomain,omitempty"`
	ServiceAccountName string            `json:"serviceAccountName,omitempty"`
	// DeprecatedServiceAccount is serviceAccount, the old name of
	// serviceAccountName.
	DeprecatedServiceAccount      string              `json:"serviceAccount,omitempty"`
	AutomountServiceAccountToken  *bool               `json:"automountServiceAccountToken,omitempty"`
	TerminationGracePeriodSeconds *int64              `json:"terminationGracePeriodSeconds,omitempty"`
	SecurityContext               *PodSecurityContext `json:"securityContext,omitempty"`
	Volumes                       []Volume            `json:"volumes,omitempty"`
	// InitContainers run one after the other, each to completion, before
	// Containers start; one with restartPolicy Always is a sidecar: it
	// keeps running next to Containers and stops after them.
	InitContainers []Container `json:"initContainers,omitempty"`
	// HostUsers false asks for a user namespace; chorus rejects it (see
	// validateSecurityContext for why).
	HostUsers *bool `json:"hostUsers,omitempty"`
}

// PodSecurityContext holds the security settings of every container of a
// pod; a container's SecurityContext overrides the fields both have.
type PodSecurityContext struct {
	RunAsUser          *int64          `json:"runAsUser,omitempty"`
	RunAsGroup         *int64          `json:"runAsGroup,omitempty"`
	RunAsNonRoot       *bool           `json:"runAsNonRoot,omitempty"`
	SupplementalGroups []int64         `json:"supplementalGroups,omitempty"`
	FSGroup            *int64          `json:"fsGroup,omitempty"` // an additional gid (chorus has no volumes to chown)
	SeccompProfile     *SeccompProfile `json:"seccompProfile,omitempty"`
}

// SecurityContext holds the security settings of one container.
type SecurityContext struct {
	Capabilities             *Capabilities   `json:"capabilities,omitempty"`
	Privileged               *bool           `json:"privileged,omitempty"`
	RunAsUser                *int64          `json:"runAsUser,omitempty"`
	RunAsGroup               *int64          `json:"runAsGroup,omitempty"`
	RunAsNonRoot             *bool           `json:"runAsNonRoot,omitempty"`
	ReadOnlyRootFilesystem   *bool           `json:"readOnlyRootFilesystem,omitempty"`
	AllowPrivilegeEscalation *bool           `json:"allowPrivilegeEscalation,omitempty"`
	SeccompProfile           *SeccompProfile `json:"seccompProfile,omitempty"`
}

// Capabilities are Linux capabilities added to and dropped from the
// default set, named as Kubernetes does ("NET_ADMIN", or "ALL"); a
// "CAP_" prefix is accepted.
type Capabilities struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// SeccompProfile selects a container's seccomp filter.
type SeccompProfile struct {
	Type             string  `json:"type"` // RuntimeDefault (the default), Unconfined or Localhost (not supported)
	LocalhostProfile *string `json:"localhostProfile,omitempty"`
}

// Seccomp profile types.
const (
	SeccompRuntimeDefault = "RuntimeDefault"
	SeccompUnconfined     = "Unconfined"
	SeccompLocalhost      = "Localhost"
)

// Container is one container of a pod.
type Container struct {
	Name            string               `json:"name"`
	Image           string               `json:"image"`
	Command         []string             `json:"command,omitempty"`
	Args            []string             `json:"args,omitempty"`
	WorkingDir      string               `json:"workingDir,omitempty"`
	Env             []EnvVar             `json:"env,omitempty"`
	EnvFrom         []EnvFromSource      `json:"envFrom,omitempty"`
	VolumeMounts    []VolumeMount        `json:"volumeMounts,omitempty"`
	Ports           []ContainerPort      `json:"ports,omitempty"`
	Resources       ResourceRequirements `json:"resources,omitempty"`
	LivenessProbe   *Probe               `json:"livenessProbe,omitempty"`
	ReadinessProbe  *Probe               `json:"readinessProbe,omitempty"`
	StartupProbe    *Probe               `json:"startupProbe,omitempty"`
	Lifecycle       *Lifecycle           `json:"lifecycle,omitempty"`
	ImagePullPolicy string               `json:"imagePullPolicy,omitempty"`
	SecurityContext *SecurityContext     `json:"securityContext,omitempty"`
	// RestartPolicy may only be set on an init container, and only to
	// Always: it makes the init container a sidecar.
	RestartPolicy *string `json:"restartPolicy,omitempty"`
}

// IsSidecar reports whether c, an init container, is a sidecar
// (restartPolicy Always).
func (c *Container) IsSidecar() bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == RestartAlways
}

// Lifecycle holds the hooks run after a container starts and before it is
// stopped.
type Lifecycle struct {
	PostStart *LifecycleHandler `json:"postStart,omitempty"`
	PreStop   *LifecycleHandler `json:"preStop,omitempty"`
}

// LifecycleHandler is one hook: exactly one of its members.
type LifecycleHandler struct {
	Exec      *ExecAction      `json:"exec,omitempty"`
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"` // accepted, as Kubernetes does, and does nothing
	Sleep     *SleepAction     `json:"sleep,omitempty"`
}

// SleepAction waits Seconds.
type SleepAction struct {
	Seconds int64 `json:"seconds"`
}

// GRPCAction probes with the standard gRPC health check
// (grpc.health.v1.Health/Check) on Port of the pod's address; Service is
// the service name asked about ("" when unset).
type GRPCAction struct {
	Port    int32   `json:"port"`
	Service *string `json:"service,omitempty"`
}

// EnvVar is an environment variable: a literal value, or one taken from
// the pod, a ConfigMap or a Secret when the container starts.
type EnvVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// ContainerPort is a port a container listens on.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol,omitempty"` // TCP (default) or UDP
}

// ResourceRequirements are requests and limits, in Kubernetes quantities
// ("500m", "128Mi").
type ResourceRequirements struct {
	Limits   ResourceList `json:"limits,omitempty"`
	Requests ResourceList `json:"requests,omitempty"`
}

// ResourceList maps a resource name (cpu, memory) to a quantity string.
type ResourceList map[string]string

// Probe is a liveness, readiness or startup probe.
type Probe struct {
	Exec                *ExecAction      `json:"exec,omitempty"`
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC                *GRPCAction      `json:"grpc,omitempty"`
	InitialDelaySeconds int32            `json:"initialDelaySeconds,omitempty"`
	TimeoutSeconds      int32            `json:"timeoutSeconds,omitempty"`
	PeriodSeconds       int32            `json:"periodSeconds,omitempty"`
	SuccessThreshold    int32            `json:"successThreshold,omitempty"`
	FailureThreshold    int32            `json:"failureThreshold,omitempty"`
}

// ExecAction runs a command in the container; exit 0 is success.
type ExecAction struct {
	Command []string `json:"command,omitempty"`
}

// HTTPGetAction probes with an HTTP GET; 200-399 is success.
type HTTPGetAction struct {
	Path   string      `json:"path,omitempty"`
	Port   IntOrString `json:"port"`
	Host   string      `json:"host,omitempty"`
	Scheme string      `json:"scheme,omitempty"`
}

// TCPSocketAction probes by opening a TCP connection.
type TCPSocketAction struct {
	Port IntOrString `json:"port"`
	Host string      `json:"host,omitempty"`
}

// Service is a v1 Service.
type Service struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta    `json:"metadata"`
	Spec     ServiceSpec   `json:"spec"`
	Status   ServiceStatus `json:"status,omitempty"`
}

// ServiceSpec is the desired state of a Service.
type ServiceSpec struct {
	Type     string            `json:"type,omitempty"` // ClusterIP (default), NodePort or LoadBalancer
	Selector map[string]string `json:"selector,omitempty"`
	Ports    []ServicePort     `json:"ports,omitempty"`
	// ClusterIP "None" makes a headless service: no service address, its
	// DNS name answers with the Ready pods' addresses. Any other value is
	// accepted but each peer gives the service its own address.
	ClusterIP             string                 `json:"clusterIP,omitempty"`
	SessionAffinity       string                 `json:"sessionAffinity,omitempty"` // None (default) or ClientIP
	SessionAffinityConfig *SessionAffinityConfig `json:"sessionAffinityConfig,omitempty"`
}

// SessionAffinityConfig configures ClientIP session affinity.
type SessionAffinityConfig struct {
	ClientIP *ClientIPConfig `json:"clientIP,omitempty"`
}

// ClientIPConfig bounds how long a client stays with its endpoint.
type ClientIPConfig struct {
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// Service types and session affinities.
const (
	ServiceTypeLoadBalancer = "LoadBalancer"
	ClusterIPNone           = "None"
	AffinityNone            = "None"
	AffinityClientIP        = "ClientIP"
	// DefaultAffinityTimeout is Kubernetes' default
	// sessionAffinityConfig.clientIP.timeoutSeconds (3 hours); the
	// maximum is one day.
	DefaultAffinityTimeout = 10800
	MaxAffinityTimeout     = 86400
)

// Headless reports whether s is a headless service (clusterIP: None).
func (s *Service) Headless() bool { return s.Spec.ClusterIP == ClusterIPNone }

// HasNodePorts reports whether the ports of s get node ports.
func (s *Service) HasNodePorts() bool {
	return s.Spec.Type == ServiceTypeNodePort || s.Spec.Type == ServiceTypeLoadBalancer
}

// AffinityTimeout is the session affinity timeout of s in seconds; 0
// means no affinity.
func (s *Service) AffinityTimeout() int32 {
	if s.Spec.SessionAffinity != AffinityClientIP {
		return 0
	}
	if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		return *c.ClientIP.TimeoutSeconds
	}
	return DefaultAffinityTimeout
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string      `json:"name,omitempty"`
	Protocol   string      `json:"protocol,omitempty"`
	Port       int32       `json:"port"`
	TargetPort IntOrString `json:"targetPort,omitempty"`
	NodePort   int32       `json:"nodePort,omitempty"`
}

// ServiceStatus is a Service's status: for a LoadBalancer, the addresses
// of the peers that answer on its ports.
type ServiceStatus struct {
	LoadBalancer LoadBalancerStatus `json:"loadBalancer,omitempty"`
}

// LoadBalancerStatus lists the addresses of a load balancer.
type LoadBalancerStatus struct {
	Ingress []LoadBalancerIngress `json:"ingress,omitempty"`
}

// LoadBalancerIngress is one address of a load balancer.
type LoadBalancerIngress struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	IPMode   string `json:"ipMode,omitempty"`
}

// Pod phases.
const (
	PodPending   = "Pending"
	PodRunning   = "Running"
	PodSucceeded = "Succeeded"
	PodFailed    = "Failed"
	PodUnknown   = "Unknown"
)

// Pod is a v1 Pod. chorus creates pods from deployments; users read them.
type Pod struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     PodSpec    `json:"spec"`
	Status   PodStatus  `json:"status,omitempty"`
}

// PodStatus is the observed state of a pod.
type PodStatus struct {
	Phase                 string            `json:"phase,omitempty"`
	Conditions            []PodCondition    `json:"conditions,omitempty"`
	Message               string            `json:"message,omitempty"`
	Reason                string            `json:"reason,omitempty"`
	HostIP                string            `json:"hostIP,omitempty"`
	PodIP                 string            `json:"podIP,omitempty"`
	StartTime             *time.Time        `json:"startTime,omitempty"`
	InitContainerStatuses []ContainerStatus `json:"initContainerStatuses,omitempty"`
	ContainerStatuses     []ContainerStatus `json:"containerStatuses,omitempty"`
}

// PodCondition is one of Ready, ContainersReady, Initialized, PodScheduled.
type PodCondition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"` // True, False, Unknown
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
	Reason             string     `json:"reason,omitempty"`
	Message            string     `json:"message,omitempty"`
}

// ContainerStatus is the observed state of one container.
type ContainerStatus struct {
	Name         string         `json:"name"`
	State        ContainerState `json:"state,omitempty"`
	LastState    ContainerState `json:"lastState,omitempty"`
	Ready        bool           `json:"ready"`
	RestartCount int32          `json:"restartCount"`
	Image        string         `json:"image"`
	ImageID      string         `json:"imageID,omitempty"`
	ContainerID  string         `json:"containerID,omitempty"`
	Started      *bool          `json:"started,omitempty"`
}

// ContainerState holds exactly one of its members.
type ContainerState struct {
	Waiting    *ContainerStateWaiting    `json:"waiting,omitempty"`
	Running    *ContainerStateRunning    `json:"running,omitempty"`
	Terminated *ContainerStateTerminated `json:"terminated,omitempty"`
}

// ContainerStateWaiting: not running yet, with a reason such as
// ContainerCreating, CrashLoopBackOff or ErrImagePull.
type ContainerStateWaiting struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// ContainerStateRunning: running since StartedAt.
type ContainerStateRunning struct {
	StartedAt *time.Time `json:"startedAt,omitempty"`
}

// ContainerStateTerminated: exited.
type ContainerStateTerminated struct {
	ExitCode   int32      `json:"exitCode"`
	Signal     int32      `json:"signal,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Message    string     `json:"message,omitempty"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
}

// Event records something that happened to an object, as kubectl shows it.
type Event struct {
	TypeMeta       `json:",inline"`
	Metadata       ObjectMeta      `json:"metadata"`
	InvolvedObject ObjectReference `json:"involvedObject"`
	Reason         string          `json:"reason"`
	Message        string          `json:"message"`
	Type           string          `json:"type"` // Normal or Warning
	Count          int32           `json:"count,omitempty"`
	FirstTimestamp *time.Time      `json:"firstTimestamp,omitempty"`
	LastTimestamp  *time.Time      `json:"lastTimestamp,omitempty"`
	Source         EventSource     `json:"source,omitempty"`
}

// ObjectReference names an object.
type ObjectReference struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"` // when known: kubectl describe selects events by it
}

// EventSource says which peer reported an event.
type EventSource struct {
	Component string `json:"component,omitempty"`
	Host      string `json:"host,omitempty"`
}

// List is a Kubernetes-shaped list: {"apiVersion":"v1","kind":"List","items":[...]}.
type List struct {
	TypeMeta `json:",inline"`
	Items    []any `json:"items"`
}

// ControllerRevision is one entry of a deployment's rollout history, in the
// shape of apps/v1 ControllerRevision: the pod template of a revision and
// its number. Its name is the deployment's name and the template hash; its
// annotation AnnotationChangeCause says what made it.
type ControllerRevision struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Data     PodTemplateSpec `json:"data"`
	Revision int64           `json:"revision"`
}

// Annotations of rollout history.
const (
	// AnnotationChangeCause on a deployment (or a revision) says why its
	// template changed; shown by `rollout history`.
	AnnotationChangeCause = "kubernetes.io/change-cause"
	// AnnotationRevision on a deployment is its current revision number.
	AnnotationRevision = "deployment.kubernetes.io/revision"
	// AnnotationRestartedAt on a pod template is set by `rollout restart`:
	// a new template hash, so every pod is replaced.
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
)
