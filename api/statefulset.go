package api

import (
	"fmt"
	"maps"
	"strconv"
)

// Kinds of stateful workloads and their storage.
const (
	KindStatefulSet           = "StatefulSet"
	KindPersistentVolumeClaim = "PersistentVolumeClaim"
)

// StorageClassLocalPath is the storage class of chorus' provisioner, and
// the default: a directory on the peer the claim is bound to (as k3s'
// local-path provisioner).
const StorageClassLocalPath = "local-path"

// Labels and annotations of stateful pods and claims, as Kubernetes sets
// them.
const (
	LabelStatefulSetPodName   = "statefulset.kubernetes.io/pod-name"
	LabelPodIndex             = "apps.kubernetes.io/pod-index"
	LabelControllerRevision   = "controller-revision-hash"
	AnnotationSelectedNode    = "volume.kubernetes.io/selected-node"
	PodManagementOrderedReady = "OrderedReady"
	PodManagementParallel     = "Parallel"
)

// PersistentVolumeClaim is a v1 PersistentVolumeClaim: storage on one peer.
type PersistentVolumeClaim struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta                  `json:"metadata"`
	Spec     PersistentVolumeClaimSpec   `json:"spec"`
	Status   PersistentVolumeClaimStatus `json:"status,omitempty"`
}

// PersistentVolumeClaimSpec is what a claim asks for.
type PersistentVolumeClaimSpec struct {
	AccessModes      []string                    `json:"accessModes,omitempty"`
	Resources        VolumeResourceRequirements  `json:"resources,omitempty"`
	StorageClassName *string                     `json:"storageClassName,omitempty"`
	VolumeMode       *string                     `json:"volumeMode,omitempty"`
	VolumeName       string                      `json:"volumeName,omitempty"`
	Selector         *LabelSelector              `json:"selector,omitempty"`
	DataSource       *TypedLocalObjectReference  `json:"dataSource,omitempty"`
	DataSourceRef    *TypedObjectReferenceIgnore `json:"dataSourceRef,omitempty"`
}

// VolumeResourceRequirements is a claim's storage request.
type VolumeResourceRequirements struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// TypedLocalObjectReference names an object to copy a volume from; chorus
// rejects it (it has no snapshots).
type TypedLocalObjectReference struct {
	APIGroup *string `json:"apiGroup,omitempty"`
	Kind     string  `json:"kind"`
	Name     string  `json:"name"`
}

// TypedObjectReferenceIgnore is dataSourceRef; chorus rejects it.
type TypedObjectReferenceIgnore struct {
	APIGroup  *string `json:"apiGroup,omitempty"`
	Kind      string  `json:"kind"`
	Name      string  `json:"name"`
	Namespace *string `json:"namespace,omitempty"`
}

// PersistentVolumeClaimStatus is a claim's state: Pending until a pod
// that uses it is bound to a peer, then Bound to that peer.
type PersistentVolumeClaimStatus struct {
	Phase       string            `json:"phase,omitempty"`
	AccessModes []string          `json:"accessModes,omitempty"`
	Capacity    map[string]string `json:"capacity,omitempty"`
}

// PersistentVolumeClaimVolumeSource mounts a claim in a pod.
type PersistentVolumeClaimVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

// StatefulSet is an apps/v1 StatefulSet: pods NAME-0..N-1 with stable
// names, each with its own claims.
type StatefulSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     StatefulSetSpec   `json:"spec"`
	Status   StatefulSetStatus `json:"status,omitempty"`
}

// StatefulSetSpec is the desired state of a StatefulSet.
type StatefulSetSpec struct {
	Replicas                             *int32                                           `json:"replicas,omitempty"`
	Selector                             *LabelSelector                                   `json:"selector,omitempty"`
	Template                             PodTemplateSpec                                  `json:"template"`
	VolumeClaimTemplates                 []PersistentVolumeClaim                          `json:"volumeClaimTemplates,omitempty"`
	ServiceName                          string                                           `json:"serviceName,omitempty"`
	PodManagementPolicy                  string                                           `json:"podManagementPolicy,omitempty"`
	UpdateStrategy                       StatefulSetUpdateStrategy                        `json:"updateStrategy,omitempty"`
	RevisionHistoryLimit                 *int32                                           `json:"revisionHistoryLimit,omitempty"`
	MinReadySeconds                      int32                                            `json:"minReadySeconds,omitempty"`
	PersistentVolumeClaimRetentionPolicy *StatefulSetPersistentVolumeClaimRetentionPolicy `json:"persistentVolumeClaimRetentionPolicy,omitempty"`
	Ordinals                             *StatefulSetOrdinals                             `json:"ordinals,omitempty"`
}

// StatefulSetUpdateStrategy says how pods are replaced.
type StatefulSetUpdateStrategy struct {
	Type          string                            `json:"type,omitempty"` // RollingUpdate or OnDelete
	RollingUpdate *RollingUpdateStatefulSetStrategy `json:"rollingUpdate,omitempty"`
}

// RollingUpdateStatefulSetStrategy: pods with an ordinal below partition
// keep their template.
type RollingUpdateStatefulSetStrategy struct {
	Partition      *int32       `json:"partition,omitempty"`
	MaxUnavailable *IntOrString `json:"maxUnavailable,omitempty"`
}

// StatefulSetPersistentVolumeClaimRetentionPolicy says whether claims go
// with their pods (Delete) or stay (Retain, the default).
type StatefulSetPersistentVolumeClaimRetentionPolicy struct {
	WhenDeleted string `json:"whenDeleted,omitempty"`
	WhenScaled  string `json:"whenScaled,omitempty"`
}

// StatefulSetOrdinals moves the first ordinal.
type StatefulSetOrdinals struct {
	Start int32 `json:"start,omitempty"`
}

// StatefulSetStatus is the observed state of a StatefulSet.
type StatefulSetStatus struct {
	ObservedGeneration int64  `json:"observedGeneration,omitempty"`
	Replicas           int32  `json:"replicas"`
	ReadyReplicas      int32  `json:"readyReplicas,omitempty"`
	CurrentReplicas    int32  `json:"currentReplicas,omitempty"`
	UpdatedReplicas    int32  `json:"updatedReplicas,omitempty"`
	AvailableReplicas  int32  `json:"availableReplicas"`
	CurrentRevision    string `json:"currentRevision,omitempty"`
	UpdateRevision     string `json:"updateRevision,omitempty"`
}

// GetKind returns KindStatefulSet.
func (*StatefulSet) GetKind() string { return KindStatefulSet }

// Meta returns the stateful set's metadata.
func (o *StatefulSet) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion apps/v1, kind StatefulSet.
func (o *StatefulSet) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionAppsV1, Kind: KindStatefulSet}
}

// GetKind returns KindPersistentVolumeClaim.
func (*PersistentVolumeClaim) GetKind() string { return KindPersistentVolumeClaim }

// Meta returns the claim's metadata.
func (o *PersistentVolumeClaim) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind PersistentVolumeClaim.
func (o *PersistentVolumeClaim) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindPersistentVolumeClaim}
}

// asDeploymentSpec views the spec as a deployment's, to share defaults and
// validation of the selector and template.
func (s *StatefulSetSpec) asDeploymentSpec() *DeploymentSpec {
	return &DeploymentSpec{Replicas: s.Replicas, Selector: s.Selector, Template: s.Template, MinReadySeconds: s.MinReadySeconds,
		RevisionHistoryLimit: s.RevisionHistoryLimit, Strategy: DeploymentStrategy{Type: StrategyRollingUpdate}}
}

func defaultStatefulSetSpec(s *StatefulSetSpec) {
	d := s.asDeploymentSpec()
	defaultDeploymentSpec(d)
	s.Replicas, s.Selector, s.Template, s.RevisionHistoryLimit = d.Replicas, d.Selector, d.Template, d.RevisionHistoryLimit
	if s.PodManagementPolicy == "" {
		s.PodManagementPolicy = PodManagementOrderedReady
	}
	if s.UpdateStrategy.Type == "" {
		s.UpdateStrategy.Type = StrategyRollingUpdate
	}
	if s.UpdateStrategy.Type == StrategyRollingUpdate {
		if s.UpdateStrategy.RollingUpdate == nil {
			s.UpdateStrategy.RollingUpdate = &RollingUpdateStatefulSetStrategy{}
		}
		if s.UpdateStrategy.RollingUpdate.Partition == nil {
			s.UpdateStrategy.RollingUpdate.Partition = ptr[int32](0)
		}
	}
	if s.PersistentVolumeClaimRetentionPolicy == nil {
		s.PersistentVolumeClaimRetentionPolicy = &StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if s.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
		s.PersistentVolumeClaimRetentionPolicy.WhenDeleted = "Retain"
	}
	if s.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
		s.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Retain"
	}
	for i := range s.VolumeClaimTemplates {
		defaultClaimSpec(&s.VolumeClaimTemplates[i].Spec)
	}
}

func defaultClaimSpec(s *PersistentVolumeClaimSpec) {
	if s.StorageClassName == nil {
		s.StorageClassName = ptr(StorageClassLocalPath)
	}
	if s.VolumeMode == nil {
		s.VolumeMode = ptr("Filesystem")
	}
}

func (v *validator) statefulSetSpec(s *StatefulSetSpec) {
	// The pods mount the claims of the templates as volumes of their names.
	d := s.asDeploymentSpec()
	d.Template = Clone(d.Template)
	for _, c := range s.VolumeClaimTemplates {
		if c.Metadata.Name != "" {
			d.Template.Spec.Volumes = append(d.Template.Spec.Volumes, Volume{Name: c.Metadata.Name,
				PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: c.Metadata.Name}})
		}
	}
	v.deploymentSpec(d, "spec")
	switch s.PodManagementPolicy {
	case "", PodManagementOrderedReady, PodManagementParallel:
	default:
		v.add("spec.podManagementPolicy", "unsupported value %q: supported values: OrderedReady, Parallel", s.PodManagementPolicy)
	}
	switch s.UpdateStrategy.Type {
	case "", StrategyRollingUpdate, "OnDelete":
	default:
		v.add("spec.updateStrategy.type", "unsupported value %q: supported values: RollingUpdate, OnDelete", s.UpdateStrategy.Type)
	}
	if ru := s.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil && *ru.Partition < 0 {
		v.add("spec.updateStrategy.rollingUpdate.partition", "must be greater than or equal to 0, got %d", *ru.Partition)
	}
	if p := s.PersistentVolumeClaimRetentionPolicy; p != nil {
		for field, val := range map[string]string{"whenDeleted": p.WhenDeleted, "whenScaled": p.WhenScaled} {
			if val != "" && val != "Retain" && val != "Delete" {
				v.add("spec.persistentVolumeClaimRetentionPolicy."+field, "unsupported value %q: supported values: Retain, Delete", val)
			}
		}
	}
	if s.Ordinals != nil && s.Ordinals.Start < 0 {
		v.add("spec.ordinals.start", "must be greater than or equal to 0, got %d", s.Ordinals.Start)
	}
	if s.ServiceName != "" {
		if msg := checkDNS1123Label(s.ServiceName); msg != "" {
			v.add("spec.serviceName", "%q is not a valid service name: %s", s.ServiceName, msg)
		}
	}
	// A pod's name is NAME-ORDINAL, and its hostname a DNS label.
	if len(v.name) > 52 {
		v.add("metadata.name", "must be no more than 52 characters (its pods are named after it and must be valid hostnames)")
	}
	seen := map[string]bool{}
	for i := range s.VolumeClaimTemplates {
		c := &s.VolumeClaimTemplates[i]
		p := index("spec.volumeClaimTemplates", i)
		if c.Metadata.Name == "" {
			v.add(child(p, "metadata.name"), "required")
		} else if seen[c.Metadata.Name] {
			v.add(child(p, "metadata.name"), "duplicate claim template %q", c.Metadata.Name)
		}
		seen[c.Metadata.Name] = true
		v.claimSpec(&c.Spec, child(p, "spec"))
	}
	for i, vol := range s.Template.Spec.Volumes {
		if seen[vol.Name] {
			v.add(index("spec.template.spec.volumes", i)+".name", "%q is also the name of a volumeClaimTemplate", vol.Name)
		}
	}
}

func (v *validator) claimSpec(s *PersistentVolumeClaimSpec, path string) {
	if len(s.AccessModes) == 0 {
		v.add(child(path, "accessModes"), "required: at least one of ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany")
	}
	for i, m := range s.AccessModes {
		switch m {
		case "ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany":
		case "ReadWriteMany":
			v.add(index(child(path, "accessModes"), i), "ReadWriteMany is not supported: a local-path volume lives on one peer")
		default:
			v.add(index(child(path, "accessModes"), i), "unsupported value %q: supported values: ReadWriteOnce, ReadWriteOncePod, ReadOnlyMany", m)
		}
	}
	if sc := s.StorageClassName; sc != nil && *sc != StorageClassLocalPath && *sc != "" {
		v.add(child(path, "storageClassName"), "unsupported value %q: chorus provides %q only", *sc, StorageClassLocalPath)
	}
	if m := s.VolumeMode; m != nil && *m != "Filesystem" {
		v.add(child(path, "volumeMode"), "unsupported value %q: supported values: Filesystem", *m)
	}
	if s.DataSource != nil || s.DataSourceRef != nil {
		v.add(child(path, "dataSource"), "not supported: chorus has no volume snapshots or clones")
	}
	if s.Selector != nil {
		v.add(child(path, "selector"), "not supported: chorus provisions volumes, it binds no existing ones")
	}
	storage, ok := s.Resources.Requests["storage"]
	if !ok {
		v.add(child(path, "resources.requests.storage"), "required")
	} else if b, err := ParseMemory(storage); err != nil || b <= 0 {
		v.add(child(path, "resources.requests.storage"), "%q is not a positive quantity", storage)
	}
}

// StatefulPodName is the name of a stateful set's pod with an ordinal.
func StatefulPodName(set string, ordinal int) string { return set + "-" + strconv.Itoa(ordinal) }

// ClaimName is the name of the claim of template tmpl for a stateful
// set's pod: "<template>-<set>-<ordinal>".
func ClaimName(tmpl, set string, ordinal int) string {
	return fmt.Sprintf("%s-%s-%d", tmpl, set, ordinal)
}

// StatefulPod returns the pod of s with an ordinal, from its template: its
// hostname is its name and its subdomain the set's service, its claims
// replace the volumes of the claim templates, and it carries the labels
// Kubernetes sets. revision is the template's revision name.
func StatefulPod(s *StatefulSet, ordinal int, revision string) Pod {
	t := Clone(s.Spec.Template)
	name := StatefulPodName(s.Metadata.Name, ordinal)
	p := Pod{Metadata: ObjectMeta{
		Name:        name,
		Namespace:   s.Metadata.Namespace,
		Labels:      maps.Clone(t.Metadata.Labels),
		Annotations: maps.Clone(t.Metadata.Annotations),
		OwnerReferences: []OwnerReference{{APIVersion: apiVersionAppsV1, Kind: KindStatefulSet, Name: s.Metadata.Name,
			UID: s.Metadata.UID, Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
	}, Spec: t.Spec}
	if p.Metadata.Labels == nil {
		p.Metadata.Labels = map[string]string{}
	}
	p.Metadata.Labels[LabelStatefulSetPodName] = name
	p.Metadata.Labels[LabelPodIndex] = strconv.Itoa(ordinal)
	p.Metadata.Labels[LabelControllerRevision] = revision
	p.Spec.Hostname = name
	p.Spec.Subdomain = s.Spec.ServiceName
	for _, c := range s.Spec.VolumeClaimTemplates {
		p.Spec.Volumes = append(p.Spec.Volumes, Volume{Name: c.Metadata.Name,
			PersistentVolumeClaim: &PersistentVolumeClaimVolumeSource{ClaimName: ClaimName(c.Metadata.Name, s.Metadata.Name, ordinal)}})
	}
	p.SetTypeMeta()
	return p
}

// StatefulClaim returns the claim of template tmpl for the pod of s with
// an ordinal, labelled with the set's selector labels as Kubernetes does.
func StatefulClaim(s *StatefulSet, tmpl *PersistentVolumeClaim, ordinal int) *PersistentVolumeClaim {
	c := &PersistentVolumeClaim{Metadata: ObjectMeta{
		Name:        ClaimName(tmpl.Metadata.Name, s.Metadata.Name, ordinal),
		Namespace:   s.Metadata.Namespace,
		Labels:      maps.Clone(tmpl.Metadata.Labels),
		Annotations: maps.Clone(tmpl.Metadata.Annotations),
	}, Spec: Clone(tmpl.Spec)}
	if r := s.Spec.PersistentVolumeClaimRetentionPolicy; r != nil && r.WhenDeleted == "Delete" {
		c.Metadata.OwnerReferences = []OwnerReference{{APIVersion: apiVersionAppsV1, Kind: KindStatefulSet, Name: s.Metadata.Name,
			UID: s.Metadata.UID, BlockOwnerDeletion: ptr(true)}}
	}
	if s.Spec.Selector != nil && len(s.Spec.Selector.MatchLabels) > 0 {
		if c.Metadata.Labels == nil {
			c.Metadata.Labels = map[string]string{}
		}
		maps.Copy(c.Metadata.Labels, s.Spec.Selector.MatchLabels)
	}
	SetDefaults(c)
	return c
}
