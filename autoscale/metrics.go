package autoscale

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// metricError is why a metric gave no proposal, as an event reason and
// message.
type metricError struct {
	reason, message string
	invalid, total  int
}

func (e *metricError) count() string {
	return fmt.Sprintf("%d invalid out of %d", e.invalid, e.total)
}

// replicasForMetrics returns the largest proposal over the HPA's metrics
// (-1 and the first error when none can be computed, or when some cannot
// and the others would scale down), the description of the metric that
// won, and each metric's current value (an empty status for a metric that
// failed, so statuses line up with the spec's metrics).
func replicasForMetrics(in Input, current int32) (int32, string, []api.MetricStatus, *metricError) {
	metrics := in.HPA.Spec.Metrics
	proposal, name := int32(-1), ""
	var statuses []api.MetricStatus
	var first *metricError
	invalid := 0
	for _, m := range metrics {
		n, desc, status, err := replicasForMetric(in, current, m)
		if err != nil {
			invalid++
			if first == nil {
				first = err
			}
			statuses = append(statuses, api.MetricStatus{})
			continue
		}
		statuses = append(statuses, status)
		if n > proposal {
			proposal, name = n, desc
		}
	}
	if invalid > 0 && (invalid == len(metrics) || proposal < current) {
		first.invalid, first.total = invalid, len(metrics)
		return -1, "", statuses, first
	}
	return proposal, name, statuses, nil
}

// replicasForMetric computes one metric's proposal.
func replicasForMetric(in Input, current int32, m api.MetricSpec) (int32, string, api.MetricStatus, *metricError) {
	var resource, container string
	var target api.MetricTarget
	reason, kind := "FailedGetResourceMetric", "resource"
	if m.Type == api.MetricContainerResource && m.ContainerResource != nil {
		resource, container, target = m.ContainerResource.Name, m.ContainerResource.Container, m.ContainerResource.Target
		reason, kind = "FailedGetContainerResourceMetric", "container resource"
	} else if m.Resource != nil {
		resource, target = m.Resource.Name, m.Resource.Target
	} else {
		return 0, "", api.MetricStatus{}, &metricError{reason: "InvalidMetricSourceType", message: fmt.Sprintf("invalid metric source type %q", m.Type)}
	}
	fail := func(format string, args ...any) (int32, string, api.MetricStatus, *metricError) {
		what := resource + " utilization"
		if target.Type == api.TargetAverageValue {
			what = resource + " usage"
		}
		return 0, "", api.MetricStatus{}, &metricError{reason: reason, message: "failed to get " + what + ": " + fmt.Sprintf(format, args...)}
	}
	if len(in.Pods) == 0 {
		return fail("no pods returned by selector while calculating replica count")
	}
	usage := map[string]int64{}
	for _, p := range in.Pods {
		if p.HasMetrics {
			if v, ok := podValue(p, container, resource, func(c Container) map[string]int64 { return c.Usage }); ok {
				usage[p.Name] = v
			}
		}
	}
	if len(usage) == 0 {
		return fail("unable to get metrics for resource %s: no metrics returned from resource metrics API", resource)
	}
	ready, unready, missing := groupPods(in.Pods, usage, resource, in.Now)
	if len(usage) == 0 {
		return fail("did not receive metrics for targeted pods (pods might be unready)")
	}
	status := api.MetricStatus{Type: m.Type}
	var n int32
	var desc string
	if target.Type == api.TargetUtilization {
		requests := map[string]int64{}
		for _, p := range in.Pods {
			v, ok := podValue(p, container, resource, func(c Container) map[string]int64 { return c.Requests })
			if !ok {
				return fail("missing request for %s in container %s of Pod %s", resource, missingRequest(p, container, resource), p.Name)
			}
			requests[p.Name] = v
		}
		want := int64(*target.AverageUtilization)
		ratio, utilization, average, ok := utilizationRatio(usage, requests, want)
		if !ok {
			return fail("no metrics returned matched known pods")
		}
		n = decideReplicas(current, ready, unready, missing, usage, in.Tolerance, ratio, func(m map[string]int64) float64 {
			r, _, _, _ := utilizationRatio(m, requests, want)
			return r
		}, func(pod string) int64 { return requests[pod] * max(100, want) / 100 })
		setCurrent(&status, resource, container, api.MetricValueStatus{AverageValue: format(resource, average), AverageUtilization: ptr(int32(utilization))})
		desc = fmt.Sprintf("%s %s utilization (percentage of request)", resource, kind)
	} else {
		want, err := api.ParseCPU(target.AverageValue)
		if resource == "memory" {
			want, err = api.ParseMemory(target.AverageValue)
		}
		if err != nil || want <= 0 {
			return fail("invalid averageValue %q", target.AverageValue)
		}
		avg := func(m map[string]int64) float64 {
			var sum int64
			for _, v := range m {
				sum += v
			}
			return float64(sum) / float64(len(m)) / float64(want)
		}
		ratio := avg(usage)
		var sum int64
		for _, v := range usage {
			sum += v
		}
		n = decideReplicas(current, ready, unready, missing, usage, in.Tolerance, ratio, avg, func(string) int64 { return want })
		setCurrent(&status, resource, container, api.MetricValueStatus{AverageValue: format(resource, sum/int64(len(usage)))})
		desc = fmt.Sprintf("%s %s", resource, kind)
	}
	return n, desc, status, nil
}

// setCurrent fills a metric status with its current value.
func setCurrent(s *api.MetricStatus, resource, container string, v api.MetricValueStatus) {
	if container != "" {
		s.ContainerResource = &api.ContainerResourceMetricStatus{Name: resource, Container: container, Current: v}
		return
	}
	s.Resource = &api.ResourceMetricStatus{Name: resource, Current: v}
}

// decideReplicas is Kubernetes' replica arithmetic for one metric: usage
// holds the ready pods' values (it is changed), ratio their usage ratio,
// ratioOf recomputes a ratio, missingValue is the value assumed for a pod
// without metrics on a scale down.
func decideReplicas(current int32, ready int, unready, missing []string, usage map[string]int64, tolerance, ratio float64,
	ratioOf func(map[string]int64) float64, missingValue func(pod string) int64) int32 {
	scaleUpWithUnready := len(unready) > 0 && ratio > 1
	if !scaleUpWithUnready && len(missing) == 0 {
		if math.Abs(1-ratio) <= tolerance {
			return current
		}
		return int32(math.Ceil(ratio * float64(ready)))
	}
	for _, p := range missing {
		switch {
		case ratio < 1:
			usage[p] = missingValue(p)
		case ratio > 1:
			usage[p] = 0
		}
	}
	if scaleUpWithUnready {
		for _, p := range unready {
			usage[p] = 0
		}
	}
	next := ratioOf(usage)
	if math.Abs(1-next) <= tolerance || ratio < 1 && next > 1 || ratio > 1 && next < 1 {
		return current
	}
	n := int32(math.Ceil(next * float64(len(usage))))
	if next < 1 && n > current || next > 1 && n < current {
		return current
	}
	return n
}

// groupPods sorts the target's pods as Kubernetes does: pods being deleted
// or ended are ignored, pending pods are unready, pods without a value are
// missing, and for cpu a pod in its first five minutes counts only once it
// is ready and measured since (after that, unless it was never ready since
// just after its start). Only ready pods stay in usage; it returns how many.
func groupPods(pods []Pod, usage map[string]int64, resource string, now time.Time) (ready int, unready, missing []string) {
	for _, p := range pods {
		_, measured := usage[p.Name]
		switch {
		case p.Deleting || p.Phase == "Failed" || p.Phase == "Succeeded":
			delete(usage, p.Name)
			continue
		case p.Phase == "Pending":
			delete(usage, p.Name)
			unready = append(unready, p.Name)
			continue
		case !measured:
			missing = append(missing, p.Name)
			continue
		}
		if resource == "cpu" {
			var notReady bool
			switch {
			case p.StartTime.IsZero() || p.ReadyChanged.IsZero():
				notReady = true
			case p.StartTime.Add(CPUInitializationPeriod).After(now):
				notReady = !p.Ready || p.MetricsTime.Before(p.ReadyChanged.Add(p.Window))
			default:
				notReady = !p.Ready && p.StartTime.Add(InitialReadinessDelay).After(p.ReadyChanged)
			}
			if notReady {
				delete(usage, p.Name)
				unready = append(unready, p.Name)
				continue
			}
		}
		ready++
	}
	return ready, unready, missing
}

// podValue sums a resource over a pod's containers (or the one named),
// as read by values; false if a container lacks it.
func podValue(p Pod, container, resource string, values func(Container) map[string]int64) (int64, bool) {
	var sum int64
	found := false
	for _, c := range p.Containers {
		if container != "" && c.Name != container {
			continue
		}
		v, ok := values(c)[resource]
		if !ok {
			return 0, false
		}
		sum += v
		found = true
	}
	return sum, found
}

// missingRequest names the container of p without a request for resource.
func missingRequest(p Pod, container, resource string) string {
	for _, c := range p.Containers {
		if (container == "" || c.Name == container) && c.Requests[resource] == 0 {
			if _, ok := c.Requests[resource]; !ok {
				return c.Name
			}
		}
	}
	if container != "" {
		return container
	}
	return "(none)"
}

// utilizationRatio is Kubernetes' GetResourceUtilizationRatio: the pods'
// total usage over their total requests, in whole percent, over the
// target; also the utilization and the average usage per pod.
func utilizationRatio(usage, requests map[string]int64, target int64) (ratio float64, utilization, average int64, ok bool) {
	var used, requested, n int64
	for pod, v := range usage {
		r, has := requests[pod]
		if !has {
			continue
		}
		used += v
		requested += r
		n++
	}
	if requested == 0 {
		return 0, 0, 0, false
	}
	utilization = used * 100 / requested
	return float64(utilization) / float64(target), utilization, used / n, true
}

// format writes a cpu value (millicores) or a memory value (bytes) as a
// Kubernetes quantity.
func format(resource string, v int64) string {
	if resource == "cpu" {
		return strconv.FormatInt(v, 10) + "m"
	}
	if v != 0 && v%(1<<20) == 0 {
		return strconv.FormatInt(v>>20, 10) + "Mi"
	}
	if v != 0 && v%1024 == 0 {
		return strconv.FormatInt(v>>10, 10) + "Ki"
	}
	return strconv.FormatInt(v, 10)
}
