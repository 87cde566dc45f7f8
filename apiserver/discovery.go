package apiserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"runtime"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
)

// KubernetesVersion is the Kubernetes API version chorus serves: the
// minor that kubectl v1.32 and client-go expect.
const KubernetesVersion = "v1.32.0"

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, version.Info{Major: "1", Minor: "32",
		GitVersion: KubernetesVersion + "+chorus-" + strings.TrimPrefix(s.opts.Version, "v"),
		GitCommit:  s.opts.Version, GitTreeState: "clean", GoVersion: runtime.Version(), Compiler: runtime.Compiler,
		Platform: runtime.GOOS + "/" + runtime.GOARCH})
}

func (s *Server) groupVersions(group string) []metav1.GroupVersionForDiscovery {
	seen := map[string]bool{}
	var out []metav1.GroupVersionForDiscovery
	for _, r := range s.reg.list {
		if r.Group == group && !seen[r.Version] {
			seen[r.Version] = true
			out = append(out, metav1.GroupVersionForDiscovery{GroupVersion: r.APIVersion(), Version: r.Version})
		}
	}
	if group == "authorization.k8s.io" {
		out = append(out, metav1.GroupVersionForDiscovery{GroupVersion: "authorization.k8s.io/v1", Version: "v1"})
	}
	return out
}

func (s *Server) apiGroup(group string) metav1.APIGroup {
	vs := s.groupVersions(group)
	return metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: group, Versions: vs, PreferredVersion: vs[0]}
}

func (s *Server) groups() []string {
	var out []string
	for _, g := range s.reg.groups {
		if g != "" {
			out = append(out, g)
		}
	}
	return append(out, "authorization.k8s.io")
}

func (s *Server) handleGroupList(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{}, r.Method))
		return
	}
	l := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range s.groups() {
		l.Groups = append(l.Groups, s.apiGroup(g))
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) handleGroup(w http.ResponseWriter, r *http.Request, group string) {
	for _, g := range s.groups() {
		if g == group && r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, s.apiGroup(g))
			return
		}
	}
	writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: group}, ""))
}

// handleResourceList serves /api/v1 and /apis/G/V.
func (s *Server) handleResourceList(w http.ResponseWriter, r *http.Request, group, ver string) {
	if r.Method != http.MethodGet {
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: group}, r.Method))
		return
	}
	gv := schema.GroupVersion{Group: group, Version: ver}
	l := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	if group == "authorization.k8s.io" && ver == "v1" {
		l.APIResources = []metav1.APIResource{{Name: "selfsubjectaccessreviews", SingularName: "selfsubjectaccessreview",
			Kind: "SelfSubjectAccessReview", Verbs: metav1.Verbs{"create"}}}
		writeJSON(w, http.StatusOK, l)
		return
	}
	rs := s.reg.inGroupVersion(group, ver)
	if len(rs) == 0 {
		writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: group}, ver))
		return
	}
	for _, res := range rs {
		l.APIResources = append(l.APIResources, metav1.APIResource{Name: res.Plural, SingularName: res.Singular, Namespaced: res.Namespaced,
			Kind: res.Kind, Verbs: res.verbs(), ShortNames: res.ShortNames, Categories: res.Categories,
			StorageVersionHash: storageHash(res)})
		for _, sub := range res.Subresources {
			ar := metav1.APIResource{Name: res.Plural + "/" + sub, Namespaced: res.Namespaced, Kind: res.Kind}
			switch sub {
			case "status":
				ar.Verbs = metav1.Verbs{"get"}
			case "scale":
				ar.Group, ar.Version, ar.Kind = "autoscaling", "v1", "Scale"
				ar.Verbs = metav1.Verbs{"get", "patch", "update"}
			case "log":
				ar.Kind, ar.Verbs = "Pod", metav1.Verbs{"get"}
			case "leave":
				ar.Verbs = metav1.Verbs{"create"}
			default: // exec, attach, portforward
				ar.Kind, ar.Verbs = "PodExecOptions", metav1.Verbs{"create", "get"}
				if sub == "portforward" {
					ar.Kind = "PodPortForwardOptions"
				}
				if sub == "attach" {
					ar.Kind = "PodAttachOptions"
				}
			}
			l.APIResources = append(l.APIResources, ar)
		}
	}
	writeJSON(w, http.StatusOK, l)
}

func storageHash(r *Resource) string {
	h := sha256.Sum256([]byte(r.APIVersion() + "/" + r.Kind))
	return hex.EncodeToString(h[:])[:11]
}

// The OpenAPI v3 documents describe each served path with the
// x-kubernetes-group-version-kind extension and the fieldValidation
// parameter, which is what kubectl reads to send its field validation to
// the server (instead of validating against a schema itself). Patch
// operations advertise JSON and merge patches, so kubectl computes
// strategic merge patches from its built-in types.

func openAPIPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

func (s *Server) groupVersionList() []schema.GroupVersion {
	seen := map[schema.GroupVersion]bool{}
	var out []schema.GroupVersion
	for _, r := range s.reg.list {
		if gv := r.GroupVersion(); !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	return out
}

func (s *Server) handleOpenAPIRoot(w http.ResponseWriter, r *http.Request) {
	paths := map[string]any{}
	for _, gv := range s.groupVersionList() {
		h := sha256.Sum256(s.openAPIDocs()[gv])
		p := openAPIPath(gv)
		paths[p] = map[string]string{"serverRelativeURL": "/openapi/v3/" + p + "?hash=" + strings.ToUpper(hex.EncodeToString(h[:8]))}
	}
	writeJSON(w, http.StatusOK, map[string]any{"paths": paths})
}

func (s *Server) handleOpenAPIGroupVersion(w http.ResponseWriter, r *http.Request) {
	p := strings.Trim(strings.TrimPrefix(r.URL.Path, "/openapi/v3/"), "/")
	for _, gv := range s.groupVersionList() {
		if openAPIPath(gv) == p {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(s.openAPIDocs()[gv])
			return
		}
	}
	writeError(w, apierrors.NewNotFound(schema.GroupResource{Resource: "openapi/v3"}, p))
}

// buildOpenAPIDocs encodes the document of every served group-version
// (once per server: the types do not change).
func (s *Server) buildOpenAPIDocs() map[schema.GroupVersion][]byte {
	out := map[schema.GroupVersion][]byte{}
	for _, gv := range s.groupVersionList() {
		b, err := json.Marshal(s.openAPIDoc(gv))
		if err != nil {
			s.opts.Log.Error("OpenAPI document", "groupVersion", gv.String(), "err", err)
			continue
		}
		out[gv] = b
	}
	return out
}

func (s *Server) openAPIDoc(gv schema.GroupVersion) map[string]any {
	paths := map[string]any{}
	query := func(name string) map[string]any {
		return map[string]any{"name": name, "in": "query", "schema": map[string]string{"type": "string"}, "uniqueItems": true}
	}
	for _, r := range s.reg.inGroupVersion(gv.Group, gv.Version) {
		gvk := map[string]string{"group": r.Group, "version": r.Version, "kind": r.Kind}
		prefix := "/" + openAPIPath(gv)
		if r.Namespaced {
			prefix += "/namespaces/{namespace}"
		}
		op := func(verb string) map[string]any {
			return map[string]any{"operationId": verb + r.Kind, "x-kubernetes-action": verb, "x-kubernetes-group-version-kind": gvk,
				"responses": map[string]any{"200": map[string]any{"description": "OK"}}}
		}
		item := map[string]any{"get": op("get")}
		coll := map[string]any{"get": op("list")}
		if !r.Live && (r.Writable || r.Updatable) {
			put := op("put")
			put["parameters"] = []any{query("fieldValidation"), query("dryRun"), query("fieldManager")}
			patch := op("patch")
			patch["parameters"] = []any{query("fieldValidation"), query("dryRun"), query("fieldManager"), query("force")}
			patch["requestBody"] = map[string]any{"content": map[string]any{
				"application/json-patch+json": map[string]any{}, "application/merge-patch+json": map[string]any{},
				"application/apply-patch+yaml": map[string]any{}}}
			item["put"], item["patch"] = put, patch
		}
		if r.Writable {
			post := op("post")
			post["parameters"] = []any{query("fieldValidation"), query("dryRun"), query("fieldManager")}
			coll["post"] = post
		}
		if r.Writable || r.Deletable {
			item["delete"] = op("delete")
		}
		paths[prefix+"/"+r.Plural] = coll
		paths[prefix+"/"+r.Plural+"/{name}"] = item
	}
	return map[string]any{"openapi": "3.0.0", "info": map[string]string{"title": "chorus", "version": KubernetesVersion},
		"paths": paths, "components": map[string]any{"schemas": componentsFor(s.reg.inGroupVersion(gv.Group, gv.Version))}}
}
