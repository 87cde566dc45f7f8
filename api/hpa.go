package api

import (
	"fmt"
	"time"
)

// KindHorizontalPodAutoscaler is autoscaling/v2's HorizontalPodAutoscaler.
// The API also serves it as autoscaling/v1 (converted at the API's edge);
// it is stored and decoded as v2.
const KindHorizontalPodAutoscaler = "HorizontalPodAutoscaler"

const apiVersionAutoscalingV2 = "autoscaling/v2"

// Metric source types, target types and the scaling policies of an HPA.
const (
	MetricResource          = "Resource"
	MetricContainerResource = "ContainerResource"
	TargetUtilization       = "Utilization"
	TargetAverageValue      = "AverageValue"
	TargetValue             = "Value"
	PolicyPods              = "Pods"
	PolicyPercent           = "Percent"
	SelectMax               = "Max"
	SelectMin               = "Min"
	SelectDisabled          = "Disabled"
)

// Kubernetes' HPA defaults: the CPU target when no metric is given, and
// the behavior rules (scale up at once by 100% or 4 pods per 15 s, scale
// down to the highest recommendation of the last 5 minutes, by up to 100%
// per 15 s).
const (
	defaultHPACPUUtilization = 80
	defaultScaleDownWindow   = 300
	maxStabilizationWindow   = 3600
	maxPolicyPeriodSeconds   = 1800
)

// HorizontalPodAutoscaler scales a Deployment or StatefulSet (its
// spec.replicas) between minReplicas and maxReplicas from the resource
// usage of its pods.
type HorizontalPodAutoscaler struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     HPASpec    `json:"spec"`
	Status   HPAStatus  `json:"status,omitempty"`
}

// HPASpec is the desired state of an HPA.
type HPASpec struct {
	ScaleTargetRef CrossVersionObjectReference `json:"scaleTargetRef"`
	MinReplicas    *int32                      `json:"minReplicas,omitempty"`
	MaxReplicas    int32                       `json:"maxReplicas"`
	Metrics        []MetricSpec                `json:"metrics,omitempty"`
	Behavior       *HPABehavior                `json:"behavior,omitempty"`
}

// CrossVersionObjectReference names the scaled object.
type CrossVersionObjectReference struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// MetricSpec is one metric the HPA follows: a resource of the pods
// (Resource) or of one container in each (ContainerResource). Pods,
// Object and External metrics need a custom metrics API chorus does not
// serve; they are refused.
type MetricSpec struct {
	Type              string                         `json:"type"`
	Resource          *ResourceMetricSource          `json:"resource,omitempty"`
	ContainerResource *ContainerResourceMetricSource `json:"containerResource,omitempty"`
}

// ResourceMetricSource is a cpu or memory target over the pods.
type ResourceMetricSource struct {
	Name   string       `json:"name"`
	Target MetricTarget `json:"target"`
}

// ContainerResourceMetricSource is a cpu or memory target over one
// container of each pod.
type ContainerResourceMetricSource struct {
	Name      string       `json:"name"`
	Container string       `json:"container"`
	Target    MetricTarget `json:"target"`
}

// MetricTarget is the value to keep: an average utilization (percent of
// the pods' requests) or an average value per pod.
type MetricTarget struct {
	Type               string `json:"type"`
	Value              string `json:"value,omitempty"`
	AverageValue       string `json:"averageValue,omitempty"`
	AverageUtilization *int32 `json:"averageUtilization,omitempty"`
}

// HPABehavior bounds how fast the HPA scales each way.
type HPABehavior struct {
	ScaleUp   *HPAScalingRules `json:"scaleUp,omitempty"`
	ScaleDown *HPAScalingRules `json:"scaleDown,omitempty"`
}

// HPAScalingRules are one direction's stabilization window and policies.
type HPAScalingRules struct {
	StabilizationWindowSeconds *int32             `json:"stabilizationWindowSeconds,omitempty"`
	SelectPolicy               *string            `json:"selectPolicy,omitempty"`
	Policies                   []HPAScalingPolicy `json:"policies,omitempty"`
}

// HPAScalingPolicy allows a change of at most Value pods (or Value percent
// of the replicas) within PeriodSeconds.
type HPAScalingPolicy struct {
	Type          string `json:"type"`
	Value         int32  `json:"value"`
	PeriodSeconds int32  `json:"periodSeconds"`
}

// HPAStatus is the observed state of an HPA.
type HPAStatus struct {
	ObservedGeneration *int64         `json:"observedGeneration,omitempty"`
	LastScaleTime      *time.Time     `json:"lastScaleTime,omitempty"`
	CurrentReplicas    int32          `json:"currentReplicas,omitempty"`
	DesiredReplicas    int32          `json:"desiredReplicas"`
	CurrentMetrics     []MetricStatus `json:"currentMetrics,omitempty"`
	Conditions         []HPACondition `json:"conditions,omitempty"`
}

// MetricStatus is the current value of one metric of the spec.
type MetricStatus struct {
	Type              string                         `json:"type"`
	Resource          *ResourceMetricStatus          `json:"resource,omitempty"`
	ContainerResource *ContainerResourceMetricStatus `json:"containerResource,omitempty"`
}

// ResourceMetricStatus is the current value of a Resource metric.
type ResourceMetricStatus struct {
	Name    string            `json:"name"`
	Current MetricValueStatus `json:"current"`
}

// ContainerResourceMetricStatus is the current value of a
// ContainerResource metric.
type ContainerResourceMetricStatus struct {
	Name      string            `json:"name"`
	Container string            `json:"container"`
	Current   MetricValueStatus `json:"current"`
}

// MetricValueStatus is a metric's current average value (and utilization
// for a Utilization target).
type MetricValueStatus struct {
	Value              string `json:"value,omitempty"`
	AverageValue       string `json:"averageValue,omitempty"`
	AverageUtilization *int32 `json:"averageUtilization,omitempty"`
}

// HPACondition is one of AbleToScale, ScalingActive, ScalingLimited.
type HPACondition struct {
	Type               string     `json:"type"`
	Status             string     `json:"status"`
	LastTransitionTime *time.Time `json:"lastTransitionTime,omitempty"`
	Reason             string     `json:"reason,omitempty"`
	Message            string     `json:"message,omitempty"`
}

// GetKind returns KindHorizontalPodAutoscaler.
func (*HorizontalPodAutoscaler) GetKind() string { return KindHorizontalPodAutoscaler }

// Meta returns the HPA's metadata.
func (o *HorizontalPodAutoscaler) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion autoscaling/v2, kind HorizontalPodAutoscaler.
func (o *HorizontalPodAutoscaler) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionAutoscalingV2, Kind: KindHorizontalPodAutoscaler}
}

// MinReplicasOrDefault returns spec.minReplicas, 1 when unset.
func (s *HPASpec) MinReplicasOrDefault() int32 {
	if s.MinReplicas == nil {
		return 1
	}
	return *s.MinReplicas
}

// defaultHPASpec sets Kubernetes' defaults: minReplicas 1, a CPU target of
// 80% when no metric is given, and every unset part of the behavior.
func defaultHPASpec(s *HPASpec) {
	if s.MinReplicas == nil {
		s.MinReplicas = ptr[int32](1)
	}
	if len(s.Metrics) == 0 {
		s.Metrics = []MetricSpec{{Type: MetricResource, Resource: &ResourceMetricSource{Name: "cpu",
			Target: MetricTarget{Type: TargetUtilization, AverageUtilization: ptr[int32](defaultHPACPUUtilization)}}}}
	}
	if s.Behavior == nil {
		s.Behavior = &HPABehavior{}
	}
	s.Behavior.ScaleUp = defaultScalingRules(s.Behavior.ScaleUp, 0,
		[]HPAScalingPolicy{{Type: PolicyPods, Value: 4, PeriodSeconds: 15}, {Type: PolicyPercent, Value: 100, PeriodSeconds: 15}})
	s.Behavior.ScaleDown = defaultScalingRules(s.Behavior.ScaleDown, defaultScaleDownWindow,
		[]HPAScalingPolicy{{Type: PolicyPercent, Value: 100, PeriodSeconds: 15}})
}

func defaultScalingRules(r *HPAScalingRules, window int32, policies []HPAScalingPolicy) *HPAScalingRules {
	if r == nil {
		r = &HPAScalingRules{}
	}
	if r.StabilizationWindowSeconds == nil {
		r.StabilizationWindowSeconds = ptr(window)
	}
	if r.SelectPolicy == nil {
		r.SelectPolicy = ptr(SelectMax)
	}
	if len(r.Policies) == 0 {
		r.Policies = policies
	}
	return r
}

func (v *validator) hpaSpec(s *HPASpec) {
	ref := s.ScaleTargetRef
	switch {
	case ref.Kind == "":
		v.add("spec.scaleTargetRef.kind", "required: Deployment or StatefulSet")
	case ref.Kind != KindDeployment && ref.Kind != KindStatefulSet:
		v.add("spec.scaleTargetRef.kind", "unsupported value %q: chorus scales a Deployment or a StatefulSet", ref.Kind)
	}
	if ref.Name == "" {
		v.add("spec.scaleTargetRef.name", "required: the name of the %s to scale", orDefault(ref.Kind, "object"))
	}
	if ref.APIVersion != "" && ref.APIVersion != apiVersionAppsV1 {
		v.add("spec.scaleTargetRef.apiVersion", "unsupported value %q: want %q", ref.APIVersion, apiVersionAppsV1)
	}
	minR := s.MinReplicasOrDefault()
	switch {
	case minR < 1:
		v.add("spec.minReplicas", "must be at least 1, got %d (chorus does not scale to zero)", minR)
	case s.MaxReplicas < 1:
		v.add("spec.maxReplicas", "must be at least 1, got %d", s.MaxReplicas)
	case s.MaxReplicas > maxReplicas:
		v.add("spec.maxReplicas", "must be at most %d, got %d", maxReplicas, s.MaxReplicas)
	case minR > s.MaxReplicas:
		v.add("spec.minReplicas", "must be less than or equal to maxReplicas (%d), got %d", s.MaxReplicas, minR)
	}
	for i, m := range s.Metrics {
		v.metricSpec(m, fmt.Sprintf("spec.metrics[%d]", i))
	}
	if b := s.Behavior; b != nil {
		v.scalingRules(b.ScaleUp, "spec.behavior.scaleUp")
		v.scalingRules(b.ScaleDown, "spec.behavior.scaleDown")
	}
}

func (v *validator) metricSpec(m MetricSpec, path string) {
	var name string
	var target MetricTarget
	switch m.Type {
	case MetricResource:
		if m.Resource == nil {
			v.add(child(path, "resource"), "required when type is Resource")
			return
		}
		name, target = m.Resource.Name, m.Resource.Target
		path = child(path, "resource")
	case MetricContainerResource:
		if m.ContainerResource == nil {
			v.add(child(path, "containerResource"), "required when type is ContainerResource")
			return
		}
		if m.ContainerResource.Container == "" {
			v.add(child(path, "containerResource.container"), "required: the container whose usage counts")
		}
		name, target = m.ContainerResource.Name, m.ContainerResource.Target
		path = child(path, "containerResource")
	case "Pods", "Object", "External":
		v.add(child(path, "type"), "unsupported value %q: chorus serves resource metrics only (no custom or external metrics API); use Resource or ContainerResource", m.Type)
		return
	default:
		v.add(child(path, "type"), "unsupported value %q: supported values: Resource, ContainerResource", m.Type)
		return
	}
	if name != "cpu" && name != "memory" {
		v.add(child(path, "name"), "unsupported value %q: supported values: cpu, memory", name)
	}
	tp := child(path, "target")
	switch target.Type {
	case TargetUtilization:
		if target.AverageUtilization == nil || *target.AverageUtilization < 1 {
			v.add(child(tp, "averageUtilization"), "required and at least 1 when type is Utilization (a percent of the pods' requests)")
		}
	case TargetAverageValue:
		if target.AverageValue == "" {
			v.add(child(tp, "averageValue"), "required when type is AverageValue")
		} else if n, err := parseResource(name, target.AverageValue); err != nil {
			v.add(child(tp, "averageValue"), "%v", err)
		} else if n <= 0 {
			v.add(child(tp, "averageValue"), "must be greater than 0, got %q", target.AverageValue)
		}
	case TargetValue:
		v.add(child(tp, "type"), "unsupported value %q for a resource metric: use Utilization or AverageValue", target.Type)
	default:
		v.add(child(tp, "type"), "unsupported value %q: supported values: Utilization, AverageValue", target.Type)
	}
}

// parseResource parses a cpu quantity into millicores or a memory
// quantity into bytes.
func parseResource(name, q string) (int64, error) {
	if name == "cpu" {
		return ParseCPU(q)
	}
	return ParseMemory(q)
}

func (v *validator) scalingRules(r *HPAScalingRules, path string) {
	if r == nil {
		return
	}
	if w := r.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > maxStabilizationWindow) {
		v.add(child(path, "stabilizationWindowSeconds"), "must be between 0 and %d, got %d", maxStabilizationWindow, *w)
	}
	if p := r.SelectPolicy; p != nil && *p != SelectMax && *p != SelectMin && *p != SelectDisabled {
		v.add(child(path, "selectPolicy"), "unsupported value %q: supported values: Max, Min, Disabled", *p)
	}
	for i, p := range r.Policies {
		pp := fmt.Sprintf("%s.policies[%d]", path, i)
		if p.Type != PolicyPods && p.Type != PolicyPercent {
			v.add(child(pp, "type"), "unsupported value %q: supported values: Pods, Percent", p.Type)
		}
		if p.Value < 1 {
			v.add(child(pp, "value"), "must be greater than 0, got %d", p.Value)
		}
		if p.PeriodSeconds < 1 || p.PeriodSeconds > maxPolicyPeriodSeconds {
			v.add(child(pp, "periodSeconds"), "must be between 1 and %d, got %d", maxPolicyPeriodSeconds, p.PeriodSeconds)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
