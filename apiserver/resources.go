package apiserver

import (
	"reflect"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/chorus-sh/chorus/api"
)

// Resource is one served resource type.
type Resource struct {
	Group, Version string
	Kind           string // e.g. Deployment
	Plural         string // e.g. deployments
	Singular       string
	Namespaced     bool
	ShortNames     []string
	Categories     []string
	// Writable resources accept create, update, patch and delete; the
	// others are derived by the peer (nodes, events, endpoints, replica
	// sets) and only read (nodes also accept delete).
	Writable bool
	// Deletable resources accept delete even when not writable.
	Deletable bool
	// Updatable resources accept update and patch even when not writable
	// (nodes: cordon).
	Updatable bool
	// Subresources served besides the object itself (status, scale, log,
	// exec, attach, portforward).
	Subresources []string
	// Live resources are not kept by this peer: each get and list asks
	// the Backend's LiveLister, which gathers them from the cluster at
	// that moment (resource metrics, peers, images). They serve get and
	// list; delete too when Deletable (the Backend is then a LiveDeleter);
	// create too when Writable, through the handler Options.Create gives
	// (an image archive is no JSON document). They are never watched.
	Live bool
	// Type is the k8s.io/api type of the object, used for strict decoding
	// and strategic merge patches.
	Type reflect.Type
	// Convert is set for a resource the backend keeps in another version
	// (its List, Create and Update speak the kept version).
	Convert *Conversion
}

// GroupVersion returns the resource's group and version.
func (r *Resource) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: r.Group, Version: r.Version}
}

// APIVersion returns "v1" or "group/version".
func (r *Resource) APIVersion() string { return r.GroupVersion().String() }

// New returns a new zero value of the resource's type.
func (r *Resource) New() any { return reflect.New(r.Type).Interface() }

// Resources lists what every peer serves. The agent's Backend must answer
// List for each Kind.
func Resources() []*Resource {
	all := []string{"all"}
	return []*Resource{
		{Version: "v1", Kind: "Namespace", Plural: "namespaces", ShortNames: []string{"ns"}, Writable: true, Type: reflect.TypeFor[corev1.Namespace](), Subresources: []string{"status"}},
		{Version: "v1", Kind: "Pod", Plural: "pods", Namespaced: true, ShortNames: []string{"po"}, Categories: all, Writable: true, Type: reflect.TypeFor[corev1.Pod](),
			Subresources: []string{"status", "log", "exec", "attach", "portforward"}},
		{Version: "v1", Kind: "Service", Plural: "services", Namespaced: true, ShortNames: []string{"svc"}, Categories: all, Writable: true, Type: reflect.TypeFor[corev1.Service](), Subresources: []string{"status"}},
		{Version: "v1", Kind: "ConfigMap", Plural: "configmaps", Namespaced: true, ShortNames: []string{"cm"}, Writable: true, Type: reflect.TypeFor[corev1.ConfigMap]()},
		{Version: "v1", Kind: "Secret", Plural: "secrets", Namespaced: true, Writable: true, Type: reflect.TypeFor[corev1.Secret]()},
		{Version: "v1", Kind: "Endpoints", Plural: "endpoints", Namespaced: true, ShortNames: []string{"ep"}, Type: reflect.TypeFor[corev1.Endpoints]()},
		{Version: "v1", Kind: "Node", Plural: "nodes", ShortNames: []string{"no"}, Updatable: true, Type: reflect.TypeFor[corev1.Node](), Subresources: []string{"status"}},
		{Version: "v1", Kind: "Event", Plural: "events", Namespaced: true, ShortNames: []string{"ev"}, Type: reflect.TypeFor[corev1.Event]()},
		{Group: "apps", Version: "v1", Kind: "Deployment", Plural: "deployments", Namespaced: true, ShortNames: []string{"deploy"}, Categories: all, Writable: true,
			Type: reflect.TypeFor[appsv1.Deployment](), Subresources: []string{"status", "scale"}},
		{Group: "apps", Version: "v1", Kind: "DaemonSet", Plural: "daemonsets", Namespaced: true, ShortNames: []string{"ds"}, Categories: all, Writable: true,
			Type: reflect.TypeFor[appsv1.DaemonSet](), Subresources: []string{"status"}},
		{Group: "apps", Version: "v1", Kind: "ReplicaSet", Plural: "replicasets", Namespaced: true, ShortNames: []string{"rs"}, Categories: all,
			Type: reflect.TypeFor[appsv1.ReplicaSet]()},
		{Group: "apps", Version: "v1", Kind: "ControllerRevision", Plural: "controllerrevisions", Namespaced: true,
			Type: reflect.TypeFor[appsv1.ControllerRevision]()},
		{Group: "apps", Version: "v1", Kind: "StatefulSet", Plural: "statefulsets", Namespaced: true, ShortNames: []string{"sts"}, Categories: all, Writable: true,
			Type: reflect.TypeFor[appsv1.StatefulSet](), Subresources: []string{"status", "scale"}},
		{Version: "v1", Kind: "PersistentVolumeClaim", Plural: "persistentvolumeclaims", Namespaced: true, ShortNames: []string{"pvc"}, Writable: true,
			Type: reflect.TypeFor[corev1.PersistentVolumeClaim](), Subresources: []string{"status"}},
		{Version: "v1", Kind: "ServiceAccount", Plural: "serviceaccounts", Namespaced: true, ShortNames: []string{"sa"}, Writable: true,
			Type: reflect.TypeFor[corev1.ServiceAccount]()},
		{Version: "v1", Kind: "PersistentVolume", Plural: "persistentvolumes", ShortNames: []string{"pv"}, Type: reflect.TypeFor[corev1.PersistentVolume]()},
		{Group: "storage.k8s.io", Version: "v1", Kind: "StorageClass", Plural: "storageclasses", ShortNames: []string{"sc"},
			Type: reflect.TypeFor[storagev1.StorageClass]()},
		{Group: "batch", Version: "v1", Kind: "Job", Plural: "jobs", Namespaced: true, Categories: all, Writable: true,
			Type: reflect.TypeFor[batchv1.Job](), Subresources: []string{"status"}},
		{Group: "batch", Version: "v1", Kind: "CronJob", Plural: "cronjobs", Namespaced: true, ShortNames: []string{"cj"}, Categories: all, Writable: true,
			Type: reflect.TypeFor[batchv1.CronJob](), Subresources: []string{"status"}},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress", Plural: "ingresses", Namespaced: true, ShortNames: []string{"ing"}, Writable: true,
			Type: reflect.TypeFor[networkingv1.Ingress](), Subresources: []string{"status"}},
		{Group: "networking.k8s.io", Version: "v1", Kind: "IngressClass", Plural: "ingressclasses", Writable: true,
			Type: reflect.TypeFor[networkingv1.IngressClass]()},
		{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler", Plural: "horizontalpodautoscalers", Namespaced: true, ShortNames: []string{"hpa"},
			Categories: all, Writable: true, Type: reflect.TypeFor[autoscalingv2.HorizontalPodAutoscaler](), Subresources: []string{"status"}},
		{Group: "autoscaling", Version: "v1", Kind: "HorizontalPodAutoscaler", Plural: "horizontalpodautoscalers", Namespaced: true, ShortNames: []string{"hpa"},
			Categories: all, Writable: true, Type: reflect.TypeFor[autoscalingv1.HorizontalPodAutoscaler](), Subresources: []string{"status"}, Convert: hpaV1},
		// The resource metrics API, as metrics-server serves it (kubectl top).
		{Group: "metrics.k8s.io", Version: "v1beta1", Kind: "PodMetrics", Plural: "pods", Namespaced: true, Live: true,
			Type: reflect.TypeFor[metricsv1beta1.PodMetrics]()},
		{Group: "metrics.k8s.io", Version: "v1beta1", Kind: "NodeMetrics", Plural: "nodes", Live: true,
			Type: reflect.TypeFor[metricsv1beta1.NodeMetrics]()},
		// chorus' own group: what Kubernetes has no kind for.
		{Group: api.GroupChorus, Version: "v1", Kind: api.KindImage, Plural: "images", ShortNames: []string{"img"}, Live: true, Writable: true, Deletable: true,
			Type: reflect.TypeFor[api.Image]()},
		{Group: api.GroupChorus, Version: "v1", Kind: api.KindPeer, Plural: "peers", Live: true, Subresources: []string{"leave"},
			Type: reflect.TypeFor[api.Peer]()},
		{Group: api.GroupChorus, Version: "v1", Kind: api.KindPeerUsage, Plural: "peerusages", Live: true,
			Type: reflect.TypeFor[api.PeerUsage]()},
		{Group: api.GroupChorus, Version: "v1", Kind: api.KindSecretRotation, Plural: "secretrotations", Live: true, Writable: true,
			Type: reflect.TypeFor[api.SecretRotation]()},
	}
}

// registry indexes the served resources.
type registry struct {
	list     []*Resource
	byPlural map[schema.GroupVersionResource]*Resource
	byKind   map[schema.GroupVersionKind]*Resource
	groups   []string // served groups, "" first
}

func newRegistry(rs []*Resource) *registry {
	g := &registry{list: rs, byPlural: map[schema.GroupVersionResource]*Resource{}, byKind: map[schema.GroupVersionKind]*Resource{}}
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Singular == "" {
			r.Singular = lower(r.Kind)
		}
		g.byPlural[schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Plural}] = r
		g.byKind[schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}] = r
		if !seen[r.Group] {
			seen[r.Group] = true
			g.groups = append(g.groups, r.Group)
		}
	}
	sort.Strings(g.groups)
	return g
}

func (g *registry) resource(group, version, plural string) (*Resource, bool) {
	r, ok := g.byPlural[schema.GroupVersionResource{Group: group, Version: version, Resource: plural}]
	return r, ok
}

// inGroupVersion returns the resources of one group-version.
func (g *registry) inGroupVersion(group, version string) []*Resource {
	var out []*Resource
	for _, r := range g.list {
		if r.Group == group && r.Version == version {
			out = append(out, r)
		}
	}
	return out
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// verbs returns the discovery verbs of r.
func (r *Resource) verbs() metav1.Verbs {
	if r.Live {
		v := metav1.Verbs{"get", "list"}
		if r.Writable {
			v = append(v, "create")
		}
		if r.Deletable {
			v = append(v, "delete", "deletecollection")
		}
		return v
	}
	v := metav1.Verbs{"get", "list", "watch"}
	if r.Writable {
		v = append(v, "create", "update", "patch", "delete", "deletecollection")
	} else if r.Deletable {
		v = append(v, "delete", "deletecollection")
	} else if r.Updatable {
		v = append(v, "update", "patch")
	}
	return v
}
