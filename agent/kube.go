package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/apiserver"
	"github.com/chorus-sh/chorus/reconcile"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
)

// kubeBackend is the agent's replica as the Kubernetes API serves it
// (apiserver.Backend): chorus' objects in their Kubernetes shapes, and
// the objects a real cluster derives from them (nodes, events, endpoints,
// replica sets from the rollout history).
type kubeBackend struct{ a *Agent }

var _ apiserver.Backend = kubeBackend{}

func (b kubeBackend) Changed() <-chan struct{} { return b.a.store.Changed() }

// CatchUp pulls, from the alive peers, what they hold and this peer does
// not: a read of one object or a write about to answer "not found", and an
// update that changed nothing, ask first (see catchUp).
func (b kubeBackend) CatchUp(ctx context.Context) {
	if b.a.repl == nil || b.a.gossip == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, catchUpTimeout)
	defer cancel()
	if keys, answered := b.a.repl.catchUp(ctx, b.a.alivePeers(), maxCatchUp); keys > 0 {
		b.a.log.Info("caught up with peers before answering", "peers", answered, "keys", keys)
	}
}

// catchUpTimeout bounds what a read or write waits for peers before it answers
// "not found": a peer that died but is not yet known dead must not hold it.
const catchUpTimeout = 2 * time.Second

func marshalAll[T any](items []T) ([][]byte, error) {
	out := make([][]byte, 0, len(items))
	for _, it := range items {
		doc, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		out = append(out, doc)
	}
	return out, nil
}

func (b kubeBackend) List(ctx context.Context, kind string) ([][]byte, error) {
	a := b.a
	switch kind {
	case "Pod":
		return marshalAll(a.withControllers(onePodPerName(a.listedPods())))
	case "Namespace", "Service", "DaemonSet", "ConfigMap", "Secret", "Job", "CronJob", "StatefulSet", "PersistentVolumeClaim", "ServiceAccount":
		items, _ := a.objects(strings.ToLower(kind)+"s", "")
		return marshalAll(items)
	case "HorizontalPodAutoscaler":
		items, _ := a.objects("horizontalpodautoscalers", "")
		return marshalAll(items)
	case "Ingress", "IngressClass":
		items, _ := a.objects(strings.ToLower(kind)+"es", "")
		return marshalAll(items)
	case "Deployment":
		items, _ := a.objects("deployments", "")
		var out []map[string]any
		for _, it := range items {
			out = append(out, kubeDeployment(it.(*api.Deployment)))
		}
		return marshalAll(out)
	case "ReplicaSet":
		return marshalAll(a.replicaSets())
	case "ControllerRevision":
		return marshalAll(a.controllerRevisions())
	case "Endpoints":
		return marshalAll(a.endpoints())
	case "PersistentVolume":
		return marshalAll(a.persistentVolumes())
	case "StorageClass":
		return marshalAll(storageClasses())
	case "Node":
		return marshalAll(a.kubeNodes())
	case "Event":
		var out []map[string]any
		for _, e := range a.events.list("", "", "") {
			out = append(out, kubeEvent(e))
		}
		return marshalAll(out)
	}
	return nil, fmt.Errorf("kind %s is not served", kind)
}

// onePodPerName keeps one copy of each pod, as the Kubernetes API has one
// object per name: while a pod moves (make-before-break) two peers run it
// for a moment, and the copy shown is the one serving (Ready, else
// Running, else the first listed), not the one being stopped.
func onePodPerName(pods []api.Pod) []api.Pod {
	at := map[string]int{}
	out := make([]api.Pod, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		k := podKey(p)
		if j, ok := at[k]; ok {
			if reconcile.ServesBetter(p, &out[j]) {
				out[j] = *p
			}
			continue
		}
		at[k] = len(out)
		out = append(out, *p)
	}
	return out
}

// withControllers gives the pods of deployments and daemon sets (derived,
// not stored) the owner reference Kubernetes gives them: their ReplicaSet
// (as served: NAME-HASH, a uid derived from the deployment's) or their
// DaemonSet, so kubectl describe says who controls them and clients that
// walk owners (kubectl drain, garbage collectors, dashboards) find them.
func (a *Agent) withControllers(pods []api.Pod) []api.Pod {
	uids := map[string]string{} // kind/ns/name -> uid
	for _, kind := range []string{api.KindDeployment, api.KindDaemonSet} {
		for _, o := range a.store.List(kind, "") {
			uids[api.ObjectKey(o)] = o.Meta().UID
		}
	}
	yes := true
	for i := range pods {
		m := &pods[i].Metadata
		if len(m.OwnerReferences) > 0 {
			continue
		}
		if d := m.Labels[api.LabelDeployment]; d != "" {
			hash := m.Labels[api.LabelTemplateHash]
			if uid, ok := uids[state.Key(api.KindDeployment, m.Namespace, d)]; ok && hash != "" {
				m.OwnerReferences = []api.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: d + "-" + hash,
					UID: uidFrom(uid, hash), Controller: &yes, BlockOwnerDeletion: &yes}}
			}
		} else if ds := m.Labels[api.LabelDaemonSet]; ds != "" {
			if uid, ok := uids[state.Key(api.KindDaemonSet, m.Namespace, ds)]; ok {
				m.OwnerReferences = []api.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds,
					UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
			}
		}
	}
	return pods
}

// ListLive gathers the events of every alive peer when a client lists
// them (kubectl describe, get events), as chorus' own API does.
// It also serves the resource metrics API (PodMetrics, NodeMetrics) from
// the figures every alive peer answers at that moment.
func (b kubeBackend) ListLive(r *http.Request, kind, ns string) ([][]byte, bool) {
	var out []map[string]any
	switch kind {
	case "Event":
		for _, e := range b.a.clusterEvents(r, ns, "", "") {
			out = append(out, kubeEvent(e))
		}
	case "PodMetrics":
		pms, err := b.a.clusterPodMetrics(r.Context(), ns)
		if err != nil {
			return nil, false
		}
		for _, p := range pms {
			out = append(out, kubePodMetrics(p, time.Now()))
		}
	case "NodeMetrics":
		for _, n := range b.a.clusterNodeMetrics(r.Context()) {
			out = append(out, kubeNodeMetrics(n, time.Now()))
		}
	case api.KindImage:
		imgs, err := b.a.imageObjects(r.Context())
		if err != nil {
			b.a.log.Warn("list images", "err", err)
			return nil, false
		}
		docs, err := marshalAll(imgs)
		return docs, err == nil
	case api.KindPeer:
		// Only this peer's object is asked for (by another peer, or with
		// the selector status.serving=true): the others are not asked for
		// their figures.
		onlySelf := forwarded(r.Context())
		if fs, err := fields.ParseSelector(r.URL.Query().Get("fieldSelector")); err == nil {
			if v, ok := fs.RequiresExactMatch("status.serving"); ok && v == "true" {
				onlySelf = true
			}
		}
		docs, err := marshalAll(b.a.peerObjects(r.Context(), onlySelf))
		return docs, err == nil
	case api.KindSecretRotation:
		docs, err := marshalAll(b.a.rotationObjects())
		return docs, err == nil
	case api.KindPeerUsage:
		q := parseUsageQuery(r.URL.Query())
		docs, err := marshalAll(b.a.peerUsages(r.Context(), q, forwarded(r.Context())))
		return docs, err == nil
	default:
		return nil, false
	}
	docs, err := marshalAll(out)
	return docs, err == nil
}

var _ apiserver.LiveDeleter = kubeBackend{}

// DeleteLive removes an image from this peer (?force=true: even while
// pods here use it).
func (b kubeBackend) DeleteLive(r *http.Request, kind, ns, name string) ([]byte, error) {
	if kind != api.KindImage {
		return nil, apierrors.NewMethodNotSupported(schema.GroupResource{Group: api.GroupChorus, Resource: strings.ToLower(kind) + "s"}, "delete")
	}
	img, err := b.a.removeImage(r.Context(), name, r.URL.Query().Get("force") == "true")
	if err != nil {
		return nil, err
	}
	return json.Marshal(img)
}

// DeleteLiveCollection prunes this peer's images: those no pod here uses
// that another alive peer holds (?all=true: every image no pod here uses).
func (b kubeBackend) DeleteLiveCollection(r *http.Request, kind, ns string) ([][]byte, error) {
	if kind != api.KindImage {
		return nil, apierrors.NewMethodNotSupported(schema.GroupResource{Group: api.GroupChorus, Resource: strings.ToLower(kind) + "s"}, "deletecollection")
	}
	imgs, err := b.a.pruneImages(r.Context(), r.URL.Query().Get("all") == "true")
	if err != nil {
		return nil, err
	}
	return marshalAll(imgs)
}

// kubePodMetrics is p in metrics.k8s.io/v1beta1 PodMetrics' shape, made at
// now (metrics-server stamps its objects' creation with the time asked).
func kubePodMetrics(p api.PodMetrics, now time.Time) map[string]any {
	ctrs := make([]any, 0, len(p.Containers))
	for _, c := range p.Containers {
		ctrs = append(ctrs, map[string]any{"name": c.Name, "usage": c.Usage})
	}
	meta := map[string]any{"name": p.Metadata.Name, "namespace": p.Metadata.Namespace, "creationTimestamp": now.UTC().Format(time.RFC3339)}
	if len(p.Metadata.Labels) > 0 {
		meta["labels"] = p.Metadata.Labels
	}
	return map[string]any{"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics", "metadata": meta,
		"timestamp": p.Timestamp.UTC().Format(time.RFC3339), "window": metricsWindow(p.Window), "containers": ctrs}
}

// kubeNodeMetrics is n in metrics.k8s.io/v1beta1 NodeMetrics' shape.
func kubeNodeMetrics(n api.NodeMetrics, now time.Time) map[string]any {
	meta := map[string]any{"name": n.Metadata.Name, "creationTimestamp": now.UTC().Format(time.RFC3339)}
	if len(n.Metadata.Labels) > 0 {
		meta["labels"] = n.Metadata.Labels
	}
	return map[string]any{"apiVersion": "metrics.k8s.io/v1beta1", "kind": "NodeMetrics", "metadata": meta,
		"timestamp": n.Timestamp.UTC().Format(time.RFC3339), "window": metricsWindow(n.Window), "usage": n.Usage}
}

// metricsWindow writes a window as metav1.Duration does, to the
// millisecond ("5.002s").
func metricsWindow(d time.Duration) string { return d.Round(time.Millisecond).String() }

// decodeOne decodes one object with chorus' decoder (defaults, validation,
// warnings about what chorus does not implement).
func decodeOne(kind string, doc []byte) (api.Object, []string, error) {
	// The status is the server's: a client that sends an object back
	// (edit, replace, patch) sends it too.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		return nil, nil, apierrors.NewBadRequest(kind + ": " + err.Error())
	}
	delete(m, "status")
	if kind == api.KindNamespace {
		delete(m, "spec") // finalizers: nothing to finalize here
	}
	doc, _ = json.Marshal(m)
	objs, warns, err := api.Decode(doc, "")
	if err != nil {
		return nil, nil, kubeError(err)
	}
	if len(objs) != 1 || objs[0].GetKind() != kind {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("want one %s", kind))
	}
	return objs[0], warns, nil
}

func (b kubeBackend) Create(ctx context.Context, kind string, doc []byte, dryRun bool) ([]string, error) {
	o, warns, err := decodeOne(kind, doc)
	if err != nil {
		return nil, err
	}
	objs := []api.Object{o}
	if err := b.a.checkApply(objs); err != nil {
		return warns, kubeError(err)
	}
	if dryRun {
		return warns, nil
	}
	if err := b.a.allocateNodePorts(objs); err != nil {
		return warns, kubeError(err)
	}
	b.a.bindNew(objs)
	if _, err := b.a.store.Apply(objs, time.Now(), true); err != nil {
		return warns, kubeError(err)
	}
	return warns, nil
}

func (b kubeBackend) Update(ctx context.Context, kind, ns, name string, base, doc []byte, dryRun bool) ([]string, error) {
	if kind == "Node" {
		return nil, b.a.updateNode(name, doc, dryRun)
	}
	o, warns, err := decodeOne(kind, doc)
	if err != nil {
		return nil, err
	}
	old, _, err := decodeOne(kind, base)
	if err != nil {
		return nil, fmt.Errorf("the stored %s %s/%s does not decode: %w", kind, ns, name, err)
	}
	objs := []api.Object{o}
	if err := b.a.checkApply(objs); err != nil {
		return warns, kubeError(err)
	}
	if dryRun {
		return warns, nil
	}
	if err := b.a.allocateNodePorts(objs); err != nil {
		return warns, kubeError(err)
	}
	res, err := b.a.store.Update(old, o, time.Now())
	if err != nil {
		return warns, kubeError(err)
	}
	if res.Action == "unchanged" {
		return warns, apiserver.ErrUnchanged
	}
	return warns, nil
}

func (b kubeBackend) Delete(ctx context.Context, kind, ns, name string, opts *metav1.DeleteOptions) error {
	a := b.a
	if orphaning(kind, opts) {
		res, err := a.store.RemoveOrphaning(state.Key(kind, ns, name))
		if errors.Is(err, state.ErrCannotOrphan) {
			return apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy Orphan: %v", err))
		}
		if err != nil {
			return kubeError(err)
		}
		if res.Action == "notfound" {
			return apierrors.NewNotFound(schema.ParseGroupResource(state.GroupResource(kind)), name)
		}
		return nil
	}
	switch kind {
	case "Pod":
		if a.store.RawFields(state.Key(api.KindPod, ns, name)) != nil {
			break // a standalone pod: deleted from the state, its peer stops it
		}
		err := a.pods.Replace(ns, name)
		if errors.Is(err, runtime.ErrPodNotHere) {
			if forwarded(ctx) {
				// Passed on by a peer that thought the pod ran here: it
				// does not (any more); never bounce it back.
				return apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
			}
			return a.forwardPodDelete(ctx, ns, name)
		}
		if err == nil {
			select {
			case a.kick <- struct{}{}:
			default:
			}
		}
		return err
	case "Namespace":
		if name == api.DefaultNamespace {
			return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, name, errors.New("this namespace may not be deleted"))
		}
	}
	key := state.Key(kind, ns, name)
	res, err := a.store.Remove([]string{key})
	if err != nil {
		return kubeError(err)
	}
	if res[0].Action == "notfound" {
		gr := schema.ParseGroupResource(state.GroupResource(kind))
		return apierrors.NewNotFound(gr, name)
	}
	return nil
}

// orphaning reports whether a delete of kind with opts keeps what the object
// owns (only kinds that own something have anything to keep).
func orphaning(kind string, opts *metav1.DeleteOptions) bool {
	switch kind {
	case api.KindJob, api.KindCronJob, api.KindStatefulSet, api.KindDeployment, api.KindDaemonSet:
		return opts != nil && opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationOrphan
	}
	return false
}

// forwardPodDelete asks the peer that runs a pod to replace it.
func (a *Agent) forwardPodDelete(ctx context.Context, ns, name string) error {
	pod := a.findClusterPod(ns, name, func(p *api.Pod) bool { return p.Spec.NodeName != a.cfg.Name })
	if pod == nil || a.gossip == nil {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
	}
	addr, ok := a.memberTag(pod.Spec.NodeName, tagAPI)
	if !ok {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("pod %s/%s runs on peer %s, which is not alive", ns, name, pod.Spec.NodeName))
	}
	u := a.peerURL(addr)
	u.Path = "/api/v1/namespaces/" + ns + "/pods/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := a.peerDo(ctx, req)
	if err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("pod %s/%s runs on peer %s, which did not answer: %v", ns, name, pod.Spec.NodeName, err))
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
	}
	if resp.StatusCode >= 300 {
		return apierrors.NewInternalError(fmt.Errorf("peer %s answered %s", pod.Spec.NodeName, resp.Status))
	}
	return nil
}

// updateNode applies the one writable field of a node: spec.unschedulable
// (kubectl cordon, uncordon, drain).
func (a *Agent) updateNode(name string, doc []byte, dryRun bool) error {
	var n struct {
		Spec struct {
			Unschedulable bool `json:"unschedulable"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(doc, &n); err != nil {
		return apierrors.NewBadRequest("Node: " + err.Error())
	}
	if _, ok := a.findObject("nodes", "", name); !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
	if dryRun || n.Spec.Unschedulable == a.cordoned(name) {
		return nil
	}
	v, _ := json.Marshal(n.Spec.Unschedulable)
	fields := map[string]json.RawMessage{"spec.unschedulable": v}
	if len(a.store.RawFields(nodeKey(name))) == 0 {
		fields["apiVersion"] = json.RawMessage(`"v1"`)
		fields["kind"] = json.RawMessage(`"Node"`)
	}
	if err := a.store.WriteFields(nodeKey(name), fields); err != nil {
		return err
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	return nil
}

// kubeError turns the agent's errors, and the store's (state.ErrInvalid
// through its *api.ManifestError, ErrNotFound, ErrExists, ErrConflict),
// into Kubernetes API errors.
func kubeError(err error) error {
	var me *api.ManifestError
	var nf *state.NotFoundError
	var ee *state.ExistsError
	var se *statusError
	switch {
	case errors.As(err, &me):
		// As Kubernetes answers: the kind and name of the object, and a
		// cause per field, so kubectl prints `The Deployment "web" is
		// invalid: spec...: reason`.
		var causes []metav1.StatusCause
		details := &metav1.StatusDetails{}
		var msgs []string
		for _, fe := range me.Errors {
			causes = append(causes, metav1.StatusCause{Type: metav1.CauseTypeFieldValueInvalid, Field: fe.Field, Message: fe.Reason})
			if details.Kind == "" && details.Name == "" {
				details.Kind, details.Name = fe.Kind, fe.Name
			}
			msgs = append(msgs, strings.TrimPrefix(fe.Field+": "+fe.Reason, ": "))
		}
		details.Causes = causes
		msg := err.Error()
		if details.Kind != "" || details.Name != "" {
			msg = fmt.Sprintf("%s %q is invalid: %s", details.Kind, details.Name, strings.Join(msgs, ", "))
		}
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity,
			Reason: metav1.StatusReasonInvalid, Message: msg, Details: details}}
	case errors.As(err, &nf):
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound,
			Reason: metav1.StatusReasonNotFound, Message: nf.Msg}}
	case errors.As(err, &ee):
		return apierrors.NewAlreadyExists(schema.ParseGroupResource(ee.Resource), ee.Name)
	case errors.Is(err, state.ErrConflict):
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusConflict,
			Reason: metav1.StatusReasonConflict, Message: err.Error()}}
	case errors.As(err, &se):
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: int32(se.code),
			Reason: metav1.StatusReason(se.reason), Message: se.msg}}
	}
	return err
}

// kubeDeployment adds what kubectl and helm read of a deployment's
// status: its conditions.
func kubeDeployment(d *api.Deployment) map[string]any {
	b, _ := json.Marshal(d)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	ts := d.Metadata.CreationTimestamp
	cond := func(typ, status, reason, msg string) map[string]any {
		c := map[string]any{"type": typ, "status": status, "reason": reason, "message": msg}
		if ts != nil {
			c["lastUpdateTime"], c["lastTransitionTime"] = ts.Format(time.RFC3339), ts.Format(time.RFC3339)
		}
		return c
	}
	avail := cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
	if st.AvailableReplicas < want {
		avail = cond("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
	}
	name := d.Metadata.Name + "-" + api.TemplateHash(&d.Spec.Template)
	prog := cond("Progressing", "True", "ReplicaSetUpdated", fmt.Sprintf("ReplicaSet %q is progressing.", name))
	if st.UpdatedReplicas >= want && st.Replicas == st.UpdatedReplicas && st.AvailableReplicas >= want {
		prog = cond("Progressing", "True", "NewReplicaSetAvailable", fmt.Sprintf("ReplicaSet %q has successfully progressed.", name))
	}
	status, _ := m["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
		m["status"] = status
	}
	status["conditions"] = []any{avail, prog}
	return m
}

// replicaSets derives apps/v1 ReplicaSets from the deployments' rollout
// histories: one per revision, owned by its deployment, with the pods of
// its template counted (kubectl rollout history and undo read them).
func (a *Agent) replicaSets() []map[string]any {
	items, _ := a.objects("deployments", "")
	pods := a.clusterPods()
	var out []map[string]any
	for _, it := range items {
		d := it.(*api.Deployment)
		revs, _ := a.store.History(d)
		current := api.TemplateHash(&d.Spec.Template)
		for _, rev := range revs {
			hash := rev.Metadata.Labels[api.LabelTemplateHash]
			var replicas, ready int32
			for _, p := range pods {
				if p.Metadata.Namespace == d.Metadata.Namespace && p.Metadata.Labels[api.LabelDeployment] == d.Metadata.Name && p.Metadata.Labels[api.LabelTemplateHash] == hash {
					replicas++
					if podReady(&p) {
						ready++
					}
				}
			}
			desired := int32(0)
			if hash == current {
				desired = 1
				if d.Spec.Replicas != nil {
					desired = *d.Spec.Replicas
				}
			}
			labels := map[string]string{api.LabelTemplateHash: hash}
			for k, v := range rev.Data.Metadata.Labels {
				labels[k] = v
			}
			tmpl := rev.Data
			tmpl.Metadata.Labels = labels
			ann := map[string]string{api.AnnotationRevision: strconv.FormatInt(rev.Revision, 10)}
			if c := rev.Metadata.Annotations[api.AnnotationChangeCause]; c != "" {
				ann[api.AnnotationChangeCause] = c
			}
			sel := map[string]any{"matchLabels": map[string]string{api.LabelTemplateHash: hash}}
			if d.Spec.Selector != nil {
				ml := map[string]string{api.LabelTemplateHash: hash}
				for k, v := range d.Spec.Selector.MatchLabels {
					ml[k] = v
				}
				sel = map[string]any{"matchLabels": ml, "matchExpressions": d.Spec.Selector.MatchExpressions}
			}
			// generation 1, observed: a derived replica set is always up to
			// date with its spec (helm --wait compares the two).
			meta := map[string]any{"name": d.Metadata.Name + "-" + hash, "namespace": d.Metadata.Namespace, "labels": labels, "annotations": ann,
				"uid": uidFrom(d.Metadata.UID, hash), "generation": 1,
				"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": d.Metadata.Name,
					"uid": d.Metadata.UID, "controller": true, "blockOwnerDeletion": true}}}
			if rev.Metadata.CreationTimestamp != nil {
				meta["creationTimestamp"] = rev.Metadata.CreationTimestamp.Format(time.RFC3339)
			} else if d.Metadata.CreationTimestamp != nil {
				meta["creationTimestamp"] = d.Metadata.CreationTimestamp.Format(time.RFC3339)
			}
			out = append(out, map[string]any{"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
				"spec":   map[string]any{"replicas": desired, "selector": sel, "template": tmpl},
				"status": map[string]any{"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1}})
		}
	}
	return out
}

// controllerRevisions serves the rollout history of every daemon set and
// stateful set as apps/v1 ControllerRevisions, as their Kubernetes
// controllers keep it: data is the strategic merge patch that restores
// the template (what `kubectl rollout undo` sends back), labelled with the
// template's labels and its hash, controlled by the set.
func (a *Agent) controllerRevisions() []map[string]any {
	var out []map[string]any
	for _, resource := range []string{"daemonsets", "statefulsets"} {
		items, _ := a.objects(resource, "")
		for _, it := range items {
			o := it.(api.Object)
			m := o.Meta()
			revs, _ := a.store.History(o)
			for _, rev := range revs {
				hash := rev.Metadata.Labels[api.LabelTemplateHash]
				data, err := templatePatch(&rev.Data)
				if err != nil {
					a.log.Warn("a revision's template does not encode", "object", api.ObjectKey(o), "revision", rev.Revision, "err", err)
					continue
				}
				labels := map[string]string{"controller-revision-hash": hash}
				for k, v := range rev.Data.Metadata.Labels {
					labels[k] = v
				}
				meta := map[string]any{"name": rev.Metadata.Name, "namespace": m.Namespace, "labels": labels,
					"uid": uidFrom(m.UID, "revision/"+hash),
					"ownerReferences": []any{map[string]any{"apiVersion": "apps/v1", "kind": o.GetKind(), "name": m.Name,
						"uid": m.UID, "controller": true, "blockOwnerDeletion": true}}}
				if c := rev.Metadata.Annotations[api.AnnotationChangeCause]; c != "" {
					meta["annotations"] = map[string]string{api.AnnotationChangeCause: c}
				}
				if t := rev.Metadata.CreationTimestamp; t != nil {
					meta["creationTimestamp"] = t.Format(time.RFC3339)
				} else if m.CreationTimestamp != nil {
					meta["creationTimestamp"] = m.CreationTimestamp.Format(time.RFC3339)
				}
				out = append(out, map[string]any{"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
					"data": data, "revision": rev.Revision})
			}
		}
	}
	return out
}

// templatePatch is the patch that puts t back as a set's template, written
// as kubectl writes it from the set it reads (Kubernetes' types, keys
// sorted), so kubectl sees a revision that matches the current template as
// current: {"spec":{"template":{...,"$patch":"replace"}}}.
func templatePatch(t *api.PodTemplateSpec) (json.RawMessage, error) {
	doc, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var typed corev1.PodTemplateSpec
	if err := json.Unmarshal(doc, &typed); err != nil {
		return nil, err
	}
	if doc, err = json.Marshal(typed); err != nil {
		return nil, err
	}
	var tmpl map[string]any
	if err := json.Unmarshal(doc, &tmpl); err != nil {
		return nil, err
	}
	tmpl["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
}

// uidFrom derives a stable uid for an object derived from another.
func uidFrom(uid, salt string) string {
	h := api.TemplateHash(&api.PodTemplateSpec{Metadata: api.ObjectMeta{Name: uid + "/" + salt}})
	if len(uid) >= 8 {
		return uid[:8] + "-" + h
	}
	return h
}

// endpoints derives v1 Endpoints: the Ready pods behind each service.
func (a *Agent) endpoints() []map[string]any {
	items, _ := a.objects("services", "")
	pods := a.clusterPods()
	var out []map[string]any
	for _, it := range items {
		s := it.(*api.Service)
		var subsets []any
		for _, p := range pods {
			if p.Metadata.Namespace != s.Metadata.Namespace || len(s.Spec.Selector) == 0 || !api.SelectorMatches(s.Spec.Selector, p.Metadata.Labels) || p.Status.PodIP == "" {
				continue
			}
			var ports []any
			for _, sp := range s.Spec.Ports {
				n, _ := strconv.Atoi(targetPort(sp, &p))
				proto := sp.Protocol
				if proto == "" {
					proto = "TCP"
				}
				ports = append(ports, map[string]any{"name": sp.Name, "port": n, "protocol": proto})
			}
			addr := map[string]any{"ip": p.Status.PodIP, "nodeName": p.Spec.NodeName,
				"targetRef": map[string]any{"kind": "Pod", "namespace": p.Metadata.Namespace, "name": p.Metadata.Name, "uid": p.Metadata.UID}}
			key := "addresses"
			if !podReady(&p) {
				key = "notReadyAddresses"
			}
			subsets = append(subsets, map[string]any{key: []any{addr}, "ports": ports})
		}
		meta := map[string]any{"name": s.Metadata.Name, "namespace": s.Metadata.Namespace, "labels": s.Metadata.Labels}
		if s.Metadata.CreationTimestamp != nil {
			meta["creationTimestamp"] = s.Metadata.CreationTimestamp.Format(time.RFC3339)
		}
		ep := map[string]any{"apiVersion": "v1", "kind": "Endpoints", "metadata": meta}
		if len(subsets) > 0 {
			ep["subsets"] = subsets
		}
		out = append(out, ep)
	}
	return out
}

// kubeNodes returns the members as v1 Nodes with a Ready condition.
func (a *Agent) kubeNodes() []map[string]any {
	var out []map[string]any
	for _, n := range a.nodes() {
		// The reason names the peer's membership status: PeerAlive,
		// PeerSuspect, PeerDead, PeerLeft.
		ready, reason := "False", "Peer"+n.Status.Phase
		if n.Status.Phase == "Alive" {
			ready = "True"
		}
		capacity := map[string]string{}
		for k, v := range n.Status.Capacity {
			if v != "" {
				capacity[k] = v
			}
		}
		meta := map[string]any{"name": n.Metadata.Name, "labels": nodeLabels(n), "uid": uidFrom("node0000", n.Metadata.Name)}
		if n.Metadata.CreationTimestamp != nil {
			meta["creationTimestamp"] = n.Metadata.CreationTimestamp.Format(time.RFC3339)
		}
		spec := map[string]any{}
		if n.Spec.PodCIDR != "" {
			spec["podCIDR"] = n.Spec.PodCIDR
			spec["podCIDRs"] = []string{n.Spec.PodCIDR}
		}
		if n.Spec.Unschedulable {
			spec["unschedulable"] = true
			spec["taints"] = []any{map[string]any{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}}
		}
		out = append(out, map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec,
			"status": map[string]any{
				"conditions": []any{map[string]any{"type": "Ready", "status": ready, "reason": reason,
					"message": "chorus peer is " + n.Status.Phase}},
				"addresses":   n.Status.Addresses,
				"capacity":    capacity,
				"allocatable": capacity,
				"nodeInfo": map[string]any{"kubeletVersion": n.Status.NodeInfo["kubeletVersion"], "kubeProxyVersion": n.Status.NodeInfo["kubeletVersion"],
					"containerRuntimeVersion": "containerd", "osImage": "chorus", "kernelVersion": kernelVersion(),
					"operatingSystem": "linux", "architecture": goArch()},
			}})
	}
	return out
}

func nodeLabels(n node) map[string]string {
	l := map[string]string{"kubernetes.io/hostname": n.Metadata.Name, "kubernetes.io/os": "linux", "kubernetes.io/arch": goArch()}
	for k, v := range n.Metadata.Labels {
		l[k] = v
	}
	return l
}

// kubeEvent is an event in v1 Event's shape.
func kubeEvent(e api.Event) map[string]any {
	b, _ := json.Marshal(e)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if metaString(m, "name") == "" {
		ts := ""
		if e.FirstTimestamp != nil {
			ts = strconv.FormatInt(e.FirstTimestamp.UnixNano(), 16)
		}
		meta, _ := m["metadata"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
			m["metadata"] = meta
		}
		meta["name"] = e.InvolvedObject.Name + "." + ts
		if e.InvolvedObject.Namespace != "" {
			meta["namespace"] = e.InvolvedObject.Namespace
		}
	}
	if metaString(m, "namespace") == "" {
		meta := m["metadata"].(map[string]any)
		meta["namespace"] = api.DefaultNamespace
	}
	m["apiVersion"], m["kind"] = "v1", "Event"
	return m
}

func metaString(m map[string]any, k string) string {
	meta, _ := m["metadata"].(map[string]any)
	s, _ := meta[k].(string)
	return s
}

func goArch() string { return goruntime.GOARCH }

// kernelVersion is the running kernel's release.
func kernelVersion() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// kubeLog serves pods/log with Kubernetes' parameters (container, follow,
// previous, tailLines): the log file of a container this peer runs, or the
// answer of the peer that runs the pod.
func (a *Agent) kubeLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path, err := a.pods.LogPath(r.PathValue("namespace"), r.PathValue("name"), q.Get("container"), q.Get("previous") == "true")
	if errors.Is(err, runtime.ErrPodNotHere) && a.forwardToPod(w, r, r.PathValue("namespace"), r.PathValue("name")) {
		return
	}
	if err != nil {
		writeStatus(w, http.StatusNotFound, "NotFound", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		f = nil
		if q.Get("follow") != "true" {
			return
		}
	} else if err != nil {
		writeError(w, err)
		return
	} else {
		defer f.Close()
	}
	if f != nil {
		if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 {
			if err := seekTail(f, n); err != nil {
				writeError(w, err)
				return
			}
		}
		if _, err := io.Copy(w, f); err != nil {
			return
		}
	}
	if q.Get("follow") != "true" {
		return
	}
	var flush func()
	if fl, ok := w.(http.Flusher); ok {
		flush = fl.Flush
	}
	followFile(r.Context(), w, path, f, flush, nil)
}

// statusError is an API error with its HTTP code and Kubernetes reason.
type statusError struct {
	code   int
	reason string
	msg    string
}

func (e *statusError) Error() string { return e.msg }
