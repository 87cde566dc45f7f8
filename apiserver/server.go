package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Backend is the peer's replica as the API needs it. Documents are JSON
// objects in their Kubernetes shapes. Errors that are
// *apierrors.StatusError reach the client as they are; others are 500.
type Backend interface {
	// List returns every object of kind, status included.
	List(ctx context.Context, kind string) ([][]byte, error)
	// Create stores a new object (AlreadyExists if it exists) and returns
	// warnings about what it does not implement.
	Create(ctx context.Context, kind string, doc []byte, dryRun bool) (warnings []string, err error)
	// Update changes the object from base (the object as this server
	// served it, which the client changed) to doc, writing only the fields
	// that differ between the two, so that a concurrent change of other
	// fields, through this peer or another, survives. When no field
	// differs it writes nothing and may return ErrUnchanged.
	Update(ctx context.Context, kind, namespace, name string, base, doc []byte, dryRun bool) (warnings []string, err error)
	// Delete removes the object (NotFound if it does not exist), with
	// opts' propagationPolicy (nil: Background) for what it owns.
	Delete(ctx context.Context, kind, namespace, name string, opts *metav1.DeleteOptions) error
	// Changed returns a channel closed at the next change of what List
	// returns (nil: changes are found by polling every second).
	Changed() <-chan struct{}
}

// LiveLister is implemented by backends that gather some kinds from the
// whole cluster when a client lists them (events, which each peer keeps
// for itself): a list answers what ListLive returns when ok; watches still
// follow this peer's own changes.
type LiveLister interface {
	ListLive(r *http.Request, kind, namespace string) (docs [][]byte, ok bool)
}

// LiveDeleter is implemented by backends that delete objects of live
// resources (Resource.Live with Deletable): images, removed from this
// peer. DeleteLive answers the object deleted; DeleteLiveCollection
// deletes what it chooses of the collection (the request's parameters
// say what) and answers the objects deleted.
type LiveDeleter interface {
	DeleteLive(r *http.Request, kind, namespace, name string) (doc []byte, err error)
	DeleteLiveCollection(r *http.Request, kind, namespace string) (docs [][]byte, err error)
}

// ErrUnchanged is what a Backend's Update may return when the update
// changed nothing and nothing was written. For a backend that is a
// CatchUpper the server then catches up and looks again before it answers:
// the object may have been deleted through another peer, a delete this
// replica has not received yet and that would otherwise win over the
// update just acknowledged. It answers NotFound if so; a server-side apply
// then creates the object from the applied configuration.
var ErrUnchanged = errors.New("apiserver: the update changed nothing")

// CatchUpper is implemented by backends whose replica may lag behind other
// peers': before a read of one object (get) or a write (update, patch,
// delete, scale) answers NotFound, the server calls CatchUp, which returns
// once the backend holds what its peers hold (or gave up), and looks
// again. An object created on another peer a moment ago can then be read,
// changed or deleted through this one.
type CatchUpper interface {
	CatchUp(ctx context.Context)
}

// Options configure a Server.
type Options struct {
	Peer    string // this peer's name: part of every resource version
	Version string // chorus version, in /version
	Log     *slog.Logger
	// Subresources serves subresources the API server does not handle
	// itself, keyed "pods/log", "pods/exec", "pods/attach",
	// "pods/portforward". The request's path values "namespace" and
	// "name" are set.
	Subresources map[string]http.Handler
	// Create serves the creation of objects of live resources, keyed by
	// group and resource ("images.chorus.sh"): POST on the collection,
	// whatever the body (an image archive). The path value "namespace"
	// is set.
	Create map[string]http.Handler
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Server serves the Kubernetes API.
type Server struct {
	// openAPIDocs returns the OpenAPI v3 documents, built at first use.
	openAPIDocs func() map[schema.GroupVersion][]byte
	proto       *protobufDecoder
	opts        Options
	reg         *registry
	cache       *cache
	backend     Backend
	fields      *fieldManagers
}

// New returns a Server over b. Run must be running for it to see changes.
func New(b Backend, opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	reg := newRegistry(Resources())
	pd, err := newProtobufDecoder()
	if err != nil {
		return nil, err
	}
	srv := &Server{proto: pd, opts: opts, reg: reg, backend: b, cache: newCache(b, reg, opts.Peer, opts.Now(), opts.Log),
		fields: newFieldManagers(reg)}
	srv.openAPIDocs = sync.OnceValue(srv.buildOpenAPIDocs)
	return srv, nil
}

// Run keeps the server's view in step with the backend until ctx ends.
func (s *Server) Run(ctx context.Context) { s.cache.run(ctx) }

// Register adds the API's routes to mux: /version, /api/, /apis/, /openapi/.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /version", s.handleVersion)
	mux.HandleFunc("GET /version/", s.handleVersion)
	mux.HandleFunc("/api", s.handleAPI)
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/apis", s.handleAPIs)
	mux.HandleFunc("/apis/", s.handleAPIs)
	mux.HandleFunc("GET /openapi/v3", s.handleOpenAPIRoot)
	mux.HandleFunc("GET /openapi/v3/", s.handleOpenAPIGroupVersion)
	mux.HandleFunc("GET /openapi/v2", s.handleOpenAPIV2)
}

// handleAPI serves /api, /api/v1 and the core group's resources.
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	segs := splitPath(strings.TrimPrefix(r.URL.Path, "/api"))
	switch {
	case len(segs) == 0:
		if r.Method != http.MethodGet {
			writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{}, r.Method))
			return
		}
		writeJSON(w, http.StatusOK, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
	case segs[0] != "v1":
		writeError(w, apierrors.NewNotFound(schema.GroupResource{}, r.URL.Path))
	case len(segs) == 1:
		s.handleResourceList(w, r, "", "v1")
	default:
		s.serveResource(w, r, "", "v1", segs[1:])
	}
}

// handleAPIs serves /apis, /apis/G, /apis/G/V and the resources of groups.
func (s *Server) handleAPIs(w http.ResponseWriter, r *http.Request) {
	segs := splitPath(strings.TrimPrefix(r.URL.Path, "/apis"))
	switch len(segs) {
	case 0:
		s.handleGroupList(w, r)
	case 1:
		s.handleGroup(w, r, segs[0])
	case 2:
		s.handleResourceList(w, r, segs[0], segs[1])
	default:
		if segs[0] == "authorization.k8s.io" && segs[1] == "v1" && len(segs) == 3 && segs[2] == "selfsubjectaccessreviews" && r.Method == http.MethodPost {
			s.handleAccessReview(w, r)
			return
		}
		s.serveResource(w, r, segs[0], segs[1], segs[2:])
	}
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// serveResource routes a resource path below /api/v1 or /apis/G/V.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, group, version string, segs []string) {
	ns := ""
	if segs[0] == "namespaces" && len(segs) >= 3 {
		if res, ok := s.reg.resource(group, version, segs[2]); ok && res.Namespaced {
			ns, segs = segs[1], segs[2:]
		}
	}
	res, ok := s.reg.resource(group, version, segs[0])
	if !ok {
		writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: group, Resource: segs[0]}, ""))
		return
	}
	if len(segs) > 3 {
		writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: group, Resource: res.Plural}, strings.Join(segs[1:], "/")))
		return
	}
	if res.Namespaced && ns == "" && len(segs) > 1 {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("%s are namespaced: use /namespaces/NAMESPACE/%s/NAME", res.Plural, res.Plural)))
		return
	}
	ctx := r.Context()
	switch {
	case len(segs) == 1:
		switch r.Method {
		case http.MethodGet:
			s.list(w, r, res, ns)
		case http.MethodPost:
			s.create(ctx, w, r, res, ns)
		case http.MethodDelete:
			s.deleteCollection(ctx, w, r, res, ns)
		default:
			writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: group, Resource: res.Plural}, r.Method))
		}
	case len(segs) == 2:
		name := segs[1]
		switch r.Method {
		case http.MethodGet:
			s.get(w, r, res, ns, name)
		case http.MethodPut:
			s.update(ctx, w, r, res, ns, name)
		case http.MethodPatch:
			s.patch(ctx, w, r, res, ns, name)
		case http.MethodDelete:
			s.delete(ctx, w, r, res, ns, name)
		default:
			writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: group, Resource: res.Plural}, r.Method))
		}
	default:
		s.subresource(w, r, res, ns, segs[1], segs[2])
	}
}

// subresource serves status and scale, and hands the others (log, exec,
// attach, portforward) to the handlers given in Options.
func (s *Server) subresource(w http.ResponseWriter, r *http.Request, res *Resource, ns, name, sub string) {
	served := false
	for _, x := range res.Subresources {
		served = served || x == sub
	}
	if !served {
		writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: res.Group, Resource: res.Plural + "/" + sub}, name))
		return
	}
	switch sub {
	case "status":
		if r.Method != http.MethodGet {
			writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: res.Group, Resource: res.Plural + "/status"}, r.Method))
			return
		}
		s.get(w, r, res, ns, name)
	case "scale":
		s.scale(r.Context(), w, r, res, ns, name)
	default:
		h := s.opts.Subresources[res.Plural+"/"+sub]
		if h == nil {
			writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: res.Group, Resource: res.Plural + "/" + sub}, name))
			return
		}
		if res.Live {
			if _, ok := s.getLive(r, res, ns, name); !ok {
				writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: res.Group, Resource: res.Plural}, name))
				return
			}
		} else if _, ok := s.cache.get(res, ns, name); !ok {
			s.cache.sync(r.Context())
			if _, ok := s.cache.get(res, ns, name); !ok {
				writeError(w, apierrors.NewNotFound(schema.GroupResource{Group: res.Group, Resource: res.Plural}, name))
				return
			}
		}
		r.SetPathValue("namespace", ns)
		r.SetPathValue("name", name)
		h.ServeHTTP(w, r)
	}
}

// handleAccessReview answers every SelfSubjectAccessReview with allowed:
// whoever passed authentication is the cluster's administrator.
func (s *Server) handleAccessReview(w http.ResponseWriter, r *http.Request) {
	// JSON, YAML or protobuf (k9s sends protobuf).
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var review map[string]any
	if err := json.Unmarshal(body, &review); err != nil {
		writeError(w, apierrors.NewBadRequest("SelfSubjectAccessReview: "+err.Error()))
		return
	}
	review["status"] = map[string]any{"allowed": true, "reason": "chorus: every authenticated client is an administrator"}
	writeJSON(w, http.StatusCreated, review)
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err as a Kubernetes Status.
func writeError(w http.ResponseWriter, err error) {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		st = apierrors.NewInternalError(err)
	}
	status := st.Status()
	status.Kind, status.APIVersion = "Status", "v1"
	status.Status = metav1.StatusFailure
	code := int(status.Code)
	if code == 0 {
		code = http.StatusInternalServerError
	}
	writeJSON(w, code, status)
}

// warn adds Kubernetes warning headers (kubectl prints "Warning: ...").
func warn(w http.ResponseWriter, warnings []string) {
	for _, m := range warnings {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", m))
	}
}
