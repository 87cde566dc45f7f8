package api

import "strings"

// KindDaemonSet is apps/v1 DaemonSet: one pod on every matching peer.
const KindDaemonSet = "DaemonSet"

// LabelDaemonSet names the daemon set a pod belongs to.
const LabelDaemonSet = "chorus.io/daemonset"

// DaemonSet is an apps/v1 DaemonSet.
type DaemonSet struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta      `json:"metadata"`
	Spec     DaemonSetSpec   `json:"spec"`
	Status   DaemonSetStatus `json:"status,omitempty"`
}

// DaemonSetSpec is the desired state of a DaemonSet.
type DaemonSetSpec struct {
	Selector        *LabelSelector          `json:"selector,omitempty"`
	Template        PodTemplateSpec         `json:"template"`
	UpdateStrategy  DaemonSetUpdateStrategy `json:"updateStrategy,omitempty"`
	MinReadySeconds int32                   `json:"minReadySeconds,omitempty"`
	// RevisionHistoryLimit is how many old templates the rollout history
	// keeps (ControllerRevisions; default 10).
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

// DaemonSetUpdateStrategy says how pods are replaced.
type DaemonSetUpdateStrategy struct {
	Type string `json:"type,omitempty"` // RollingUpdate or OnDelete
}

// DaemonSetStatus is the observed state of a DaemonSet.
type DaemonSetStatus struct {
	CurrentNumberScheduled int32 `json:"currentNumberScheduled"`
	DesiredNumberScheduled int32 `json:"desiredNumberScheduled"`
	NumberReady            int32 `json:"numberReady"`
	NumberAvailable        int32 `json:"numberAvailable,omitempty"`
	UpdatedNumberScheduled int32 `json:"updatedNumberScheduled,omitempty"`
	NumberUnavailable      int32 `json:"numberUnavailable,omitempty"`
	ObservedGeneration     int64 `json:"observedGeneration,omitempty"`
}

// GetKind returns KindDaemonSet.
func (*DaemonSet) GetKind() string { return KindDaemonSet }

// Meta returns the daemon set's metadata.
func (o *DaemonSet) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion apps/v1, kind DaemonSet.
func (o *DaemonSet) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionAppsV1, Kind: KindDaemonSet}
}

// asDeploymentSpec views the spec as a one-replica deployment's, to share
// defaults and validation.
func (s *DaemonSetSpec) asDeploymentSpec() *DeploymentSpec {
	one := int32(1)
	return &DeploymentSpec{Replicas: &one, Selector: s.Selector, Template: s.Template, MinReadySeconds: s.MinReadySeconds,
		RevisionHistoryLimit: s.RevisionHistoryLimit, Strategy: DeploymentStrategy{Type: StrategyRollingUpdate}}
}

// DaemonPodName is the name of a daemon set's pod on a peer:
// "<daemonset>-<template hash>-<peer>", the same on every peer.
func DaemonPodName(ds, hash, node string) string {
	n := ds + "-" + hash + "-" + strings.ToLower(node)
	if len(n) > 63 {
		n = n[:63]
	}
	return strings.TrimRight(n, "-.")
}

// DaemonPod returns the daemon set's pod for a peer.
func DaemonPod(ds *DaemonSet, node string) Pod {
	hash := TemplateHash(&ds.Spec.Template)
	p := Pod{TypeMeta: TypeMeta{APIVersion: apiVersionV1, Kind: KindPod}}
	p.Metadata.Name = DaemonPodName(ds.Metadata.Name, hash, node)
	p.Metadata.Namespace = ds.Metadata.Namespace
	p.Metadata.Labels = map[string]string{}
	for k, v := range ds.Spec.Template.Metadata.Labels {
		p.Metadata.Labels[k] = v
	}
	p.Metadata.Labels[LabelTemplateHash] = hash
	p.Metadata.Labels[LabelDaemonSet] = ds.Metadata.Name
	if len(ds.Spec.Template.Metadata.Annotations) > 0 {
		p.Metadata.Annotations = Clone(ds.Spec.Template.Metadata.Annotations)
	}
	p.Spec = Clone(ds.Spec.Template.Spec)
	p.Spec.NodeName = node
	return p
}
