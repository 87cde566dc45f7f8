package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Field ownership (metadata.managedFields), as kube-apiserver keeps it:
// every create, update and patch records which fields its manager set, and
// a server-side apply (PATCH application/apply-patch+yaml) is merged by
// k8s.io/apimachinery's field manager (structured-merge-diff) over the
// object as this peer serves it: fields the applier no longer lists are
// removed if it alone owned them, and a field another manager set to
// another value is a 409 conflict unless force=true. The schemas it merges
// by are the OpenAPI schemas this server serves (lists keyed by their
// patch merge keys). managedFields is a field of the object like any other:
// two peers recording it at once keep the last writer's.

// fieldManagers builds one field manager per writable resource, at first
// use (the type converter parses every schema).
type fieldManagers struct {
	reg *registry

	once sync.Once
	tc   managedfields.TypeConverter
	err  error

	mu    sync.Mutex
	byRes map[*Resource]*managedfields.FieldManager
}

func newFieldManagers(reg *registry) *fieldManagers {
	return &fieldManagers{reg: reg, byRes: map[*Resource]*managedfields.FieldManager{}}
}

// typeConverter parses the served schemas into structured-merge-diff types.
func (f *fieldManagers) typeConverter() (managedfields.TypeConverter, error) {
	f.once.Do(func() {
		defs := componentsFor(f.reg.list)
		models := make(map[string]*spec.Schema, len(defs))
		for name, def := range defs {
			doc, err := json.Marshal(def)
			if err != nil {
				f.err = err
				return
			}
			var s spec.Schema
			if err := json.Unmarshal(doc, &s); err != nil {
				f.err = fmt.Errorf("schema %s: %w", name, err)
				return
			}
			models[name] = &s
		}
		f.tc, f.err = managedfields.NewTypeConverter(models, false)
	})
	return f.tc, f.err
}

// forResource returns the field manager of res.
func (f *fieldManagers) forResource(res *Resource) (*managedfields.FieldManager, error) {
	tc, err := f.typeConverter()
	if err != nil {
		return nil, fmt.Errorf("field manager: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if fm, ok := f.byRes[res]; ok {
		return fm, nil
	}
	gvk := schema.GroupVersionKind{Group: res.Group, Version: res.Version, Kind: res.Kind}
	gv := gvk.GroupVersion()
	// Status is the server's: a write of the main resource owns none of it.
	reset := map[fieldpath.APIVersion]fieldpath.Filter{
		fieldpath.APIVersion(gv.String()): fieldpath.NewExcludeSetFilter(fieldpath.NewSet(fieldpath.MakePathOrDie("status"))),
	}
	fm, err := managedfields.NewDefaultFieldManager(tc, sameVersion{}, noDefaults{}, unstructuredCreater{}, gvk, gv, "", reset)
	if err != nil {
		return nil, err
	}
	f.byRes[res] = fm
	return fm, nil
}

// manager is the field manager a request names (fieldManager), or the
// program its User-Agent names, as kube-apiserver defaults it.
func manager(r *http.Request) string {
	if m := r.URL.Query().Get("fieldManager"); m != "" {
		return m
	}
	ua, _, _ := strings.Cut(r.UserAgent(), "/")
	if ua == "" {
		return "unknown"
	}
	return ua
}

// trackUpdate sets obj's managedFields to record the fields the request's
// manager changed from live (nil for a create). The field manager reads
// both as Kubernetes' typed objects would hold them (what the type does
// not have dropped, empty structs written), as kube-apiserver's does; obj
// itself is stored as it is. An object the field manager cannot read
// keeps the managedFields it had (ownership is bookkeeping; the write was
// validated already).
func (s *Server) trackUpdate(r *http.Request, res *Resource, live, obj map[string]any) map[string]any {
	fm, err := s.fields.forResource(res)
	if err != nil {
		s.opts.Log.Warn("managed fields not recorded", "resource", res.Plural, "err", err)
		return obj
	}
	newObj, err := typedCopy(res, obj)
	if err != nil {
		return obj
	}
	liveObj := &unstructured.Unstructured{Object: map[string]any{}}
	liveObj.SetGroupVersionKind(newObj.GroupVersionKind())
	if live != nil {
		if liveObj, err = typedCopy(res, live); err != nil {
			return obj
		}
	}
	out, ok := fm.UpdateNoErrors(liveObj, newObj, manager(r)).(*unstructured.Unstructured)
	if !ok {
		return obj
	}
	mf, found, _ := unstructured.NestedFieldNoCopy(out.Object, "metadata", "managedFields")
	obj = shallowCopy(obj)
	meta, _ := obj["metadata"].(map[string]any)
	meta = maps.Clone(meta)
	if meta == nil {
		meta = map[string]any{}
	}
	if found {
		meta["managedFields"] = mf
	} else {
		delete(meta, "managedFields")
	}
	obj["metadata"] = meta
	return obj
}

// typedCopy returns obj as an object of res's Go type would encode it.
func typedCopy(res *Resource, obj map[string]any) (*unstructured.Unstructured, error) {
	doc, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	typed := res.New()
	if err := json.Unmarshal(doc, typed); err != nil {
		return nil, err
	}
	if doc, err = json.Marshal(typed); err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(doc); err != nil {
		return nil, err
	}
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: res.Group, Version: res.Version, Kind: res.Kind})
	return u, nil
}

// serverSideApply merges applied over live (nil when the object does not
// exist) as the request's manager, and returns the object to store.
func (s *Server) serverSideApply(r *http.Request, res *Resource, live, applied map[string]any) (map[string]any, error) {
	m := r.URL.Query().Get("fieldManager")
	if m == "" {
		return nil, apierrors.NewBadRequest("PATCH of type apply requires a fieldManager (kubectl apply --server-side sends one)")
	}
	fm, err := s.fields.forResource(res)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	force := r.URL.Query().Get("force") == "true"
	liveObj := &unstructured.Unstructured{Object: map[string]any{}}
	liveObj.SetGroupVersionKind(schema.GroupVersionKind{Group: res.Group, Version: res.Version, Kind: res.Kind})
	if live != nil {
		liveObj = &unstructured.Unstructured{Object: deepCopy(live)}
	}
	out, err := fm.Apply(liveObj, &unstructured.Unstructured{Object: deepCopy(applied)}, m, force)
	if err != nil {
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			return nil, err
		}
		return nil, apierrors.NewBadRequest(fmt.Sprintf("server-side apply: %v", err))
	}
	u, ok := out.(*unstructured.Unstructured)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("server-side apply gave a %T", out))
	}
	return u.Object, nil
}

// sameVersion converts nothing: each resource is served in the version it
// is kept in. A managed fields entry of another version (an HPA written
// through autoscaling/v1, applied through v2) cannot be converted and is
// dropped by the field manager, as for a version no longer served.
type sameVersion struct{}

func (sameVersion) Convert(in, out, _ any) error {
	return fmt.Errorf("field manager: no conversion from %T to %T", in, out)
}

func (sameVersion) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	gvk := in.GetObjectKind().GroupVersionKind()
	if target, ok := gv.KindForGroupVersionKinds([]schema.GroupVersionKind{gvk}); ok && target == gvk {
		return in, nil
	}
	return nil, runtime.NewNotRegisteredErrForKind("chorus", gvk)
}

func (sameVersion) ConvertFieldLabel(_ schema.GroupVersionKind, label, value string) (string, string, error) {
	return label, value, nil
}

// noDefaults: the backend defaults what it stores.
type noDefaults struct{}

func (noDefaults) Default(runtime.Object) {}

// unstructuredCreater makes the empty objects the field manager asks for.
type unstructuredCreater struct{}

func (unstructuredCreater) New(gvk schema.GroupVersionKind) (runtime.Object, error) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetGroupVersionKind(gvk)
	return u, nil
}
