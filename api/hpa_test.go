package api

import (
	"strings"
	"testing"
)

func TestHPADefaults(t *testing.T) {
	objs, warns, err := Decode([]byte(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 10
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 60
`), "hpa.yaml")
	if err != nil || len(warns) > 0 {
		t.Fatalf("decode: %v %v", err, warns)
	}
	h := objs[0].(*HorizontalPodAutoscaler)
	s := h.Spec
	if *s.MinReplicas != 1 || len(s.Metrics) != 1 || s.Metrics[0].Resource.Name != "cpu" || *s.Metrics[0].Resource.Target.AverageUtilization != 80 {
		t.Fatalf("defaults: %+v", s)
	}
	up, down := s.Behavior.ScaleUp, s.Behavior.ScaleDown
	if *up.StabilizationWindowSeconds != 0 || len(up.Policies) != 2 || *up.SelectPolicy != SelectMax {
		t.Fatalf("scaleUp defaults: %+v", up)
	}
	if *down.StabilizationWindowSeconds != 60 || len(down.Policies) != 1 || down.Policies[0].Type != PolicyPercent {
		t.Fatalf("scaleDown: %+v", down)
	}
}

func TestHPAValidation(t *testing.T) {
	_, _, err := Decode([]byte(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {kind: ReplicationController, name: ""}
  minReplicas: 3
  maxReplicas: 2
  metrics:
  - type: Pods
  - type: Resource
    resource:
      name: gpu
      target: {type: Utilization}
  - type: Resource
    resource:
      name: memory
      target: {type: AverageValue, averageValue: 128m}
  behavior:
    scaleUp:
      selectPolicy: Fastest
      policies: [{type: Pods, value: 0, periodSeconds: 4000}]
`), "hpa.yaml")
	if err == nil {
		t.Fatal("a bad HPA was accepted")
	}
	for _, want := range []string{
		"spec.scaleTargetRef.kind", "ReplicationController",
		"spec.scaleTargetRef.name",
		"spec.minReplicas", "less than or equal to maxReplicas",
		"spec.metrics[0].type", "custom or external metrics",
		"spec.metrics[1].resource.name", `"gpu"`,
		"spec.metrics[1].resource.target.averageUtilization",
		"spec.metrics[2].resource.target.averageValue", "128Mi",
		"spec.behavior.scaleUp.selectPolicy",
		"spec.behavior.scaleUp.policies[0].value",
		"spec.behavior.scaleUp.policies[0].periodSeconds",
		"hpa.yaml",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
