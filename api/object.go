package api

import "encoding/json"

// Object is a top-level object chorus stores: *Namespace, *Deployment and
// *Service, which manifests may hold, and *Pod, which chorus makes.
type Object interface {
	// GetKind returns the object's kind (KindDeployment, ...), whatever its
	// TypeMeta says.
	GetKind() string
	// Meta returns the object's metadata, for reading and writing.
	Meta() *ObjectMeta
	// SetTypeMeta sets apiVersion and kind to their canonical values.
	SetTypeMeta()
}

// API versions of the kinds chorus understands.
const (
	apiVersionV1           = "v1"
	apiVersionAppsV1       = "apps/v1"
	apiVersionNetworkingV1 = "networking.k8s.io/v1"
)

// GetKind returns KindNamespace.
func (*Namespace) GetKind() string { return KindNamespace }

// Meta returns the namespace's metadata.
func (o *Namespace) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind Namespace.
func (o *Namespace) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindNamespace}
}

// GetKind returns KindDeployment.
func (*Deployment) GetKind() string { return KindDeployment }

// Meta returns the deployment's metadata.
func (o *Deployment) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion apps/v1, kind Deployment.
func (o *Deployment) SetTypeMeta() {
	o.TypeMeta = TypeMeta{APIVersion: apiVersionAppsV1, Kind: KindDeployment}
}

// GetKind returns KindService.
func (*Service) GetKind() string { return KindService }

// Meta returns the service's metadata.
func (o *Service) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind Service.
func (o *Service) SetTypeMeta() { o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindService} }

// GetKind returns KindPod.
func (*Pod) GetKind() string { return KindPod }

// Meta returns the pod's metadata.
func (o *Pod) Meta() *ObjectMeta { return &o.Metadata }

// SetTypeMeta sets apiVersion v1, kind Pod.
func (o *Pod) SetTypeMeta() { o.TypeMeta = TypeMeta{APIVersion: apiVersionV1, Kind: KindPod} }

// Namespaced reports whether objects of kind live in a namespace.
func Namespaced(kind string) bool { return kind != KindNamespace && kind != KindIngressClass }

func namespaced(kind string) bool { return Namespaced(kind) }

// ObjectKey returns "Kind/namespace/name", the identity of o. The namespace
// part is empty for a Namespace, and DefaultNamespace for a namespaced object
// that names none.
func ObjectKey(o Object) string {
	kind, m := o.GetKind(), o.Meta()
	ns := ""
	if namespaced(kind) {
		ns = m.Namespace
		if ns == "" {
			ns = DefaultNamespace
		}
	}
	return kind + "/" + ns + "/" + m.Name
}

// DeepCopy returns a copy of v that shares no memory with it, made by a JSON
// round trip: fields that JSON does not carry (unexported ones, a time's
// monotonic reading) are not copied, and empty maps and slices tagged
// omitempty come back nil. It panics if v cannot be encoded as JSON, which
// does not happen for this package's types.
func DeepCopy[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic("api.DeepCopy: " + err.Error())
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic("api.DeepCopy: " + err.Error())
	}
	return out
}
