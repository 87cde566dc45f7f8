package autoscale

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// hpa returns a defaulted HPA for deployment web: cpu at target percent of
// requests, between minR and maxR replicas.
func hpa(t testing.TB, target, minR, maxR int32, behavior string) *api.HorizontalPodAutoscaler {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: %d
  maxReplicas: %d
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: %d}}
%s`, minR, maxR, target, behavior)
	objs, _, err := api.Decode([]byte(doc), "hpa.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].(*api.HorizontalPodAutoscaler)
}

// pods returns n ready pods, started ten minutes ago, each requesting 100m
// cpu and using the given millicores (cycling through usage).
func pods(n int, now time.Time, usage ...int64) []Pod {
	var out []Pod
	for i := range n {
		out = append(out, Pod{
			Name: fmt.Sprintf("web-%d", i), Phase: "Running", Ready: true,
			StartTime: now.Add(-10 * time.Minute), ReadyChanged: now.Add(-9 * time.Minute),
			HasMetrics: true, MetricsTime: now.Add(-2 * time.Second), Window: 5 * time.Second,
			Containers: []Container{{Name: "web", Requests: map[string]int64{"cpu": 100, "memory": 64 << 20},
				Usage: map[string]int64{"cpu": usage[i%len(usage)], "memory": 32 << 20}}},
		})
	}
	return out
}

func decide(h *api.HorizontalPodAutoscaler, replicas int32, ps []Pod, hist History, now time.Time) Decision {
	return Decide(Input{Now: now, HPA: h, TargetFound: true, TargetReplicas: replicas, TargetStatusReplicas: replicas, Pods: ps, History: hist})
}

func condition(st api.HPAStatus, typ string) api.HPACondition {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return api.HPACondition{}
}

func TestScaleUpByRatio(t *testing.T) {
	h := hpa(t, 50, 1, 10, "")
	// 3 pods at 100% of their requests, target 50%: ratio 2, 6 replicas.
	d := decide(h, 3, pods(3, t0, 100), History{}, t0)
	if !d.Rescale || d.Replicas != 6 {
		t.Fatalf("want a rescale to 6, got %v %d", d.Rescale, d.Replicas)
	}
	if got := *d.Status.CurrentMetrics[0].Resource.Current.AverageUtilization; got != 100 {
		t.Fatalf("current utilization %d, want 100", got)
	}
	if d.Status.CurrentMetrics[0].Resource.Current.AverageValue != "100m" {
		t.Fatalf("average value %q", d.Status.CurrentMetrics[0].Resource.Current.AverageValue)
	}
	if len(d.Events) != 1 || d.Events[0].Reason != "SuccessfulRescale" ||
		d.Events[0].Message != "New size: 6; reason: cpu resource utilization (percentage of request) above target" {
		t.Fatalf("events %+v", d.Events)
	}
	if c := condition(d.Status, ScalingActive); c.Status != "True" || c.Reason != "ValidMetricFound" {
		t.Fatalf("ScalingActive %+v", c)
	}
	if d.Status.LastScaleTime == nil || !d.Status.LastScaleTime.Equal(t0) || d.Status.DesiredReplicas != 6 {
		t.Fatalf("status %+v", d.Status)
	}
}

func TestToleranceKeepsReplicas(t *testing.T) {
	h := hpa(t, 50, 1, 10, "")
	// 90% to 108% of the target. (At 110% exactly Kubernetes scales, as
	// |1 - 55/50| is a hair above 0.1 in floating point; so does chorus.)
	for _, use := range []int64{45, 50, 54} {
		d := decide(h, 4, pods(4, t0, use), History{}, t0)
		if d.Rescale {
			t.Fatalf("usage %dm: rescaled to %d within the tolerance", use, d.Replicas)
		}
	}
	if d := decide(h, 4, pods(4, t0, 56), History{}, t0); !d.Rescale || d.Replicas != 5 {
		t.Fatalf("usage 56m (112%%): want 5 replicas, got %v %d", d.Rescale, d.Replicas)
	}
}

func TestScaleDownWaitsForTheWindow(t *testing.T) {
	h := hpa(t, 50, 1, 10, "") // default scale-down window: 300 s
	var hist History
	now := t0
	// Busy for a while: 4 replicas are right.
	d := decide(h, 4, pods(4, now, 50), hist, now)
	hist = d.History
	// Then idle: the recommendation is 1, but for 5 minutes the highest
	// recent recommendation (4) holds.
	for i := 1; i <= 19; i++ {
		now = t0.Add(time.Duration(i) * 15 * time.Second)
		d = decide(h, 4, pods(4, now, 1), hist, now)
		hist = d.History
		if d.Rescale {
			t.Fatalf("scaled down to %d after %v, inside the 300 s window", d.Replicas, now.Sub(t0))
		}
		if c := condition(d.Status, AbleToScale); c.Reason != "ScaleDownStabilized" {
			t.Fatalf("AbleToScale %+v", c)
		}
	}
	now = t0.Add(300 * time.Second)
	d = decide(h, 4, pods(4, now, 1), hist, now)
	if !d.Rescale || d.Replicas != 1 {
		t.Fatalf("after the window: want 1 replica, got %v %d", d.Rescale, d.Replicas)
	}
	if d.Events[0].Message != "New size: 1; reason: All metrics below target" {
		t.Fatalf("event %+v", d.Events[0])
	}
}

func TestScaleUpPolicies(t *testing.T) {
	// Default scale up: the larger of +4 pods and +100% per 15 s.
	h := hpa(t, 10, 1, 100, "")
	d := decide(h, 2, pods(2, t0, 100), History{}, t0) // ratio 10: wants 20
	if d.Replicas != 6 {
		t.Fatalf("from 2: want 2+4 = 6 (more than +100%%), got %d", d.Replicas)
	}
	if c := condition(d.Status, ScalingLimited); c.Status != "True" || c.Reason != "ScaleUpLimit" {
		t.Fatalf("ScalingLimited %+v", c)
	}
	// Within the same 15 s the scale up already made counts.
	d2 := decide(h, 6, pods(6, t0.Add(5*time.Second), 100), d.History, t0.Add(5*time.Second))
	if d2.Rescale {
		t.Fatalf("a second scale up within the policy period: to %d", d2.Replicas)
	}
	// After the period: +100% of 6.
	d3 := decide(h, 6, pods(6, t0.Add(16*time.Second), 100), d2.History, t0.Add(16*time.Second))
	if d3.Replicas != 12 {
		t.Fatalf("from 6 after the period: want 12, got %d", d3.Replicas)
	}
	// selectPolicy Min takes the least permissive policy; Disabled none.
	hmin := hpa(t, 10, 1, 100, `  behavior:
    scaleUp:
      selectPolicy: Min
      policies: [{type: Pods, value: 1, periodSeconds: 60}, {type: Percent, value: 50, periodSeconds: 60}]
`)
	if d := decide(hmin, 4, pods(4, t0, 100), History{}, t0); d.Replicas != 5 {
		t.Fatalf("Min of +1 pod and +50%%: want 5, got %d", d.Replicas)
	}
	hoff := hpa(t, 10, 1, 100, "  behavior:\n    scaleUp: {selectPolicy: Disabled}\n")
	if d := decide(hoff, 4, pods(4, t0, 100), History{}, t0); d.Rescale {
		t.Fatalf("scale up disabled, yet rescaled to %d", d.Replicas)
	}
}

func TestScaleDownPolicies(t *testing.T) {
	h := hpa(t, 50, 1, 100, `  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 10, periodSeconds: 60}, {type: Pods, value: 3, periodSeconds: 60}]
`)
	// 20 idle replicas want 1: the larger drop of 10% (2) and 3 pods is 3.
	d := decide(h, 20, pods(20, t0, 1), History{}, t0)
	if d.Replicas != 17 {
		t.Fatalf("want 20-3 = 17, got %d", d.Replicas)
	}
	if c := condition(d.Status, ScalingLimited); c.Reason != "ScaleDownLimit" {
		t.Fatalf("ScalingLimited %+v", c)
	}
	// selectPolicy Min: the smaller drop, 10% of 20 = 2.
	hmin := hpa(t, 50, 1, 100, `  behavior:
    scaleDown:
      stabilizationWindowSeconds: 0
      selectPolicy: Min
      policies: [{type: Percent, value: 10, periodSeconds: 60}, {type: Pods, value: 3, periodSeconds: 60}]
`)
	d = decide(hmin, 20, pods(20, t0, 1), History{}, t0)
	if d.Replicas != 18 {
		t.Fatalf("Min: want 20-2 = 18, got %d", d.Replicas)
	}
	// Within the period, the drop already made counts: 18 started at 20,
	// so 10% of 20 is used up.
	if d2 := decide(hmin, 18, pods(18, t0.Add(30*time.Second), 1), d.History, t0.Add(30*time.Second)); d2.Rescale {
		t.Fatalf("a second drop within the period: to %d", d2.Replicas)
	}
}

func TestMinMaxBounds(t *testing.T) {
	h := hpa(t, 50, 2, 5, "")
	d := decide(h, 4, pods(4, t0, 100), History{}, t0) // wants 8
	if d.Replicas != 5 || condition(d.Status, ScalingLimited).Reason != "TooManyReplicas" {
		t.Fatalf("want 5 (max) with TooManyReplicas, got %d %+v", d.Replicas, d.Status.Conditions)
	}
	d = decide(h, 7, pods(7, t0, 50), History{}, t0)
	if d.Replicas != 5 || d.Events[0].Message != "New size: 5; reason: Current number of replicas above Spec.MaxReplicas" {
		t.Fatalf("above max: %d %+v", d.Replicas, d.Events)
	}
	d = decide(h, 1, pods(1, t0, 50), History{}, t0)
	if d.Replicas != 2 {
		t.Fatalf("below min: want 2, got %d", d.Replicas)
	}
	d = decide(h, 0, nil, History{}, t0)
	if d.Rescale || condition(d.Status, ScalingActive).Reason != "ScalingDisabled" {
		t.Fatalf("target at 0 replicas: %v %+v", d.Rescale, d.Status.Conditions)
	}
}

func TestMissingAndUnreadyPods(t *testing.T) {
	h := hpa(t, 50, 1, 10, "")
	// Scale up: 2 pods at 200%, 2 without metrics counted as 0: the ratio
	// 4 over 2 pods becomes 2 over 4, so 8 replicas, not 4*2.
	ps := pods(4, t0, 200)
	ps[2].HasMetrics, ps[3].HasMetrics = false, false
	if d := decide(h, 4, ps, History{}, t0); d.Replicas != 8 {
		t.Fatalf("scale up with missing pods: want 8, got %d", d.Replicas)
	}
	// Scale down: 2 idle pods and 2 missing ones assumed at 100%: usage
	// 2+0+100+100 = 202 of 400 is 50%: no change.
	ps = pods(4, t0, 1)
	ps[2].HasMetrics, ps[3].HasMetrics = false, false
	if d := decide(h, 4, ps, History{}, t0); d.Rescale {
		t.Fatalf("scale down with missing pods: rescaled to %d", d.Replicas)
	}
	// A pending pod and a pod not ready yet in its first minutes count as
	// using nothing on a scale up.
	// (one pod at 300%: ratio 6 over 1 pod becomes 2 over 3 pods).
	ps = pods(3, t0, 300)
	ps[1].Phase = "Pending"
	ps[2].StartTime, ps[2].Ready, ps[2].ReadyChanged = t0.Add(-time.Minute), false, t0.Add(-time.Minute)
	if d := decide(h, 3, ps, History{}, t0); d.Replicas != 6 {
		t.Fatalf("scale up with unready pods: want 6, got %d", d.Replicas)
	}
	// If counting them as idle reverses the direction, nothing changes.
	ps = pods(3, t0, 100)
	ps[1].Phase = "Pending"
	ps[2].StartTime, ps[2].Ready, ps[2].ReadyChanged = t0.Add(-time.Minute), false, t0.Add(-time.Minute)
	if d := decide(h, 3, ps, History{}, t0); d.Rescale {
		t.Fatalf("unready pods reverse the direction: yet rescaled to %d", d.Replicas)
	}
	// Deleting and failed pods are ignored: one pod at 300%, ratio 6.
	ps = pods(3, t0, 300)
	ps[1].Deleting, ps[2].Phase = true, "Failed"
	if d := decide(h, 3, ps, History{}, t0); d.Replicas != 6 {
		t.Fatalf("with ignored pods: want 6, got %d", d.Replicas)
	}
	// A new decider (empty history) does not scale down at once: the
	// window starts with the current count, as in Kubernetes.
	if d := decide(h, 4, pods(4, t0, 1), History{}, t0); d.Rescale || condition(d.Status, AbleToScale).Reason != "ScaleDownStabilized" {
		t.Fatalf("first decision scaled down to %d: %+v", d.Replicas, d.Status.Conditions)
	}
}

func TestBadInputNeverScalesToZero(t *testing.T) {
	h := hpa(t, 50, 2, 5, "")
	// No requests.
	ps := pods(3, t0, 100)
	for i := range ps {
		delete(ps[i].Containers[0].Requests, "cpu")
	}
	d := decide(h, 3, ps, History{}, t0)
	if d.Rescale || d.Status.DesiredReplicas != 3 {
		t.Fatalf("no requests: %v %d", d.Rescale, d.Status.DesiredReplicas)
	}
	c := condition(d.Status, ScalingActive)
	if c.Status != "False" || c.Reason != "FailedGetResourceMetric" || !strings.Contains(c.Message, "missing request for cpu in container web of Pod web-0") {
		t.Fatalf("ScalingActive %+v", c)
	}
	if len(d.Events) != 2 || d.Events[0].Type != "Warning" {
		t.Fatalf("events %+v", d.Events)
	}
	// No metrics at all.
	ps = pods(3, t0, 100)
	for i := range ps {
		ps[i].HasMetrics = false
	}
	if d := decide(h, 3, ps, History{}, t0); d.Rescale || !strings.Contains(condition(d.Status, ScalingActive).Message, "no metrics returned") {
		t.Fatalf("no metrics: %v %+v", d.Rescale, d.Status.Conditions)
	}
	// No target.
	d = Decide(Input{Now: t0, HPA: h})
	if d.Rescale || condition(d.Status, AbleToScale).Reason != "FailedGetScale" || d.Events[0].Reason != "FailedGetScale" {
		t.Fatalf("no target: %+v %+v", d.Status, d.Events)
	}
}

func TestAverageValueAndMemory(t *testing.T) {
	objs, _, err := api.Decode([]byte(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {kind: Deployment, name: web}
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 16Mi}}
  - type: ContainerResource
    containerResource: {name: cpu, container: web, target: {type: AverageValue, averageValue: 500m}}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	h := objs[0].(*api.HorizontalPodAutoscaler)
	// 32Mi each against 16Mi: 2x; cpu 100m against 500m: 0.2x. Max wins.
	d := decide(h, 2, pods(2, t0, 100), History{}, t0)
	if d.Replicas != 4 || !strings.Contains(d.Events[0].Message, "memory resource above target") {
		t.Fatalf("want 4 by memory, got %d %+v", d.Replicas, d.Events)
	}
	if got := d.Status.CurrentMetrics[0].Resource.Current.AverageValue; got != "32Mi" {
		t.Fatalf("memory average %q", got)
	}
	if got := d.Status.CurrentMetrics[1].ContainerResource; got == nil || got.Current.AverageValue != "100m" {
		t.Fatalf("container cpu %+v", got)
	}
}

func TestConditionTimesKeptWhileStatusStays(t *testing.T) {
	h := hpa(t, 50, 1, 10, "")
	d := decide(h, 4, pods(4, t0, 50), History{}, t0)
	h.Status = d.Status
	d2 := decide(h, 4, pods(4, t0.Add(time.Minute), 50), d.History, t0.Add(time.Minute))
	if c := condition(d2.Status, ScalingActive); !c.LastTransitionTime.Equal(t0) {
		t.Fatalf("ScalingActive moved to %v", c.LastTransitionTime)
	}
}

// TestDecisionsProperties checks, over random HPAs, usage and histories:
// the decision is deterministic, stays within [min, max] when the current
// count is within them, never rescales to zero, and a decider that takes
// over with the replicated history decides as the old one would have.
func TestDecisionsProperties(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		minR := rapid.Int32Range(1, 5).Draw(rt, "min")
		maxR := rapid.Int32Range(minR, 30).Draw(rt, "max")
		target := rapid.Int32Range(10, 200).Draw(rt, "target")
		h := hpa(t, target, minR, maxR, "")
		current := rapid.Int32Range(minR, maxR).Draw(rt, "current")
		var hist History
		now := t0
		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for i := range steps {
			now = now.Add(time.Duration(rapid.IntRange(1, 60).Draw(rt, fmt.Sprint("dt", i))) * time.Second)
			use := rapid.Int64Range(0, 400).Draw(rt, fmt.Sprint("use", i))
			ps := pods(int(current), now, use)
			d := decide(h, current, ps, hist, now)
			again := decide(h, current, ps, hist, now)
			if !reflect.DeepEqual(d, again) {
				rt.Fatalf("not deterministic:\n%v\n%v", d, again)
			}
			if d.Rescale && (d.Replicas < minR || d.Replicas > maxR || d.Replicas == 0) {
				rt.Fatalf("rescaled to %d outside [%d, %d]", d.Replicas, minR, maxR)
			}
			if d.Rescale && d.Replicas == current {
				rt.Fatalf("a rescale to the current count %d", current)
			}
			// What is replicated: a JSON round trip loses nothing.
			hist = roundTrip(rt, d.History)
			if d.Rescale {
				current = d.Replicas
			}
			h.Status = d.Status
		}
	})
}

func roundTrip(rt *rapid.T, h History) History {
	b, err := json.Marshal(h)
	if err != nil {
		rt.Fatal(err)
	}
	var out History
	if err := json.Unmarshal(b, &out); err != nil {
		rt.Fatal(err)
	}
	if !reflect.DeepEqual(out, h) {
		rt.Fatalf("history changed in a round trip:\n%v\n%v", h, out)
	}
	return out
}
