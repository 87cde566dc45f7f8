package agent

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/controller"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/state"
)

// orphanGrace is how old an object owned by a job or cron job that this
// peer does not hold must be before it is deleted: deltas may arrive out of
// order, a pod before its job.
const orphanGrace = 30 * time.Second

// orphanCollectInterval is how often controlBatch looks for such orphans:
// an orphan is deleted between orphanGrace and orphanGrace plus this after
// its creation.
const orphanCollectInterval = 10 * time.Second

// safeControlBatch runs controlBatch; a panic is logged and reported, as in
// safeReconcile.
func (a *Agent) safeControlBatch(now time.Time) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("job controller panic", "panic", v, "stack", string(debug.Stack()))
			a.events.record(api.ObjectReference{Kind: kindNode, Name: a.cfg.Name}, "Warning", "ReconcileFailed", fmt.Sprint(v))
		}
	}()
	a.controlBatch(now)
}

// controlBatch runs the controllers of the cron jobs and jobs this peer
// leads, and, at most every orphanCollectInterval, deletes what deleted jobs
// and cron jobs owned.
func (a *Agent) controlBatch(now time.Time) {
	cronJobs := a.store.List(api.KindCronJob, "")
	jobs := a.store.List(api.KindJob, "")
	alive := a.aliveMembers()
	leads := func(key string) bool { return placement.Leader(key, alive) == a.cfg.Name }
	progress := map[string]controller.JobProgress{} // by job key
	uids := map[string]bool{}
	for _, o := range jobs {
		j := o.(*api.Job)
		progress[api.ObjectKey(j)] = jobProgressOf(a.store, j)
		uids[j.Metadata.UID] = true
	}
	for _, o := range cronJobs {
		uids[o.Meta().UID] = true
	}
	sets := a.store.List(api.KindStatefulSet, "")
	for _, o := range sets {
		uids[o.Meta().UID] = true
	}
	for _, o := range cronJobs {
		c := o.(*api.CronJob)
		if leads(api.ObjectKey(c)) {
			a.controlCronJob(c, jobs, progress, now)
		}
	}
	var listed []api.Pod
	for _, o := range jobs {
		j := o.(*api.Job)
		if !leads(api.ObjectKey(j)) {
			continue
		}
		if listed == nil {
			listed = a.listedPods()
		}
		a.controlJob(j, progress[api.ObjectKey(j)], controller.JobPodsOf(j, listed), now)
	}
	for _, o := range sets {
		s := o.(*api.StatefulSet)
		if !leads(api.ObjectKey(s)) {
			continue
		}
		if listed == nil {
			listed = a.listedPods()
		}
		a.controlStatefulSet(s, listed)
	}
	if a.orphansCollected.due(now, orphanCollectInterval) {
		a.collectOrphans(now, uids, leads)
	}
}

// collectOrphans deletes, among the objects this peer leads, what a job,
// cron job or stateful set no peer holds any more (uids: those it holds)
// owned, orphanGrace after their creation (claims are kept unless owned:
// retention policy Retain). It decodes every stored pod, job and claim, so
// controlBatch runs it at most every orphanCollectInterval.
func (a *Agent) collectOrphans(now time.Time, uids map[string]bool, leads func(key string) bool) {
	var orphans []string
	for _, kind := range []string{api.KindPod, api.KindJob, api.KindPersistentVolumeClaim} {
		for _, o := range a.store.List(kind, "") {
			m := o.Meta()
			for _, r := range m.OwnerReferences {
				if (r.Kind == api.KindJob || r.Kind == api.KindCronJob || r.Kind == api.KindStatefulSet) && !uids[r.UID] &&
					m.CreationTimestamp != nil && now.Sub(*m.CreationTimestamp) > orphanGrace && leads(api.ObjectKey(o)) {
					orphans = append(orphans, api.ObjectKey(o))
				}
			}
		}
	}
	if len(orphans) > 0 {
		if _, err := a.store.Remove(orphans); err != nil {
			a.log.Warn("delete objects of deleted jobs", "err", err)
		}
	}
}

// controlJob carries out controller.PlanJob for j.
func (a *Agent) controlJob(j *api.Job, prog controller.JobProgress, pods []api.Pod, now time.Time) {
	plan := controller.PlanJob(j, prog, pods, now)
	ref := api.ObjectReference{Kind: api.KindJob, Namespace: j.Metadata.Namespace, Name: j.Metadata.Name, UID: j.Metadata.UID}
	// The records first: a pod is deleted only once its end is counted.
	key := state.JobProgressKey(j.Metadata.Namespace, j.Metadata.Name)
	if err := a.store.WriteProgress(key, state.KindJobProgress, j.Metadata.UID, plan.Fields()); err != nil {
		a.log.Warn("job progress", "job", api.ObjectKey(j), "err", err)
		return
	}
	for _, e := range plan.Events {
		a.events.record(ref, e.Type, e.Reason, e.Message)
	}
	if plan.DeleteJob {
		if _, err := a.store.Remove([]string{api.ObjectKey(j)}); err != nil {
			a.log.Warn("delete finished job", "job", api.ObjectKey(j), "err", err)
		}
		return
	}
	var keys []string
	for _, name := range plan.Delete {
		keys = append(keys, state.Key(api.KindPod, j.Metadata.Namespace, name))
	}
	if len(keys) > 0 {
		if _, err := a.store.Remove(keys); err != nil {
			a.log.Warn("delete job pods", "job", api.ObjectKey(j), "err", err)
		}
	}
	if len(plan.Create) == 0 {
		return
	}
	objs := make([]api.Object, 0, len(plan.Create))
	for i := range plan.Create {
		objs = append(objs, &plan.Create[i])
	}
	a.bindNew(objs)
	if _, err := a.store.Apply(objs, now, false); err != nil {
		a.log.Warn("create job pods", "job", api.ObjectKey(j), "err", err)
		a.events.record(ref, "Warning", "FailedCreate", err.Error())
		return
	}
	for _, p := range plan.Create {
		a.events.record(ref, "Normal", "SuccessfulCreate", "Created pod: "+p.Metadata.Name)
	}
}

// cronRuns returns the jobs of cron job c as runs, with how they ended.
func cronRuns(c *api.CronJob, jobs []api.Object, progress map[string]controller.JobProgress) ([]controller.CronRun, map[string]*api.Job) {
	var runs []controller.CronRun
	byName := map[string]*api.Job{}
	for _, o := range jobs {
		j := o.(*api.Job)
		if j.Metadata.Namespace != c.Metadata.Namespace || !state.OwnedBy(&j.Metadata, api.KindCronJob, c.Metadata.UID) {
			continue
		}
		t, err := controller.ScheduledTime(j)
		if err != nil {
			continue
		}
		byName[j.Metadata.Name] = j
		runs = append(runs, controller.CronRun{Name: j.Metadata.Name, Scheduled: t, End: progress[api.ObjectKey(j)].End})
	}
	return runs, byName
}

// controlCronJob carries out controller.PlanCronJob for c.
func (a *Agent) controlCronJob(c *api.CronJob, jobs []api.Object, progress map[string]controller.JobProgress, now time.Time) {
	ref := api.ObjectReference{Kind: api.KindCronJob, Namespace: c.Metadata.Namespace, Name: c.Metadata.Name, UID: c.Metadata.UID}
	sched, err := api.ParseSchedule(c.Spec.Schedule, c.Spec.TimeZone)
	if err != nil {
		return // validated on every write: not reached
	}
	prog := controller.ReadCronProgress(a.store.RawFields(state.CronProgressKey(c.Metadata.Namespace, c.Metadata.Name)), c.Metadata.UID)
	runs, _ := cronRuns(c, jobs, progress)
	plan := controller.PlanCronJob(c, sched, prog, runs, now)
	var keys []string
	for _, name := range plan.Delete {
		keys = append(keys, state.Key(api.KindJob, c.Metadata.Namespace, name))
	}
	if len(keys) > 0 {
		if _, err := a.store.Remove(keys); err != nil {
			a.log.Warn("delete cron job's jobs", "cronjob", api.ObjectKey(c), "err", err)
		}
		for _, name := range plan.Delete {
			a.events.record(ref, "Normal", "SuccessfulDelete", "Deleted job "+name)
		}
	}
	if plan.Create != nil {
		j := api.JobFromCronJob(c, *plan.Create)
		_, err := a.store.Apply([]api.Object{j}, now, true)
		switch {
		case errors.Is(err, state.ErrExists):
		case err != nil:
			a.log.Warn("create cron job's job", "cronjob", api.ObjectKey(c), "err", err)
			a.events.record(ref, "Warning", "FailedCreate", err.Error())
			return
		default:
			a.events.record(ref, "Normal", "SuccessfulCreate", "Created job "+j.Metadata.Name)
		}
	}
	fields := map[string]any{}
	if plan.Last != nil {
		fields["spec.last"] = plan.Last
	}
	if plan.LastSuccess != nil {
		fields["spec.lastSuccess"] = plan.LastSuccess
	}
	if err := a.store.WriteProgress(state.CronProgressKey(c.Metadata.Namespace, c.Metadata.Name), state.KindCronProgress, c.Metadata.UID, fields); err != nil {
		a.log.Warn("cron job progress", "cronjob", api.ObjectKey(c), "err", err)
	}
}

// controlStatefulSet carries out controller.PlanStatefulSet for s.
func (a *Agent) controlStatefulSet(s *api.StatefulSet, listed []api.Pod) {
	ref := api.ObjectReference{Kind: api.KindStatefulSet, Namespace: s.Metadata.Namespace, Name: s.Metadata.Name, UID: s.Metadata.UID}
	var pods []api.Pod
	for _, p := range listed {
		if p.Metadata.Namespace == s.Metadata.Namespace && state.OwnedBy(&p.Metadata, api.KindStatefulSet, s.Metadata.UID) {
			pods = append(pods, p)
		}
	}
	stored := map[string]bool{}
	for _, o := range a.store.List(api.KindPod, s.Metadata.Namespace) {
		if state.OwnedBy(o.Meta(), api.KindStatefulSet, s.Metadata.UID) {
			stored[o.Meta().Name] = true
		}
	}
	claims := map[string]bool{}
	for _, o := range a.store.List(api.KindPersistentVolumeClaim, s.Metadata.Namespace) {
		claims[o.Meta().Name] = true
	}
	plan := controller.PlanStatefulSet(s, pods, stored, claims, a.gonePeers(pods))
	for _, e := range plan.Events {
		a.events.record(ref, e.Type, e.Reason, e.Message)
	}
	var keys []string
	for _, name := range plan.Delete {
		keys = append(keys, state.Key(api.KindPod, s.Metadata.Namespace, name))
	}
	for _, name := range plan.DeleteClaims {
		keys = append(keys, state.Key(api.KindPersistentVolumeClaim, s.Metadata.Namespace, name))
	}
	if len(keys) > 0 {
		if _, err := a.store.Remove(keys); err != nil {
			a.log.Warn("delete stateful pods", "statefulset", api.ObjectKey(s), "err", err)
		}
	}
	if len(plan.Create) == 0 {
		return
	}
	var objs []api.Object
	for _, c := range plan.CreateClaims {
		objs = append(objs, c)
	}
	for i := range plan.Create {
		objs = append(objs, &plan.Create[i])
	}
	a.bindNew(objs)
	if _, err := a.store.Apply(objs, time.Now(), false); err != nil {
		a.log.Warn("create stateful pods", "statefulset", api.ObjectKey(s), "err", err)
		a.events.record(ref, "Warning", "FailedCreate", err.Error())
		return
	}
	for _, c := range plan.CreateClaims {
		a.events.record(ref, "Normal", "SuccessfulCreate", fmt.Sprintf("create Claim %s Pod %s in StatefulSet %s success",
			c.Metadata.Name, plan.Create[0].Metadata.Name, s.Metadata.Name))
	}
	for _, p := range plan.Create {
		a.events.record(ref, "Normal", "SuccessfulCreate", fmt.Sprintf("create Pod %s in StatefulSet %s successful", p.Metadata.Name, s.Metadata.Name))
	}
}

// gonePeers returns, among the peers of pods, those known to have left the
// cluster (their pods were stopped) or removed from it.
func (a *Agent) gonePeers(pods []api.Pod) map[string]bool {
	status := map[string]gossip.Status{a.cfg.Name: gossip.StatusAlive}
	if a.gossip != nil {
		for _, m := range a.gossip.Members() {
			status[m.Name] = m.Status
		}
	}
	out := map[string]bool{}
	for _, p := range pods {
		if n := p.Spec.NodeName; n != "" {
			if st, known := status[n]; !known || st == gossip.StatusLeft {
				out[n] = true
			}
		}
	}
	return out
}

// jobProgressOf reads the progress of j from st.
func jobProgressOf(st *state.Store, j *api.Job) controller.JobProgress {
	return controller.ReadJobProgress(st.RawFields(state.JobProgressKey(j.Metadata.Namespace, j.Metadata.Name)), j.Metadata.UID)
}

// endedJobPods returns the final status of every job pod a job's
// controller recorded as ended, by pod key.
func endedJobPods(s *state.Store) map[string]api.PodStatus {
	out := map[string]api.PodStatus{}
	s.Read(func(cs *crdt.State) {
		for _, key := range cs.Keys(state.KindJobProgress + "/") {
			_, ns, _ := state.SplitKey(key)
			fields, _ := cs.Get(key)
			for name, r := range controller.JobRecords(fields) {
				st := r.Status
				if r.Disrupted {
					st.Phase = api.PodFailed
				}
				out[ns+"/"+name] = st
			}
		}
	})
	return out
}
