package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/autoscale"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/state"
)

// HorizontalPodAutoscalers, masterless: for each HPA one peer decides, the
// alive peer placement.Leader ranks first for its key (every peer computes
// the same one from the same membership). Every hpaSyncPeriod that peer
// gathers the target's pods and their metrics (asked from the peers that
// run them), runs autoscale.Decide, writes only spec.replicas of the
// target, and writes the decision's history (recommendations and scale
// events), the HPA's status and the time of the decision into a replicated
// progress object, HPAProgress/<ns>/<name>. When the decider dies the next
// peer in rank takes over within a membership change, paced by the
// replicated time of the last decision and stabilized by the replicated
// history, so a handover causes no burst of scaling (DESIGN invariant 8).

// hpaSyncPeriod is how often an HPA is decided (Kubernetes' default
// --horizontal-pod-autoscaler-sync-period).
const hpaSyncPeriod = 15 * time.Second

// hpaMetricsTimeout bounds the gathering of the pods' metrics from peers.
const hpaMetricsTimeout = 3 * time.Second

// hpaProgress is the replicated part of an HPA's controller.
type hpaProgress struct {
	History autoscale.History `json:"history"`
	Status  *api.HPAStatus    `json:"status,omitempty"`
	Decided time.Time         `json:"decided"`
}

func readHPAProgress(fields map[string]json.RawMessage, uid string) hpaProgress {
	var p hpaProgress
	var stored string
	if json.Unmarshal(fields["spec.uid"], &stored) != nil || stored != uid {
		return p
	}
	_ = json.Unmarshal(fields["spec.history"], &p.History)
	_ = json.Unmarshal(fields["spec.decided"], &p.Decided)
	var st api.HPAStatus
	if json.Unmarshal(fields["spec.status"], &st) == nil {
		p.Status = &st
	}
	return p
}

// autoscaleLoop decides the HPAs this peer leads when they are due, until
// ctx ends. It runs apart from the reconcile loop: gathering metrics asks
// other peers and may take up to hpaMetricsTimeout.
func (a *Agent) autoscaleLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.controlAutoscalers(ctx, now)
		}
	}
}

// controlAutoscalers decides every HPA this peer leads whose last decision
// (by any peer) is hpaSyncPeriod old.
func (a *Agent) controlAutoscalers(ctx context.Context, now time.Time) {
	hpas := a.store.List(api.KindHorizontalPodAutoscaler, "")
	if len(hpas) == 0 {
		return
	}
	alive := a.aliveMembers()
	pass := &hpaPass{a: a}
	for _, o := range hpas {
		h := o.(*api.HorizontalPodAutoscaler)
		if placement.Leader(api.ObjectKey(h), alive) != a.cfg.Name {
			continue
		}
		prog := readHPAProgress(a.store.RawFields(state.HPAProgressKey(h.Metadata.Namespace, h.Metadata.Name)), h.Metadata.UID)
		if d := now.Sub(prog.Decided); d >= 0 && d < hpaSyncPeriod {
			continue
		}
		if err := a.decideHPA(ctx, pass, h, prog, now); err != nil {
			a.log.Warn("autoscaler", "hpa", api.ObjectKey(h), "err", err)
		}
	}
}

// hpaPass holds what the autoscalers due in one pass read of the
// cluster: every pod, and each namespace's pod metrics, asked of the peers
// once however many autoscalers of the namespace are due.
type hpaPass struct {
	a       *Agent
	pods    []api.Pod
	podsSet bool
	metrics map[string][]api.PodMetrics
}

func (p *hpaPass) clusterPods() []api.Pod {
	if !p.podsSet {
		p.pods, p.podsSet = p.a.clusterPods(), true
	}
	return p.pods
}

func (p *hpaPass) podMetrics(ctx context.Context, ns string) []api.PodMetrics {
	if m, ok := p.metrics[ns]; ok {
		return m
	}
	mctx, cancel := context.WithTimeout(ctx, hpaMetricsTimeout)
	defer cancel()
	m, err := p.a.clusterPodMetrics(mctx, ns)
	if err != nil {
		p.a.log.Debug("autoscaler metrics", "namespace", ns, "err", err)
	}
	if p.metrics == nil {
		p.metrics = map[string][]api.PodMetrics{}
	}
	p.metrics[ns] = m
	return m
}

// decideHPA makes one decision for h and carries it out.
func (a *Agent) decideHPA(ctx context.Context, pass *hpaPass, h *api.HorizontalPodAutoscaler, prog hpaProgress, now time.Time) error {
	if prog.Status != nil {
		h.Status = *prog.Status
	}
	in := autoscale.Input{Now: now, HPA: h, History: prog.History}
	ns, ref := h.Metadata.Namespace, h.Spec.ScaleTargetRef
	targetKey := state.Key(ref.Kind, ns, ref.Name)
	if target, ok := a.store.Get(targetKey); ok {
		var sel *api.LabelSelector
		switch t := target.(type) {
		case *api.Deployment:
			in.TargetReplicas, sel = *t.Spec.Replicas, t.Spec.Selector
		case *api.StatefulSet:
			in.TargetReplicas, sel = *t.Spec.Replicas, t.Spec.Selector
		}
		if sel != nil {
			in.TargetFound = true
			in.Pods = autoscalerPods(pass.clusterPods(), pass.podMetrics(ctx, ns), ns, sel)
			for _, p := range in.Pods {
				if p.Phase != "Failed" && p.Phase != "Succeeded" && !p.Deleting {
					in.TargetStatusReplicas++
				}
			}
		}
	}
	d := autoscale.Decide(in)
	hpaRef := api.ObjectReference{Kind: api.KindHorizontalPodAutoscaler, Namespace: ns, Name: h.Metadata.Name, UID: h.Metadata.UID}
	if d.Rescale {
		if _, err := a.store.Scale(targetKey, d.Replicas); err != nil {
			a.events.record(hpaRef, "Warning", "FailedRescale", fmt.Sprintf("New size: %d; error: %v", d.Replicas, err))
			return fmt.Errorf("scale %s to %d: %w", targetKey, d.Replicas, err)
		}
		a.log.Info("autoscaled", "hpa", api.ObjectKey(h), "target", targetKey, "from", in.TargetReplicas, "to", d.Replicas)
	}
	for _, e := range d.Events {
		a.events.record(hpaRef, e.Type, e.Reason, e.Message)
	}
	values := map[string]any{"spec.history": d.History, "spec.decided": now}
	if prog.Status == nil || !reflect.DeepEqual(*prog.Status, d.Status) {
		values["spec.status"] = d.Status
	}
	if err := a.store.WriteProgress(state.HPAProgressKey(ns, h.Metadata.Name), state.KindHPAProgress, h.Metadata.UID, values); err != nil {
		return fmt.Errorf("write the autoscaler's progress: %w", err)
	}
	return nil
}

// autoscalerPods turns the pods of namespace ns that sel selects, and
// their metrics, into the autoscaler's view.
func autoscalerPods(pods []api.Pod, metrics []api.PodMetrics, ns string, sel *api.LabelSelector) []autoscale.Pod {
	byName := map[string]*api.PodMetrics{}
	for i := range metrics {
		byName[metrics[i].Metadata.Name] = &metrics[i]
	}
	seen := map[string]bool{}
	var out []autoscale.Pod
	for _, p := range pods {
		if p.Metadata.Namespace != ns || !sel.Matches(p.Metadata.Labels) || seen[p.Metadata.Name] {
			continue
		}
		seen[p.Metadata.Name] = true // a pod moving between peers is listed twice
		ap := autoscale.Pod{Name: p.Metadata.Name, Phase: p.Status.Phase}
		if p.Status.StartTime != nil {
			ap.StartTime = *p.Status.StartTime
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" {
				ap.Ready = c.Status == "True"
				if c.LastTransitionTime != nil {
					ap.ReadyChanged = *c.LastTransitionTime
				}
			}
		}
		m := byName[p.Metadata.Name]
		if m != nil {
			ap.HasMetrics, ap.MetricsTime, ap.Window = true, m.Timestamp, m.Window
		}
		for _, c := range p.Spec.Containers {
			ac := autoscale.Container{Name: c.Name, Requests: map[string]int64{}}
			if q, ok := c.Resources.Requests["cpu"]; ok {
				if v, err := api.ParseCPU(q); err == nil {
					ac.Requests["cpu"] = v
				}
			}
			if q, ok := c.Resources.Requests["memory"]; ok {
				if v, err := api.ParseMemory(q); err == nil {
					ac.Requests["memory"] = v
				}
			}
			if m != nil {
				ac.Usage = containerUsage(m, c.Name)
				if ac.Usage == nil {
					ap.HasMetrics = false // a container not measured: the pod's figures are incomplete
				}
			}
			ap.Containers = append(ap.Containers, ac)
		}
		out = append(out, ap)
	}
	return out
}

// containerUsage reads one container's cpu (millicores) and memory
// (bytes) from a pod's metrics; nil when the container is not in them.
func containerUsage(m *api.PodMetrics, name string) map[string]int64 {
	for _, c := range m.Containers {
		if c.Name != name {
			continue
		}
		u := map[string]int64{}
		if v, err := c.Usage["cpu"].MilliCPU(); err == nil {
			u["cpu"] = v
		}
		if v, err := c.Usage["memory"].Bytes(); err == nil {
			u["memory"] = v
		}
		return u
	}
	return nil
}
