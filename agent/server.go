package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/controller"
	"github.com/chorus-sh/chorus/state"
)

// Limits on request bodies.
const (
	maxManifestBody = api.MaxManifestBytes
	maxObjectBody   = 1 << 20
)

// routes is the API with its checks but without the server's limits (see
// newAPIServer).
func (a *Agent) routes() http.Handler {
	return a.recoverer(a.checkedRoutes())
}

// checkedRoutes is the API behind its checks (the token, same-origin
// requests) with the requests other peers passed on marked (forwarded).
func (a *Agent) checkedRoutes() http.Handler {
	return a.withToken(a.checkSameOrigin(markForwarded(a.afterCatchUp(a.routesMux()))))
}

// afterCatchUp holds every request but the health check and the metrics
// until the peer has caught up with the others after it started (see
// catchUpAtStart), so that neither a read nor a write acts on what the
// peer held before it went down.
func (a *Agent) afterCatchUp(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.caughtUp != nil && r.URL.Path != "/healthz" && r.URL.Path != "/metrics" {
			select {
			case <-a.caughtUp:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// routesMux is the whole API: the Kubernetes API (chorus' group
// chorus.sh/v1 included), the health check, the metrics and the dashboard.
func (a *Agent) routesMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
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

// writeStatus answers a Kubernetes Status of code, reason and message.
func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	writeJSON(w, code, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError answers err as a Kubernetes Status (see kubeError).
func writeError(w http.ResponseWriter, err error) {
	var tl *http.MaxBytesError
	if errors.As(err, &tl) {
		err = apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("request body larger than %d bytes", tl.Limit))
	}
	var st apierrors.APIStatus
	if !errors.As(kubeError(err), &st) {
		writeStatus(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	s := st.Status()
	s.Kind, s.APIVersion, s.Status = "Status", "v1", metav1.StatusFailure
	writeJSON(w, int(s.Code), s)
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
			for _, other := range a.store.List(api.KindService, "") {
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
		out := anys(a.store.List(api.KindNamespace, ""), func(o api.Object) {
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
		return anys(a.store.List(api.KindDeployment, ns), func(o api.Object) {
			d := o.(*api.Deployment)
			var mine []api.Pod
			for _, p := range pods {
				if p.Metadata.Namespace == d.Metadata.Namespace && p.Metadata.Labels[api.LabelDeployment] == d.Metadata.Name {
					mine = append(mine, p)
				}
			}
			d.Status = deploymentStatus(d, mine)
			if _, rev := a.store.History(d); rev > 0 {
				d.Metadata.Annotations[api.AnnotationRevision] = strconv.FormatInt(rev, 10)
			}
		}), true
	case "daemonsets":
		pods := a.clusterPods()
		return anys(a.store.List(api.KindDaemonSet, ns), func(o api.Object) {
			d := o.(*api.DaemonSet)
			d.Status = a.daemonSetStatus(d, pods)
		}), true
	case "statefulsets":
		listed := a.listedPods()
		return anys(a.store.List(api.KindStatefulSet, ns), func(o api.Object) {
			s := o.(*api.StatefulSet)
			var pods []api.Pod
			for _, p := range listed {
				if p.Metadata.Namespace == s.Metadata.Namespace && state.OwnedBy(&p.Metadata, api.KindStatefulSet, s.Metadata.UID) {
					pods = append(pods, p)
				}
			}
			s.Status = controller.StatefulSetStatus(s, pods)
		}), true
	case "serviceaccounts":
		// Every namespace has "default"; stored ones are listed as they are.
		have := map[string]bool{}
		out := anys(a.store.List(api.KindServiceAccount, ns), func(o api.Object) {
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
		return anys(a.store.List(api.KindPersistentVolumeClaim, ns), func(o api.Object) {
			claimStatus(o.(*api.PersistentVolumeClaim))
		}), true
	case "jobs":
		listed := a.listedPods()
		return anys(a.store.List(api.KindJob, ns), func(o api.Object) {
			j := o.(*api.Job)
			j.Status = controller.JobStatus(j, jobProgressOf(a.store, j), controller.JobPodsOf(j, listed))
		}), true
	case "cronjobs":
		jobs := a.store.List(api.KindJob, ns)
		progress := map[string]controller.JobProgress{}
		for _, o := range jobs {
			progress[api.ObjectKey(o)] = jobProgressOf(a.store, o.(*api.Job))
		}
		return anys(a.store.List(api.KindCronJob, ns), func(o api.Object) {
			c := o.(*api.CronJob)
			runs, byName := cronRuns(c, jobs, progress)
			prog := controller.ReadCronProgress(a.store.RawFields(state.CronProgressKey(c.Metadata.Namespace, c.Metadata.Name)), c.Metadata.UID)
			c.Status = controller.CronJobStatus(prog, runs, byName)
		}), true
	case "configmaps":
		return anys(a.store.List(api.KindConfigMap, ns), nil), true
	case "secrets":
		return anys(a.store.List(api.KindSecret, ns), nil), true
	case "horizontalpodautoscalers":
		return anys(a.store.List(api.KindHorizontalPodAutoscaler, ns), func(o api.Object) {
			h := o.(*api.HorizontalPodAutoscaler)
			if p := readHPAProgress(a.store.RawFields(state.HPAProgressKey(h.Metadata.Namespace, h.Metadata.Name)), h.Metadata.UID); p.Status != nil {
				h.Status = *p.Status
			}
		}), true
	case "ingresses":
		return anys(a.store.List(api.KindIngress, ns), func(o api.Object) {
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
		list := a.store.List(api.KindService, ns)
		ips := a.serviceIPs(asServices(list))
		return anys(list, func(o api.Object) {
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
				s.Metadata.Annotations[state.AnnotationEndpoints] = strings.Join(eps, ",")
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
		Unschedulable bool   `json:"unschedulable"`
		PodCIDR       string `json:"podCIDR,omitempty"` // the peer's pod subnet, as claimed
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
