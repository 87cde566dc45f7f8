package apiserver

import (
	"encoding/json"
	"testing"
	"time"
)

const keptHPA = `{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
 "metadata":{"name":"web","namespace":"default","uid":"u1"},
 "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,"maxReplicas":5,
  "metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}},
             {"type":"Resource","resource":{"name":"memory","target":{"type":"AverageValue","averageValue":"64Mi"}}}],
  "behavior":{"scaleDown":{"stabilizationWindowSeconds":30}}},
 "status":{"currentReplicas":2,"desiredReplicas":3,
  "currentMetrics":[{"type":"Resource","resource":{"name":"cpu","current":{"averageUtilization":75,"averageValue":"150m"}}}]}}`

func TestHPAServedAsV1(t *testing.T) {
	var kept map[string]any
	if err := json.Unmarshal([]byte(keptHPA), &kept); err != nil {
		t.Fatal(err)
	}
	v1, err := hpaToV1(kept)
	if err != nil {
		t.Fatal(err)
	}
	if num(v1, "spec", "targetCPUUtilizationPercentage") != 50 || num(v1, "status", "currentCPUUtilizationPercentage") != 75 ||
		num(v1, "status", "desiredReplicas") != 3 || str(v1, "metadata", "uid") != "u1" || path(v1, "spec", "metrics") != nil {
		t.Fatalf("v1 view: %v", v1)
	}
	if got := hpaTargets(v1, time.Time{}); got != "cpu: 75%/50%" {
		t.Fatalf("v1 targets %q", got)
	}
	if got := hpaTargets(kept, time.Time{}); got != "cpu: 75%/50%, memory: <unknown>/64Mi" {
		t.Fatalf("v2 targets %q", got)
	}
	// Back to v2: the cpu target, and nothing of v2's own (the backend
	// diffs two objects converted the same way, so behavior survives).
	v1["spec"].(map[string]any)["targetCPUUtilizationPercentage"] = 60.0
	v2, err := hpaToV2(v1)
	if err != nil {
		t.Fatal(err)
	}
	if str(v2, "apiVersion") != "autoscaling/v2" || path(v2, "status") != nil || path(v2, "spec", "behavior") != nil {
		t.Fatalf("v2 from v1: %v", v2)
	}
	m := list(v2, "spec", "metrics")
	if len(m) != 1 || num(m[0].(map[string]any), "resource", "target", "averageUtilization") != 60 {
		t.Fatalf("v2 metrics from v1: %v", m)
	}
}
