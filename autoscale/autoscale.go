// Package autoscale decides the replica count of a HorizontalPodAutoscaler
// as Kubernetes' HPA controller does, as a pure function: Decide takes the
// HPA, its target's replica count, the target's pods with their requests
// and usage, the history of earlier decisions and the time, and returns the
// new status, the history to keep, the events to record and whether to
// rescale. It reads no clock and does no I/O; the agent gathers the inputs
// on the one peer that decides for the HPA, writes the target's
// spec.replicas, and replicates the history so that another peer taking
// over decides the same (no burst of scaling after a handover).
//
// The arithmetic follows Kubernetes (pkg/controller/podautoscaler):
//
//   - ratio = current usage / target (utilization: usage over the pods'
//     requests, in percent; or an average value per pod);
//   - no change while |1 - ratio| <= tolerance (10%);
//   - desired = ceil(ratio x pods with metrics);
//   - pods being deleted or failed are ignored; pending pods, and for cpu
//     pods not yet ready during their first five minutes, count as unready;
//     when the ratio says scale up, unready pods count as using nothing,
//     and pods with no metrics as using nothing (scale up) or exactly the
//     target (scale down); if that reverses the direction or falls within
//     the tolerance, nothing changes;
//   - the largest proposal over all metrics wins;
//   - behavior: the recommendation is stabilized (scale up to the lowest,
//     scale down to the highest recommendation within each window) and
//     rate-limited by the policies (pods or percent per period, the most or
//     least permissive as selectPolicy says), within min and max replicas.
package autoscale

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// Kubernetes' defaults for the HPA controller.
const (
	// DefaultTolerance is the ratio's dead band around 1.
	DefaultTolerance = 0.1
	// CPUInitializationPeriod is how long after a pod starts its cpu
	// usage counts only once it is ready (and measured since).
	CPUInitializationPeriod = 5 * time.Minute
	// InitialReadinessDelay is how soon after a pod's start a change of
	// readiness is taken as its first one.
	InitialReadinessDelay = 30 * time.Second
)

// Container is one container of a pod: its requests and, when the pod has
// metrics, its usage ("cpu" in millicores, "memory" in bytes).
type Container struct {
	Name            string
	Requests, Usage map[string]int64
}

// Pod is what the autoscaler knows of one pod of the target.
type Pod struct {
	Name         string
	Phase        string // Pending, Running, Succeeded, Failed
	Deleting     bool
	Ready        bool
	StartTime    time.Time // zero: not started
	ReadyChanged time.Time // last transition of the Ready condition (zero: none)
	HasMetrics   bool
	MetricsTime  time.Time // when the usage was measured (end of its window)
	Window       time.Duration
	Containers   []Container
}

// Recommendation is a replica count the metrics asked for at a time.
type Recommendation struct {
	Time     time.Time `json:"time"`
	Replicas int32     `json:"replicas"`
}

// ScaleEvent is a change of the target's replicas the autoscaler made.
type ScaleEvent struct {
	Time   time.Time `json:"time"`
	Change int32     `json:"change"` // replicas added (scale up) or removed (scale down)
}

// History is what the decider keeps between decisions: the recent
// recommendations (for stabilization) and scale events (for the policies).
type History struct {
	Recommendations []Recommendation `json:"recommendations,omitempty"`
	ScaleUp         []ScaleEvent     `json:"scaleUp,omitempty"`
	ScaleDown       []ScaleEvent     `json:"scaleDown,omitempty"`
}

// Input is everything one decision depends on.
type Input struct {
	Now time.Time
	// HPA is the autoscaler, defaulted (api.SetDefaults), status included.
	HPA *api.HorizontalPodAutoscaler
	// TargetFound is false when the scale target does not exist;
	// TargetReplicas is its spec.replicas, TargetStatusReplicas its
	// status.replicas.
	TargetFound                          bool
	TargetReplicas, TargetStatusReplicas int32
	// Pods are the target's pods (those its selector matches).
	Pods      []Pod
	History   History
	Tolerance float64 // DefaultTolerance when 0
}

// Event is an event to record about the HPA.
type Event struct {
	Type, Reason, Message string
}

// Decision is the outcome of Decide.
type Decision struct {
	// Rescale says the target's spec.replicas must become Replicas.
	Rescale  bool
	Replicas int32
	Status   api.HPAStatus
	History  History
	Events   []Event
}

// Condition types and statuses of an HPA.
const (
	AbleToScale    = "AbleToScale"
	ScalingActive  = "ScalingActive"
	ScalingLimited = "ScalingLimited"
)

// Decide makes one decision for in.HPA.
func Decide(in Input) Decision {
	if in.Tolerance == 0 {
		in.Tolerance = DefaultTolerance
	}
	h := in.HPA
	spec := &h.Spec
	d := Decision{History: pruneHistory(in.History, spec, in.Now)}
	st := api.HPAStatus{
		ObservedGeneration: ptr(h.Metadata.Generation),
		LastScaleTime:      h.Status.LastScaleTime,
		CurrentReplicas:    in.TargetStatusReplicas,
		DesiredReplicas:    in.TargetReplicas,
	}
	conds := newConditions(h.Status.Conditions, in.Now)
	ref := spec.ScaleTargetRef
	if !in.TargetFound {
		msg := fmt.Sprintf("the HPA controller was unable to get the target's current scale: %s.apps %q not found", plural(ref.Kind), ref.Name)
		conds.set(AbleToScale, false, "FailedGetScale", msg)
		st.Conditions = conds.list
		st.CurrentReplicas, st.DesiredReplicas = 0, 0
		d.Status = st
		d.Events = append(d.Events, Event{"Warning", "FailedGetScale", fmt.Sprintf("%s.apps %q not found", plural(ref.Kind), ref.Name)})
		return d
	}
	current := in.TargetReplicas
	minR := spec.MinReplicasOrDefault()
	desired := int32(0)
	reason := ""
	switch {
	case current == 0 && minR != 0:
		conds.set(ScalingActive, false, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
		st.Conditions = conds.list
		d.Status = st
		return d
	case current > spec.MaxReplicas:
		desired, reason = spec.MaxReplicas, "Current number of replicas above Spec.MaxReplicas"
	case current < minR:
		desired, reason = minR, "Current number of replicas below Spec.MinReplicas"
	default:
		proposal, metric, statuses, err := replicasForMetrics(in, current)
		st.CurrentMetrics = statuses
		if proposal < 0 {
			conds.set(ScalingActive, false, err.reason, "the HPA was unable to compute the replica count: "+err.message)
			conds.set(AbleToScale, true, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
			st.Conditions = conds.list
			d.Status = st
			d.Events = append(d.Events, Event{"Warning", err.reason, err.message},
				Event{"Warning", "FailedComputeMetricsReplicas", "invalid metrics (" + err.count() + "), first error is: " + err.message})
			return d
		}
		conds.set(ScalingActive, true, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from "+metric)
		desired = proposal
		switch {
		case desired > current:
			reason = metric + " above target"
		case desired < current:
			reason = "All metrics below target"
		}
		desired = normalize(in, &d.History, &conds, current, desired, minR)
	}
	st.DesiredReplicas = desired
	if desired != current {
		d.Rescale, d.Replicas = true, desired
		t := in.Now
		st.LastScaleTime = &t
		if desired > current {
			d.History.ScaleUp = append(d.History.ScaleUp, ScaleEvent{in.Now, desired - current})
		} else {
			d.History.ScaleDown = append(d.History.ScaleDown, ScaleEvent{in.Now, current - desired})
		}
		d.Events = append(d.Events, Event{"Normal", "SuccessfulRescale", fmt.Sprintf("New size: %d; reason: %s", desired, reason)})
	}
	st.Conditions = conds.list
	d.Status = st
	return d
}

// normalize stabilizes the recommendation and applies the rate policies
// and replica bounds (Kubernetes' normalizeDesiredReplicasWithBehaviors).
func normalize(in Input, hist *History, conds *conditions, current, prenormalized, minR int32) int32 {
	b := in.HPA.Spec.Behavior
	up, down := b.ScaleUp, b.ScaleDown
	upCutoff := in.Now.Add(-seconds(up.StabilizationWindowSeconds))
	downCutoff := in.Now.Add(-seconds(down.StabilizationWindowSeconds))
	if len(hist.Recommendations) == 0 && down.StabilizationWindowSeconds != nil && *down.StabilizationWindowSeconds > 0 {
		// A decider with no history (a new HPA) starts the window with
		// the current count, as Kubernetes does.
		hist.Recommendations = []Recommendation{{in.Now, current}}
	}
	upRec, downRec := prenormalized, prenormalized
	for _, r := range hist.Recommendations {
		if r.Time.After(upCutoff) {
			upRec = min(upRec, r.Replicas)
		}
		if r.Time.After(downCutoff) {
			downRec = max(downRec, r.Replicas)
		}
	}
	hist.Recommendations = append(hist.Recommendations, Recommendation{in.Now, prenormalized})
	stabilized := max(current, upRec)
	stabilized = min(stabilized, downRec)
	switch {
	case stabilized == prenormalized:
		conds.set(AbleToScale, true, "ReadyForNewScale", "recommended size matches current size")
	case stabilized < prenormalized:
		conds.set(AbleToScale, true, "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation")
	default:
		conds.set(AbleToScale, true, "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation")
	}
	desired, reason, message := stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
	maxR := in.HPA.Spec.MaxReplicas
	switch {
	case stabilized > current:
		limit := max(rateLimit(current, hist, up, in.Now, true), current)
		allowed := maxR
		if allowed > limit {
			allowed = limit
			reason, message = "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		} else {
			reason, message = "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		}
		if stabilized > allowed {
			desired = allowed
		} else {
			reason, message = "DesiredWithinRange", "the desired count is within the acceptable range"
		}
	case stabilized < current:
		limit := min(rateLimit(current, hist, down, in.Now, false), current)
		allowed := minR
		if allowed < limit {
			allowed = limit
			reason, message = "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		} else {
			reason, message = "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		}
		if stabilized < allowed {
			desired = allowed
		} else {
			reason, message = "DesiredWithinRange", "the desired count is within the acceptable range"
		}
	}
	conds.set(ScalingLimited, desired != stabilized, reason, message)
	return desired
}

// changeWithin sums the changes of events within period before now.
func changeWithin(events []ScaleEvent, period int32, now time.Time) int32 {
	cutoff := now.Add(-time.Duration(period) * time.Second)
	var n int32
	for _, e := range events {
		if e.Time.After(cutoff) {
			n += e.Change
		}
	}
	return n
}

// rateLimit is the bound the policies of r put now on a change from
// current: the most replicas they allow (up) or the fewest (down).
// selectPolicy Max takes the most permissive policy, Min the least.
func rateLimit(current int32, hist *History, r *api.HPAScalingRules, now time.Time, up bool) int32 {
	sel := selectPolicy(r)
	if sel == api.SelectDisabled || len(r.Policies) == 0 {
		return current
	}
	larger := (sel != api.SelectMin) == up
	var result int32
	for i, p := range r.Policies {
		start := current - changeWithin(hist.ScaleUp, p.PeriodSeconds, now) + changeWithin(hist.ScaleDown, p.PeriodSeconds, now)
		var proposed int32
		switch {
		case p.Type == api.PolicyPods && up:
			proposed = start + p.Value
		case p.Type == api.PolicyPods:
			proposed = start - p.Value
		case up:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		default:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		if i == 0 || larger && proposed > result || !larger && proposed < result {
			result = proposed
		}
	}
	return result
}

func selectPolicy(r *api.HPAScalingRules) string {
	if r.SelectPolicy == nil {
		return api.SelectMax
	}
	return *r.SelectPolicy
}

// pruneHistory drops what no window or policy period of spec can see.
func pruneHistory(h History, spec *api.HPASpec, now time.Time) History {
	b := spec.Behavior
	window := max(seconds(b.ScaleUp.StabilizationWindowSeconds), seconds(b.ScaleDown.StabilizationWindowSeconds))
	var period int32
	for _, r := range []*api.HPAScalingRules{b.ScaleUp, b.ScaleDown} {
		for _, p := range r.Policies {
			period = max(period, p.PeriodSeconds)
		}
	}
	keepRec := func(r Recommendation) bool { return !r.Time.After(now) && now.Sub(r.Time) < window }
	keepEv := func(e ScaleEvent) bool {
		return !e.Time.After(now) && now.Sub(e.Time) < time.Duration(period)*time.Second
	}
	return History{
		Recommendations: filter(h.Recommendations, keepRec),
		ScaleUp:         filter(h.ScaleUp, keepEv),
		ScaleDown:       filter(h.ScaleDown, keepEv),
	}
}

func filter[T any](xs []T, keep func(T) bool) []T {
	var out []T
	for _, x := range xs {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

func seconds(p *int32) time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(*p) * time.Second
}

func ptr[T any](v T) *T { return &v }

func plural(kind string) string {
	if kind == api.KindStatefulSet {
		return "statefulsets"
	}
	return "deployments"
}

// conditions updates a list of conditions, keeping each one's transition
// time while its status stays.
type conditions struct {
	list []api.HPACondition
	now  time.Time
}

func newConditions(prev []api.HPACondition, now time.Time) conditions {
	c := conditions{now: now}
	// The order Kubernetes shows them in.
	for _, typ := range []string{AbleToScale, ScalingActive, ScalingLimited} {
		if i := slices.IndexFunc(prev, func(p api.HPACondition) bool { return p.Type == typ }); i >= 0 {
			c.list = append(c.list, prev[i])
		}
	}
	return c
}

func (c *conditions) set(typ string, ok bool, reason, message string) {
	status := "False"
	if ok {
		status = "True"
	}
	t := c.now
	for i := range c.list {
		if c.list[i].Type != typ {
			continue
		}
		if c.list[i].Status == status && c.list[i].LastTransitionTime != nil {
			t = *c.list[i].LastTransitionTime
		}
		c.list[i] = api.HPACondition{Type: typ, Status: status, LastTransitionTime: &t, Reason: reason, Message: message}
		return
	}
	c.list = append(c.list, api.HPACondition{Type: typ, Status: status, LastTransitionTime: &t, Reason: reason, Message: message})
	order := map[string]int{AbleToScale: 0, ScalingActive: 1, ScalingLimited: 2}
	slices.SortStableFunc(c.list, func(a, b api.HPACondition) int { return order[a.Type] - order[b.Type] })
}
