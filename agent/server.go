package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/runtime"
)

// Limits on request bodies.
const (
	maxManifestBody = api.MaxManifestBytes
	maxObjectBody   = 1 << 20
)

// resources maps the plural resource names of the API to kinds.
var resourceKinds = map[string]string{
	"namespaces":  api.KindNamespace,
	"deployments": api.KindDeployment,
	"services":    api.KindService,
	"pods":        api.KindPod,
	"daemonsets":  api.KindDaemonSet,
}

// routes is the API with its checks but without the server's limits (see
// newAPIServer).
func (a *Agent) routes() http.Handler {
	return a.recoverer(a.checkedRoutes())
}

// checkedRoutes is the API behind its checks (the token, same-origin
// requests) with the requests other peers passed on marked (forwarded).
func (a *Agent) checkedRoutes() http.Handler {
	return requireToken(a.cfg.APIToken, a.log, a.checkSameOrigin(markForwarded(a.routesMux())))
}

func (a *Agent) routesMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /chorus/v1/version", a.handleVersion)
	mux.HandleFunc("POST /chorus/v1/apply", a.handleApply)
	mux.HandleFunc("POST /chorus/v1/delete", a.handleDeleteManifest)
	mux.HandleFunc("GET /chorus/v1/{resource}", a.handleList)
	mux.HandleFunc("GET /chorus/v1/namespaces/{ns}/{resource}", a.handleList)
	mux.HandleFunc("GET /chorus/v1/namespaces/{ns}/{resource}/{name}", a.handleGet)
	mux.HandleFunc("GET /chorus/v1/namespaces/{name}", a.handleGetNamespace)
	mux.HandleFunc("GET /chorus/v1/nodes/{name}", a.handleGetNode)
	mux.HandleFunc("DELETE /chorus/v1/namespaces/{ns}/{resource}/{name}", a.handleDelete)
	mux.HandleFunc("DELETE /chorus/v1/namespaces/{name}", a.handleDeleteNamespace)
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/deployments", a.handleCreateDeployment)
	mux.HandleFunc("PUT /chorus/v1/namespaces/{ns}/deployments/{name}/scale", a.handleScale)
	mux.HandleFunc("GET /chorus/v1/namespaces/{ns}/deployments/{name}/revisions", a.handleRevisions)
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/deployments/{name}/rollout", a.handleRollout)
	mux.HandleFunc("GET /chorus/v1/namespaces/{ns}/pods/{name}/log", a.handleLog)
	mux.HandleFunc("PUT /chorus/v1/nodes/{name}/cordon", a.handleCordon)
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/services/{name}/portforward", a.handlePortForward)
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/pods/{name}/portforward", a.handlePortForward)
	mux.HandleFunc("POST /chorus/v1/namespaces/{ns}/pods/{name}/exec", a.handleExec)
	mux.HandleFunc("GET /metrics", a.handleMetrics)
	mux.HandleFunc("GET /{$}", a.handleDashboard)
	mux.HandleFunc("GET /dashboard/", a.handleDashboard)
	if a.kube != nil {
		a.kube.Register(mux)
	}
	return mux
}

func (a *Agent) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("API handler panic", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeStatus(w, http.StatusInternalServerError, "InternalError", fmt.Sprint(v))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// status is Kubernetes' Status object, the body of every error.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason"`
	Code       int      `json:"code"`
	Details    []string `json:"details,omitempty"`
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string, details ...string) {
	writeJSON(w, code, status{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: msg, Reason: reason, Code: code, Details: details})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	var me *api.ManifestError
	var nf *notFoundError
	var tl *http.MaxBytesError
	var se *statusError
	var ie *invalidError
	switch {
	case errors.As(err, &ie):
		var details []string
		for _, fe := range ie.err.Errors {
			details = append(details, fe.Error())
		}
		writeStatus(w, http.StatusUnprocessableEntity, "Invalid", err.Error(), details...)
	case errors.As(err, &me):
		var details []string
		for _, fe := range me.Errors {
			details = append(details, fe.Error())
		}
		writeStatus(w, http.StatusBadRequest, "BadRequest", err.Error(), details...)
	case errors.As(err, &nf):
		writeStatus(w, http.StatusNotFound, "NotFound", err.Error())
	case errors.As(err, &se):
		writeStatus(w, se.code, se.reason, se.msg)
	case errors.As(err, &tl):
		writeStatus(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", fmt.Sprintf("request body larger than %d bytes", tl.Limit))
	default:
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
	}
}

type applyResponse struct {
	Results  []Result `json:"results"`
	Warnings []string `json:"warnings,omitempty"`
}

func (a *Agent) readManifest(w http.ResponseWriter, r *http.Request) ([]api.Object, []string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxManifestBody))
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	objs, warns, err := api.Decode(body, r.URL.Query().Get("source"))
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	if len(objs) == 0 {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "no objects passed to apply")
		return nil, nil, false
	}
	return objs, warns, true
}

func (a *Agent) handleApply(w http.ResponseWriter, r *http.Request) {
	objs, warns, ok := a.readManifest(w, r)
	if !ok {
		return
	}
	if err := a.checkApply(objs); err != nil {
		writeError(w, err)
		return
	}
	if err := a.allocateNodePorts(objs); err != nil {
		writeError(w, err)
		return
	}
	a.bindNew(objs)
	res, err := a.store.apply(objs, time.Now(), r.URL.Query().Get("create") == "true")
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: res, Warnings: warns})
}

// checkApply runs the checks that need the stored state, before anything is
// stored. Service port conflicts belong here.
func (a *Agent) checkApply(objs []api.Object) error {
	var errs []api.FieldError
	inApply := map[int32]string{}
	for i, o := range objs {
		for _, ps := range api.PodSpecsOf(o) {
			for j, vol := range ps.Spec.Volumes {
				if h := vol.HostPath; h != nil && !api.HostPathAllowed(h.Path, a.cfg.AllowedHostPaths) {
					why := "hostPath volumes are refused on this peer (start its agent with --allow-host-path=PREFIX to allow some)"
					if len(a.cfg.AllowedHostPaths) > 0 {
						why = fmt.Sprintf("%q is not under a prefix this peer allows (--allow-host-path: %s)", h.Path, strings.Join(a.cfg.AllowedHostPaths, ", "))
					}
					errs = append(errs, api.FieldError{Doc: i + 1, Kind: o.GetKind(), Name: o.Meta().Name,
						Field: fmt.Sprintf("%s.volumes[%d].hostPath.path", ps.Path, j), Reason: why})
				}
			}
		}
		if p, ok := o.(*api.Pod); ok {
			// A standalone pod may not take the name of a derived one.
			ns, name := p.Metadata.Namespace, p.Metadata.Name
			if d := a.findClusterPod(ns, name, func(q *api.Pod) bool { return !isStandalone(q) }); d != nil {
				errs = append(errs, api.FieldError{Doc: i + 1, Kind: api.KindPod, Name: name, Field: "metadata.name",
					Reason: fmt.Sprintf("pod %s/%s of %s already exists", ns, name, ownerOf(d))})
			}
		}
		svc, ok := o.(*api.Service)
		if !ok {
			continue
		}
		for j, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			if other, dup := inApply[p.NodePort]; dup && other != api.ObjectKey(svc) {
				errs = append(errs, api.FieldError{Doc: i + 1, Kind: svc.GetKind(), Name: svc.Metadata.Name,
					Field:  fmt.Sprintf("spec.ports[%d].nodePort", j),
					Reason: fmt.Sprintf("port %d is also given to %s in this manifest", p.NodePort, other)})
			}
			inApply[p.NodePort] = api.ObjectKey(svc)
			for _, other := range a.store.list(api.KindService, "") {
				os := other.(*api.Service)
				if api.ObjectKey(os) == api.ObjectKey(svc) {
					continue
				}
				for _, op := range os.Spec.Ports {
					if op.NodePort == p.NodePort {
						errs = append(errs, api.FieldError{Doc: i + 1, Kind: svc.GetKind(), Name: svc.Metadata.Name,
							Field:  fmt.Sprintf("spec.ports[%d].nodePort", j),
							Reason: fmt.Sprintf("port %d is already allocated to service %s/%s", p.NodePort, os.Metadata.Namespace, os.Metadata.Name)})
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return &api.ManifestError{Errors: errs}
	}
	return nil
}

func (a *Agent) handleDeleteManifest(w http.ResponseWriter, r *http.Request) {
	objs, _, ok := a.readManifest(w, r)
	if !ok {
		return
	}
	var keys []string
	for _, o := range objs {
		keys = append(keys, api.ObjectKey(o))
	}
	res, err := a.store.remove(keys)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: res})
}

func (a *Agent) handleDelete(w http.ResponseWriter, r *http.Request) {
	kind, ok := resourceKinds[r.PathValue("resource")]
	if kind == api.KindPod {
		a.deletePod(w, r, r.PathValue("ns"), r.PathValue("name"))
		return
	}
	if !ok || kind == api.KindNamespace {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("the server cannot delete resource type %q here", r.PathValue("resource")))
		return
	}
	a.deleteOne(w, objectKey(kind, r.PathValue("ns"), r.PathValue("name")), r.PathValue("resource"))
}

// deletePod deletes a standalone pod (its peer stops it), or replaces a
// pod of a deployment or a daemon set on the peer that runs it: its owner
// starts it again at once (same name, new containers, address and restart
// count), as a ReplicaSet replaces a deleted pod in Kubernetes.
func (a *Agent) deletePod(w http.ResponseWriter, r *http.Request, ns, name string) {
	if key := objectKey(api.KindPod, ns, name); a.store.rawFields(key) != nil {
		a.deleteOne(w, key, "pods")
		return
	}
	err := a.pods.Replace(ns, name)
	if errors.Is(err, runtime.ErrPodNotHere) {
		if a.forwardToPod(w, r, ns, name) {
			return
		}
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pods %q not found on any alive peer", name))
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: []Result{{Kind: api.KindPod, Namespace: ns, Name: name, Action: "deleted"}}})
}

func (a *Agent) handleDeleteNamespace(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == api.DefaultNamespace {
		writeStatus(w, http.StatusForbidden, "Forbidden", `namespace "default" cannot be deleted`)
		return
	}
	a.deleteOne(w, objectKey(api.KindNamespace, "", name), "namespaces")
}

func (a *Agent) deleteOne(w http.ResponseWriter, key, resource string) {
	res, err := a.store.remove([]string{key})
	if err != nil {
		writeError(w, err)
		return
	}
	if res[0].Action == "notfound" {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", resource, res[0].Name))
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: res})
}

func (a *Agent) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": a.cfg.Version, "node": a.cfg.Name})
}

// objects returns the objects of a resource in namespace ns ("" for all),
// with their statuses filled in.
func (a *Agent) objects(resource, ns string) ([]any, bool) {
	switch resource {
	case "pods":
		var out []any
		for _, p := range a.listedPods() {
			if ns == "" || p.Metadata.Namespace == ns {
				out = append(out, p)
			}
		}
		return out, true
	case "events":
		return anys(a.events.list(ns, "", ""), nil), true
	case "nodes":
		return anys(a.nodes(), nil), true
	case "namespaces":
		hasDefault := false
		out := anys(a.store.list(api.KindNamespace, ""), func(o api.Object) {
			n := o.(*api.Namespace)
			n.Status.Phase = "Active"
			hasDefault = hasDefault || n.Metadata.Name == api.DefaultNamespace
		})
		if !hasDefault {
			// Every peer has it and none created it: it carries no timestamp,
			// so that every peer answers the same.
			d := &api.Namespace{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: api.KindNamespace},
				Metadata: api.ObjectMeta{Name: api.DefaultNamespace}, Status: api.NamespaceStatus{Phase: "Active"}}
			out = append([]any{d}, out...)
		}
		return out, true
	case "deployments":
		pods := a.clusterPods()
		return anys(a.store.list(api.KindDeployment, ns), func(o api.Object) {
			d := o.(*api.Deployment)
			var mine []api.Pod
			for _, p := range pods {
				if p.Metadata.Namespace == d.Metadata.Namespace && p.Metadata.Labels[api.LabelDeployment] == d.Metadata.Name {
					mine = append(mine, p)
				}
			}
			d.Status = deploymentStatus(d, mine)
			if _, rev := a.store.history(d); rev > 0 {
				d.Metadata.Annotations[api.AnnotationRevision] = strconv.FormatInt(rev, 10)
			}
		}), true
	case "daemonsets":
		pods := a.clusterPods()
		return anys(a.store.list(api.KindDaemonSet, ns), func(o api.Object) {
			d := o.(*api.DaemonSet)
			d.Status = a.daemonSetStatus(d, pods)
		}), true
	case "statefulsets":
		listed := a.listedPods()
		return anys(a.store.list(api.KindStatefulSet, ns), func(o api.Object) {
			s := o.(*api.StatefulSet)
			var pods []api.Pod
			for _, p := range listed {
				if p.Metadata.Namespace == s.Metadata.Namespace && ownedBy(&p.Metadata, api.KindStatefulSet, s.Metadata.UID) {
					pods = append(pods, p)
				}
			}
			s.Status = statefulSetStatus(s, pods)
		}), true
	case "serviceaccounts":
		// Every namespace has "default"; stored ones are listed as they are.
		have := map[string]bool{}
		out := anys(a.store.list(api.KindServiceAccount, ns), func(o api.Object) {
			have[o.Meta().Namespace+"/"+o.Meta().Name] = true
		})
		nss, _ := a.objects("namespaces", "")
		for _, o := range nss {
			n := o.(*api.Namespace)
			if ns != "" && n.Metadata.Name != ns || have[n.Metadata.Name+"/"+api.DefaultServiceAccount] {
				continue
			}
			sa := &api.ServiceAccount{Metadata: api.ObjectMeta{Name: api.DefaultServiceAccount, Namespace: n.Metadata.Name,
				UID: uidFrom(n.Metadata.Name, "default-sa"), CreationTimestamp: n.Metadata.CreationTimestamp}}
			sa.SetTypeMeta()
			out = append(out, sa)
		}
		return out, true
	case "persistentvolumeclaims":
		return anys(a.store.list(api.KindPersistentVolumeClaim, ns), func(o api.Object) {
			claimStatus(o.(*api.PersistentVolumeClaim))
		}), true
	case "jobs":
		listed := a.listedPods()
		return anys(a.store.list(api.KindJob, ns), func(o api.Object) {
			j := o.(*api.Job)
			j.Status = jobStatus(j, a.store.jobProgressOf(j), jobPodsOf(j, listed))
		}), true
	case "cronjobs":
		jobs := a.store.list(api.KindJob, ns)
		progress := map[string]jobProgress{}
		for _, o := range jobs {
			progress[api.ObjectKey(o)] = a.store.jobProgressOf(o.(*api.Job))
		}
		return anys(a.store.list(api.KindCronJob, ns), func(o api.Object) {
			c := o.(*api.CronJob)
			runs, byName := cronRuns(c, jobs, progress)
			prog := readCronProgress(a.store.rawFields(cronProgressKey(c.Metadata.Namespace, c.Metadata.Name)), c.Metadata.UID)
			c.Status = cronJobStatus(prog, runs, byName)
		}), true
	case "configmaps":
		return anys(a.store.list(api.KindConfigMap, ns), nil), true
	case "secrets":
		return anys(a.store.list(api.KindSecret, ns), nil), true
	case "horizontalpodautoscalers":
		return anys(a.store.list(api.KindHorizontalPodAutoscaler, ns), func(o api.Object) {
			h := o.(*api.HorizontalPodAutoscaler)
			if p := readHPAProgress(a.store.rawFields(hpaProgressKey(h.Metadata.Namespace, h.Metadata.Name)), h.Metadata.UID); p.Status != nil {
				h.Status = *p.Status
			}
		}), true
	case "ingresses":
		return anys(a.store.list(api.KindIngress, ns), func(o api.Object) {
			a.ingressStatus(o.(*api.Ingress))
		}), true
	case "ingressclasses":
		return anys(a.ingressClasses(), nil), true
	case "services":
		pods := a.clusterPods()
		var lb []api.LoadBalancerIngress
		for _, ip := range a.aliveAddrs() {
			lb = append(lb, api.LoadBalancerIngress{IP: ip, IPMode: "VIP"})
		}
		ips := map[string]string{}
		if p := a.svcIPs.Load(); p != nil {
			ips = *p
		}
		return anys(a.store.list(api.KindService, ns), func(o api.Object) {
			s := o.(*api.Service)
			if !s.Headless() {
				s.Spec.ClusterIP = ips[api.ObjectKey(s)]
			}
			if s.Spec.Type == api.ServiceTypeLoadBalancer {
				s.Status.LoadBalancer.Ingress = lb
			}
			var eps []string
			for _, p := range pods {
				if p.Metadata.Namespace == s.Metadata.Namespace && len(s.Spec.Selector) > 0 && api.SelectorMatches(s.Spec.Selector, p.Metadata.Labels) && podReady(&p) && p.Status.PodIP != "" {
					for _, sp := range s.Spec.Ports {
						eps = append(eps, p.Status.PodIP+":"+targetPort(sp, &p))
					}
				}
			}
			if len(eps) > 0 {
				if s.Metadata.Annotations == nil {
					s.Metadata.Annotations = map[string]string{}
				}
				s.Metadata.Annotations[annotationEndpoints] = strings.Join(eps, ",")
			}
		}), true
	}
	return nil, false
}

// anys returns items as []any (nil when there are none), each passed to
// fill first unless fill is nil.
func anys[T any](items []T, fill func(T)) []any {
	var out []any
	for _, it := range items {
		if fill != nil {
			fill(it)
		}
		out = append(out, it)
	}
	return out
}

// targetPort resolves a service port's target on a pod: a number, or the
// name of one of the pod's container ports.
func targetPort(sp api.ServicePort, p *api.Pod) string {
	if !sp.TargetPort.IsString {
		if sp.TargetPort.IntVal == 0 {
			return strconv.Itoa(int(sp.Port))
		}
		return strconv.Itoa(int(sp.TargetPort.IntVal))
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort.StrVal {
				return strconv.Itoa(int(cp.ContainerPort))
			}
		}
	}
	return sp.TargetPort.StrVal
}

func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	res := r.PathValue("resource")
	ns := r.PathValue("ns")
	if ns == "" {
		ns = r.URL.Query().Get("namespace")
	}
	items, ok := a.objects(res, ns)
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("the server doesn't have a resource type %q", res))
		return
	}
	if res == "events" {
		kind, name := r.URL.Query().Get("involvedKind"), r.URL.Query().Get("involvedName")
		items = items[:0]
		for _, e := range a.clusterEvents(r, ns, kind, name) {
			items = append(items, e)
		}
	}
	writeList(w, items)
}

// writeList answers a List, encoding one item at a time: the answer is
// never held whole in memory next to the objects it is made of.
func writeList(w http.ResponseWriter, items []any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	_, _ = bw.WriteString(`{"apiVersion":"v1","kind":"List","items":[`)
	enc := json.NewEncoder(bw)
	for i, it := range items {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		if err := enc.Encode(it); err != nil {
			return // the client went away, or a value does not encode: the answer is cut short
		}
	}
	_, _ = bw.WriteString("]}\n")
	_ = bw.Flush()
}

func (a *Agent) findObject(res, ns, name string) (any, bool) {
	items, ok := a.objects(res, ns)
	if !ok {
		return nil, false
	}
	for _, it := range items {
		if o, ok := it.(api.Object); ok && o.Meta().Name == name {
			return it, true
		}
		if p, ok := it.(api.Pod); ok && p.Metadata.Name == name {
			return p, true
		}
		if n, ok := it.(node); ok && n.Metadata.Name == name {
			return n, true
		}
	}
	return nil, false
}

func (a *Agent) handleGet(w http.ResponseWriter, r *http.Request) {
	res, ns, name := r.PathValue("resource"), r.PathValue("ns"), r.PathValue("name")
	if _, ok := resourceKinds[res]; !ok && res != "events" {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("the server doesn't have a resource type %q", res))
		return
	}
	a.writeObject(w, res, ns, name)
}

// writeObject answers one object, or 404.
func (a *Agent) writeObject(w http.ResponseWriter, res, ns, name string) {
	o, ok := a.findObject(res, ns, name)
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("%s %q not found", res, name))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (a *Agent) handleGetNamespace(w http.ResponseWriter, r *http.Request) {
	a.writeObject(w, "namespaces", "", r.PathValue("name"))
}

func (a *Agent) handleGetNode(w http.ResponseWriter, r *http.Request) {
	a.writeObject(w, "nodes", "", r.PathValue("name"))
}

func (a *Agent) handleCreateDeployment(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxObjectBody))
	if err != nil {
		writeError(w, err)
		return
	}
	objs, warns, err := api.Decode(body, "")
	if err != nil {
		writeError(w, err)
		return
	}
	if len(objs) != 1 || objs[0].GetKind() != api.KindDeployment {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "want exactly one Deployment")
		return
	}
	objs[0].Meta().Namespace = r.PathValue("ns")
	res, err := a.store.apply(objs, time.Now(), true)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: res, Warnings: warns})
}

func (a *Agent) handleScale(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Replicas *int32 `json:"replicas"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Replicas == nil || *req.Replicas < 0 {
		writeStatus(w, http.StatusBadRequest, "BadRequest", `body must be {"replicas": N} with N >= 0`)
		return
	}
	key := objectKey(api.KindDeployment, r.PathValue("ns"), r.PathValue("name"))
	r1, err := a.store.scale(key, *req.Replicas)
	if err != nil {
		writeError(w, err)
		return
	}
	if r1.Action == "notfound" {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("deployments.apps %q not found", r.PathValue("name")))
		return
	}
	res := []Result{r1}
	writeJSON(w, http.StatusOK, applyResponse{Results: res})
}

func (a *Agent) handleLog(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path, err := a.pods.LogPath(r.PathValue("ns"), r.PathValue("name"), q.Get("container"), q.Get("previous") == "true")
	if errors.Is(err, runtime.ErrPodNotHere) && a.forwardToPod(w, r, r.PathValue("ns"), r.PathValue("name")) {
		return
	}
	if err != nil {
		writeStatus(w, http.StatusNotFound, "NotFound", err.Error())
		return
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if q.Get("follow") != "true" {
			return
		}
	} else if err != nil {
		writeError(w, err)
		return
	} else {
		defer f.Close()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
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
	fl, _ := w.(http.Flusher)
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if f == nil {
			if f, err = os.Open(path); err != nil {
				f = nil
				continue
			}
			defer f.Close()
		}
		if _, err := io.Copy(w, f); err != nil {
			return
		}
	}
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	const chunk = 64 << 10
	lines := 0
	for off := size; off > 0; {
		start := max(0, off-chunk)
		buf := make([]byte, off-start)
		if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
			return err
		}
		for i := len(buf) - 1; i >= 0; i-- {
			if buf[i] == '\n' && start+int64(i) != size-1 {
				lines++
				if lines == n {
					_, err := f.Seek(start+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
		off = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// progressReader counts bytes read, for the log of long image loads.
type progressReader struct {
	r io.Reader
	n int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	return n, err
}

// node is a peer as `get nodes` shows it, in Kubernetes' Node shape.
type node struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   api.ObjectMeta `json:"metadata"`
	Spec       struct {
		Unschedulable bool `json:"unschedulable"`
	} `json:"spec"`
	Status nodeStatus `json:"status"`
}

type nodeStatus struct {
	Phase     string            `json:"phase"`
	Addresses []nodeAddress     `json:"addresses"`
	Capacity  map[string]string `json:"capacity"`
	NodeInfo  map[string]string `json:"nodeInfo"`
	PodCount  int               `json:"podCount"`
}

type nodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// capacity reads the machine's CPUs and memory.
func capacity() map[string]string {
	c := map[string]string{"cpu": strconv.Itoa(numCPU()), "pods": "110"}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			f := strings.Fields(string(line))
			if len(f) >= 2 && f[0] == "MemTotal:" {
				c["memory"] = f[1] + "Ki"
			}
		}
	}
	return c
}

// handleCordon marks a peer unschedulable or schedulable again. The mark is
// replicated state, so any peer can set it for any other.
func (a *Agent) handleCordon(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Unschedulable *bool `json:"unschedulable"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil || req.Unschedulable == nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", `body must be {"unschedulable": true|false}`)
		return
	}
	name := r.PathValue("name")
	if _, ok := a.findObject("nodes", "", name); !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("nodes %q not found", name))
		return
	}
	v, _ := json.Marshal(*req.Unschedulable)
	fields := map[string]json.RawMessage{"spec.unschedulable": v}
	if len(a.store.rawFields(nodeKey(name))) == 0 {
		fields["apiVersion"] = json.RawMessage(`"v1"`)
		fields["kind"] = json.RawMessage(`"Node"`)
	}
	if err := a.store.writeFields(nodeKey(name), fields); err != nil {
		writeError(w, err)
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": name, "unschedulable": *req.Unschedulable})
}

// handlePortForward turns the request into a raw connection to a service
// port (balanced over its Ready endpoints, through other peers when needed)
// or to a pod's port: `chorus port-forward`.
func (a *Agent) handlePortForward(w http.ResponseWriter, r *http.Request) {
	port, err := strconv.Atoi(r.URL.Query().Get("port"))
	if err != nil || port < 1 || port > 65535 {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "query parameter port must be 1-65535")
		return
	}
	ns, name := r.PathValue("ns"), r.PathValue("name")
	var conn net.Conn
	if strings.Contains(r.URL.Path, "/services/") {
		if _, ok := a.store.get(objectKey(api.KindService, ns, name)); !ok {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("services %q not found", name))
			return
		}
		conn, err = a.proxy.Dial(r.Context(), ns, name, port)
	} else {
		target := a.findClusterPod(ns, name, func(p *api.Pod) bool { return p.Status.PodIP != "" })
		if target == nil {
			writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("pod %q not found or has no IP yet", name))
			return
		}
		conn, err = a.proxy.DialEndpoint(r.Context(), proxy.Endpoint{Node: target.Spec.NodeName, IP: target.Status.PodIP,
			Port: port, Local: target.Spec.NodeName == a.cfg.Name})
	}
	if err != nil {
		writeStatus(w, http.StatusBadGateway, "ServiceUnavailable", fmt.Sprintf("port-forward to %s/%s port %d: %v", ns, name, port, err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		conn.Close()
		writeStatus(w, http.StatusInternalServerError, "InternalError", "connection cannot be taken over")
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		conn.Close()
		return
	}
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: chorus-portforward\r\nConnection: Upgrade\r\n\r\n")
	if err := brw.Flush(); err != nil {
		c.Close()
		conn.Close()
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := conn.Write(b); err != nil {
			c.Close()
			conn.Close()
			return
		}
	}
	proxy.Splice(c, conn)
}

func (a *Agent) deploymentOr404(w http.ResponseWriter, r *http.Request) (*api.Deployment, bool) {
	o, ok := a.store.get(objectKey(api.KindDeployment, r.PathValue("ns"), r.PathValue("name")))
	if !ok {
		writeStatus(w, http.StatusNotFound, "NotFound", fmt.Sprintf("deployments.apps %q not found", r.PathValue("name")))
		return nil, false
	}
	return o.(*api.Deployment), true
}

// handleRevisions answers a deployment's rollout history, oldest first.
func (a *Agent) handleRevisions(w http.ResponseWriter, r *http.Request) {
	d, ok := a.deploymentOr404(w, r)
	if !ok {
		return
	}
	revs, _ := a.store.history(d)
	items := make([]any, len(revs))
	for i := range revs {
		items[i] = revs[i]
	}
	writeJSON(w, http.StatusOK, api.List{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "List"}, Items: items})
}

// handleRollout undoes, restarts, pauses or resumes a deployment, or sets
// its images.
func (a *Agent) handleRollout(w http.ResponseWriter, r *http.Request) {
	var req rolloutRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxObjectBody)).Decode(&req); err != nil {
		writeStatus(w, http.StatusBadRequest, "BadRequest", "body must be a JSON rollout request: "+err.Error())
		return
	}
	key := objectKey(api.KindDeployment, r.PathValue("ns"), r.PathValue("name"))
	res, err := a.store.rollout(key, req, time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Results: []Result{res}})
}
