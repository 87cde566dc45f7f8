package apiserver

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
)

// Conversion serves a resource in another version than the backend keeps
// it in: HorizontalPodAutoscaler is kept as autoscaling/v2 and also served
// as autoscaling/v1.
type Conversion struct {
	// ToServed turns a kept object into the served version.
	ToServed func(obj map[string]any) (map[string]any, error)
	// ToKept turns a served object (from a client) into the kept version.
	ToKept func(obj map[string]any) (map[string]any, error)
}

// hpaV1 converts autoscaling/v2 HorizontalPodAutoscalers to and from v1,
// as Kubernetes does: v1 knows only a cpu utilization target. An update
// through v1 keeps the v2-only fields (behavior, other metrics), as the
// backend writes only the fields that differ between the object as served
// and as sent back, both converted the same way.
var hpaV1 = &Conversion{ToServed: hpaToV1, ToKept: hpaToV2}

func viaJSON(from any, to any) error {
	b, err := json.Marshal(from)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, to)
}

func hpaToV1(obj map[string]any) (map[string]any, error) {
	var in autoscalingv2.HorizontalPodAutoscaler
	if err := viaJSON(obj, &in); err != nil {
		return nil, fmt.Errorf("read an autoscaling/v2 HorizontalPodAutoscaler: %w", err)
	}
	out := autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: in.ObjectMeta,
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind,
				Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion},
			MinReplicas: in.Spec.MinReplicas,
			MaxReplicas: in.Spec.MaxReplicas,
		},
		Status: autoscalingv1.HorizontalPodAutoscalerStatus{
			ObservedGeneration: in.Status.ObservedGeneration,
			LastScaleTime:      in.Status.LastScaleTime,
			CurrentReplicas:    in.Status.CurrentReplicas,
			DesiredReplicas:    in.Status.DesiredReplicas,
		},
	}
	for _, m := range in.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
			out.Spec.TargetCPUUtilizationPercentage = m.Resource.Target.AverageUtilization
		}
	}
	for _, m := range in.Status.CurrentMetrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU {
			out.Status.CurrentCPUUtilizationPercentage = m.Resource.Current.AverageUtilization
		}
	}
	var m map[string]any
	return m, viaJSON(out, &m)
}

func hpaToV2(obj map[string]any) (map[string]any, error) {
	var in autoscalingv1.HorizontalPodAutoscaler
	if err := viaJSON(obj, &in); err != nil {
		return nil, fmt.Errorf("read an autoscaling/v1 HorizontalPodAutoscaler: %w", err)
	}
	out := autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: in.ObjectMeta,
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind,
				Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion},
			MinReplicas: in.Spec.MinReplicas,
			MaxReplicas: in.Spec.MaxReplicas,
		},
	}
	if p := in.Spec.TargetCPUUtilizationPercentage; p != nil {
		out.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: p}}}}
	}
	var m map[string]any
	if err := viaJSON(out, &m); err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = "autoscaling/v2", "HorizontalPodAutoscaler"
	delete(m, "status")
	return m, nil
}

// hpaColumns are kubectl's columns for HorizontalPodAutoscalers.
func hpaColumns() []column {
	return []column{nameCol,
		{name: "Reference", typ: "string", desc: "reference to the target object", cell: func(o map[string]any, _ time.Time) any {
			return str(o, "spec", "scaleTargetRef", "kind") + "/" + str(o, "spec", "scaleTargetRef", "name")
		}},
		{name: "Targets", typ: "string", desc: "the current and target metric values", cell: hpaTargets},
		{name: "MinPods", typ: "string", cell: func(o map[string]any, _ time.Time) any {
			if path(o, "spec", "minReplicas") == nil {
				return "<unset>"
			}
			return fmt.Sprint(num(o, "spec", "minReplicas"))
		}},
		intCol("MaxPods", "spec", "maxReplicas"),
		intCol("Replicas", "status", "currentReplicas"),
		ageCol,
	}
}

// hpaTargets is the Targets column: "cpu: 35%/50%" per metric, as kubectl
// 1.32 prints it (the fourth and later metrics summed up as "+ N more...").
func hpaTargets(o map[string]any, _ time.Time) any {
	if v, ok := path(o, "spec", "targetCPUUtilizationPercentage").(float64); ok { // autoscaling/v1
		cur := "<unknown>"
		if c, ok := path(o, "status", "currentCPUUtilizationPercentage").(float64); ok {
			cur = fmt.Sprintf("%d%%", int64(c))
		}
		return fmt.Sprintf("cpu: %s/%d%%", cur, int64(v))
	}
	specs, current := list(o, "spec", "metrics"), list(o, "status", "currentMetrics")
	if len(specs) == 0 {
		return "<none>"
	}
	var parts []string
	for i, s := range specs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+ %d more...", len(specs)-3))
			break
		}
		sm, _ := s.(map[string]any)
		src := mapOf(sm, "resource")
		name := str(sm, "resource", "name")
		curSrc := "resource"
		if str(sm, "type") == "ContainerResource" {
			src, name, curSrc = mapOf(sm, "containerResource"), str(sm, "containerResource", "name"), "containerResource"
		}
		var cm map[string]any
		if i < len(current) {
			cm, _ = current[i].(map[string]any)
		}
		cur := "<unknown>"
		if str(src, "target", "type") == "Utilization" {
			if c, ok := path(cm, curSrc, "current", "averageUtilization").(float64); ok {
				cur = fmt.Sprintf("%d%%", int64(c))
			}
			parts = append(parts, fmt.Sprintf("%s: %s/%d%%", name, cur, num(src, "target", "averageUtilization")))
			continue
		}
		if c := str(cm, curSrc, "current", "averageValue"); c != "" {
			cur = c
		}
		parts = append(parts, fmt.Sprintf("%s: %s/%s", name, cur, str(src, "target", "averageValue")))
	}
	return strings.Join(parts, ", ")
}
