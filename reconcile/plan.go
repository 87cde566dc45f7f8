// Package reconcile decides what one peer does with the cluster's pods at a
// reconcile pass. Plan takes what the peer read (the desired objects of the
// replicated state, the alive peers, the pods observed: this peer's, and
// the cluster's with their peers' statuses) and returns what it does: the
// pods it runs, those it keeps only until their new owner's copy is Ready
// (make-before-break), those it stops, the standalone pods it should bind,
// the pods that fit nowhere and why, the evicted pods it makes again and
// the events it records.
//
// Plan works in two halves. place turns the deployments (their rollouts
// given the pods that run now), the daemon sets and the standalone pods
// into the desired pods and places them over the alive peers, the same on
// every peer that holds the same state and membership; decide says what
// this peer does with that placement. Plan is pure: no clock, no I/O, its
// inputs unchanged. The agent reads its state, plans, and applies the
// actions.
//
// The package also gives the agent the rules it shares with Plan: BindNode
// binds a new standalone pod as place would place it, DaemonPods is a
// daemon set's desired pods, Ready a pod's readiness, ServesBetter which
// copy of a moving pod serves, ZoneLabel the label replicas spread over.
package reconcile

import (
	"fmt"
	"maps"
	"slices"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
)

// Desired is the desired state as the peer read it from the replicated
// store.
type Desired struct {
	// Deployments and DaemonSets are the stored ones, in key order.
	Deployments []*api.Deployment
	DaemonSets  []*api.DaemonSet
	// Pods is the standalone pods (stored Pod objects), without status,
	// in key order.
	Pods []api.Pod
	// Ended holds the keys (namespace/name) of the job pods recorded as
	// ended: such a pod never starts again (its peer may have lost it,
	// with its data dir); it is kept where it still runs, for its logs,
	// and run nowhere else.
	Ended map[string]bool
	// ClaimNodes maps each bound PersistentVolumeClaim
	// ("namespace/name") to its peer: a pod that mounts it runs there.
	ClaimNodes map[string]string
	// Services is the stored services, and ServiceIPs this peer's
	// address of each (store key -> IP): the variables the pods this
	// peer runs get (NAME_SERVICE_HOST, ...).
	Services   []*api.Service
	ServiceIPs map[string]string
}

// Observed is what the peer knows of the cluster now.
type Observed struct {
	// Nodes is the alive peers as placement sees them (labels, capacity,
	// cordon).
	Nodes []placement.Node
	// Local is the pods this peer runs now, with their statuses.
	Local []api.Pod
	// Cluster is the pods of every alive peer (Local included), each with
	// its peer (spec.nodeName) and the status its peer reports.
	Cluster []api.Pod
}

// Actions is what a peer does after a pass.
type Actions struct {
	// Run is the pods this peer runs (the pod manager's desired set),
	// in the order of Actions.Desired, then the kept ones; with the
	// services' variables.
	Run []api.Pod
	// Kept is the keys of the pods of Run this peer keeps only until
	// their new owner reports its copy Ready (make-before-break).
	Kept []string
	// Bind is the unbound standalone pods placed on this peer, with the
	// services' variables: the peer binds each (if its claims allow) and
	// then runs it.
	Bind []api.Pod
	// Stop is the keys of the pods this peer runs now and neither runs
	// nor binds after the pass, sorted.
	Stop []string
	// Pending is the desired pods that fit nowhere, as listed to users:
	// Pending, condition PodScheduled False, reason Unschedulable, the
	// placement's reason as message; sorted by key.
	Pending []api.Pod
	// Counted maps a deployment's key to how many of its replicas fit
	// nowhere and were made no pod (so are not in Pending; see place).
	Counted map[string]int
	// Desired is every desired pod as placed: a new standalone pod is
	// bound among them.
	Desired []api.Pod
	// Remake is the pods of Observed.Local that were evicted (an emptyDir
	// over its sizeLimit) and are made again, empty, as a ReplicaSet
	// makes a new pod: those of deployments and daemon sets; a standalone
	// or job pod stays Failed, as in Kubernetes.
	Remake []api.Pod
	// Events is what the pass records: FailedScheduling for each pending
	// pod and for each deployment's replicas only counted.
	Events []Event
}

// Event is an event a pass records about an object.
type Event struct {
	Object  api.ObjectReference
	Type    string // Normal or Warning
	Reason  string
	Message string
}

// Plan decides what peer self does at a reconcile pass, from the desired
// state d and what it observes o: see the package documentation.
func Plan(d Desired, o Observed, self string) Actions {
	alone := withoutEnded(d.Pods, d.Ended, o.Local, self)
	standaloneKeys := map[string]bool{}
	for i := range alone {
		standaloneKeys[key(&alone[i])] = true
	}
	desired, res, counted, reasons := place(d.Deployments, d.DaemonSets, alone, byDeployment(o.Cluster), o.Nodes, d.ClaimNodes)
	a := decide(placed{Pods: desired, Assign: res.Assign, Pending: res.Pending, Standalone: standaloneKeys}, o, self)
	a.Desired, a.Counted = desired, counted
	// What leaves the pass to be run, bound or listed gets a spec of its
	// own: a deployment's pods share theirs (api.PodsForDeployment).
	for _, run := range [][]api.Pod{a.Run, a.Bind} {
		for i := range run {
			run[i].Spec = api.Clone(run[i].Spec)
			withServiceEnv(&run[i], serviceEnv(d.Services, d.ServiceIPs, run[i].Metadata.Namespace))
		}
	}
	for i := range a.Pending {
		a.Pending[i].Spec = api.Clone(a.Pending[i].Spec)
	}
	for _, p := range a.Pending {
		a.Events = append(a.Events, Event{Object: api.ObjectReference{Kind: api.KindPod, Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID},
			Type: "Warning", Reason: "FailedScheduling", Message: res.Pending[key(&p)]})
	}
	for _, k := range slices.Sorted(maps.Keys(counted)) {
		ns, name := splitDeploymentKey(k)
		a.Events = append(a.Events, Event{Object: api.ObjectReference{Kind: api.KindDeployment, Namespace: ns, Name: name},
			Type: "Warning", Reason: "FailedScheduling", Message: fmt.Sprintf("%d more replicas pending (not listed as pods): %s", counted[k], reasons[k])})
	}
	for _, p := range o.Local {
		if p.Status.Phase == api.PodFailed && p.Status.Reason == "Evicted" && !standalone(&p) {
			a.Remake = append(a.Remake, p)
		}
	}
	return a
}

// withoutEnded returns the standalone pods less the job pods recorded as
// ended, but for those self still runs and is bound to (a new slice).
func withoutEnded(pods []api.Pod, ended map[string]bool, local []api.Pod, self string) []api.Pod {
	if len(ended) == 0 {
		return pods
	}
	here := map[string]bool{}
	for i := range local {
		here[key(&local[i])] = true
	}
	var out []api.Pod
	for _, p := range pods {
		k := key(&p)
		if ended[k] && !(here[k] && p.Spec.NodeName == self) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// byDeployment groups the cluster's pods by deployment key, each replica
// once: a replica two peers run (a move in progress) counts as the copy
// that serves (Ready if either copy is; see ServesBetter).
func byDeployment(cluster []api.Pod) map[string][]api.Pod {
	out := map[string][]api.Pod{}
	at := map[string]int{} // pod key -> index in its deployment's list
	for _, p := range cluster {
		d := p.Metadata.Labels[api.LabelDeployment]
		if d == "" {
			continue
		}
		k, dk := key(&p), deploymentKey(p.Metadata.Namespace, d)
		if i, ok := at[k]; ok {
			if ServesBetter(&p, &out[dk][i]) {
				out[dk][i] = p
			}
			continue
		}
		at[k] = len(out[dk])
		out[dk] = append(out[dk], p)
	}
	return out
}

// ServesBetter reports whether copy a of a pod serves better than copy b of
// the same pod (two peers run it while it moves): Ready first, then
// Running, then bound to a peer.
func ServesBetter(a, b *api.Pod) bool {
	rank := func(p *api.Pod) int {
		switch {
		case Ready(p):
			return 3
		case p.Status.Phase == api.PodRunning:
			return 2
		case p.Spec.NodeName != "":
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}
