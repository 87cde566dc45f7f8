package apiserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/watch"
	sjson "sigs.k8s.io/json"

	"github.com/chorus-sh/chorus/api"
)

// Limits on what a request may carry.
const (
	maxBody       = 3 << 20 // an object, as kube-apiserver's default
	maxPatchOps   = 10000   // operations in a JSON patch
	maxWatchTime  = 30 * time.Minute
	bookmarkEvery = 30 * time.Second
)

func gr(res *Resource) schema.GroupResource {
	return schema.GroupResource{Group: res.Group, Resource: res.Plural}
}

// selectors parses labelSelector and fieldSelector.
func selectors(r *http.Request) (labels.Selector, fields.Selector, error) {
	q := r.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("labelSelector: " + err.Error())
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("fieldSelector: " + err.Error())
	}
	return ls, fs, nil
}

// fieldValue reads a dotted field path ("spec.nodeName") of obj as text.
func fieldValue(obj map[string]any, path string) string {
	var cur any = obj
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func matches(obj map[string]any, ls labels.Selector, fs fields.Selector) bool {
	if !ls.Empty() {
		m, _ := obj["metadata"].(map[string]any)
		lm, _ := m["labels"].(map[string]any)
		set := labels.Set{}
		for k, v := range lm {
			set[k], _ = v.(string)
		}
		if !ls.Matches(set) {
			return false
		}
	}
	for _, req := range fs.Requirements() {
		v := fieldValue(obj, req.Field)
		switch req.Operator {
		case "=", "==":
			if v != req.Value {
				return false
			}
		case "!=":
			if v == req.Value {
				return false
			}
		}
	}
	return true
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, res *Resource, ns string) {
	ls, fs, err := selectors(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		if res.Live {
			writeError(w, apierrors.NewMethodNotSupported(gr(res), "watch"))
			return
		}
		s.watch(w, r, res, ns, ls, fs)
		return
	}
	page, err := parsePage(r.URL.Query(), s.cache.ours)
	if err != nil {
		writeError(w, err)
		return
	}
	var objs []map[string]any
	var rv uint64
	if res.Live {
		rv = s.cache.current()
	} else {
		objs, rv = s.cache.list(res, ns)
	}
	if live, ok := s.listLive(r, res, ns); ok {
		objs = live
	}
	var items []map[string]any
	for _, o := range objs {
		if matches(o, ls, fs) {
			items = append(items, o)
		}
	}
	if page.limit > 0 || page.after != "" {
		sortItems(items)
	}
	items, meta := paginate(items, page, rv)
	if items == nil {
		items = []map[string]any{}
	}
	if t, ok := tableRequested(r); ok {
		tab := s.table(res, items, t, "", true)
		tab["metadata"] = meta
		writeJSON(w, http.StatusOK, tab)
		return
	}
	metaDoc, err := json.Marshal(meta)
	if err != nil {
		writeError(w, err)
		return
	}
	// Encoded one item at a time: the answer is never held whole.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, `{"kind":%q,"apiVersion":%q,"metadata":%s,"items":[`, res.Kind+"List", res.APIVersion(), metaDoc)
	enc := json.NewEncoder(w)
	for i, it := range items {
		if i > 0 {
			if _, err := io.WriteString(w, ","); err != nil {
				return
			}
		}
		if err := enc.Encode(it); err != nil {
			return
		}
	}
	_, _ = io.WriteString(w, "]}\n")
}

// listLive returns the objects of res the backend gathers live (see
// LiveLister), in namespace ns ("" for all).
func (s *Server) listLive(r *http.Request, res *Resource, ns string) ([]map[string]any, bool) {
	ll, ok := s.backend.(LiveLister)
	if !ok {
		return nil, false
	}
	docs, ok := ll.ListLive(r, res.Kind, ns)
	if !ok {
		return nil, false
	}
	objs := make([]map[string]any, 0, len(docs))
	for _, d := range docs {
		if o, ok := liveDoc(res, d); ok {
			objs = append(objs, o)
		}
	}
	return objs, true
}

// liveDoc decodes a document of a live resource, its apiVersion and kind
// set.
func liveDoc(res *Resource, d []byte) (map[string]any, bool) {
	var o map[string]any
	if json.Unmarshal(d, &o) != nil || o == nil {
		return nil, false
	}
	o["apiVersion"], o["kind"] = res.APIVersion(), res.Kind
	return o, true
}

// deleteLive deletes one object of a live resource through the backend's
// LiveDeleter, and answers the object deleted.
func (s *Server) deleteLive(w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	ld, ok := s.backend.(LiveDeleter)
	if !ok {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "delete"))
		return
	}
	doc, err := ld.DeleteLive(r, res.Kind, ns, name)
	if err != nil {
		writeError(w, err)
		return
	}
	o, ok := liveDoc(res, doc)
	if !ok {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("the backend answered no %s", res.Kind)))
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// deleteLiveCollection deletes what the backend's LiveDeleter chooses of
// a live resource, and answers the list of the objects deleted.
func (s *Server) deleteLiveCollection(w http.ResponseWriter, r *http.Request, res *Resource, ns string) {
	ld, ok := s.backend.(LiveDeleter)
	if !ok {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "deletecollection"))
		return
	}
	docs, err := ld.DeleteLiveCollection(r, res.Kind, ns)
	if err != nil {
		writeError(w, err)
		return
	}
	items := []map[string]any{}
	for _, d := range docs {
		if o, ok := liveDoc(res, d); ok {
			items = append(items, o)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": res.Kind + "List", "apiVersion": res.APIVersion(),
		"metadata": map[string]any{"resourceVersion": strconv.FormatUint(s.cache.current(), 10)}, "items": items})
}

// getLive finds ns/name among the live objects of res.
func (s *Server) getLive(r *http.Request, res *Resource, ns, name string) (map[string]any, bool) {
	objs, _ := s.listLive(r, res, ns)
	for _, o := range objs {
		if metaString(o, "name") == name && metaString(o, "namespace") == ns {
			return o, true
		}
	}
	return nil, false
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	var obj map[string]any
	var ok bool
	if res.Live {
		obj, ok = s.getLive(r, res, ns, name)
	} else {
		// As a write does, a read that finds nothing asks the peers
		// first: the object may have been written through another peer a
		// moment ago (kubectl patch, edit, label... read the object
		// before they write it).
		obj, ok = s.target(r.Context(), res, ns, name)
	}
	if !ok {
		writeError(w, apierrors.NewNotFound(gr(res), name))
		return
	}
	if t, ok := tableRequested(r); ok {
		writeJSON(w, http.StatusOK, s.table(res, []map[string]any{obj}, t, metaString(obj, "resourceVersion"), true))
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// watch streams the changes of res as Kubernetes does: one JSON event per
// line ({"type":"ADDED","object":{...}}), bookmarks when asked, an ERROR
// event with a 410 Status when the version asked cannot be served.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, res *Resource, ns string, ls labels.Selector, fs fields.Selector) {
	q := r.URL.Query()
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("streaming unsupported")))
		return
	}
	timeout := maxWatchTime
	if t, err := strconv.Atoi(q.Get("timeoutSeconds")); err == nil && t > 0 && time.Duration(t)*time.Second < timeout {
		timeout = time.Duration(t) * time.Second
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	initial := q.Get("sendInitialEvents") == "true"
	tbl, asTable := tableRequested(r)
	var from uint64
	resumed := false // from a client's resourceVersion: matched starts empty
	rvParam := q.Get("resourceVersion")
	if rvParam != "" && rvParam != "0" && !initial {
		v, err := strconv.ParseUint(rvParam, 10, 64)
		if err != nil {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("resourceVersion %q: not a resource version of this API", rvParam)))
			return
		}
		if _, _, err := s.cache.since(v); err != nil {
			writeError(w, apierrors.NewResourceExpired(err.Error()))
			return
		}
		from, resumed = v, true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	headers := true
	send := func(typ watch.EventType, obj map[string]any) bool {
		var o any = obj
		if asTable && typ != watch.Bookmark && typ != watch.Error {
			o = s.table(res, []map[string]any{obj}, tbl, metaString(obj, "resourceVersion"), headers)
			headers = false
		}
		return enc.Encode(map[string]any{"type": typ, "object": o}) == nil
	}
	matched := map[string]bool{}
	if from == 0 {
		objs, rv := s.cache.list(res, ns)
		for _, o := range objs {
			if matches(o, ls, fs) {
				matched[objKey(metaString(o, "namespace"), metaString(o, "name"))] = true
				if !send(watch.Added, o) {
					return
				}
			}
		}
		from = rv
		if initial {
			bm := map[string]any{"kind": res.Kind, "apiVersion": res.APIVersion(), "metadata": map[string]any{
				"resourceVersion": strconv.FormatUint(rv, 10), "annotations": map[string]any{"k8s.io/initial-events-end": "true"}}}
			if !send(watch.Bookmark, bm) {
				return
			}
		}
		fl.Flush()
	}
	ctx := r.Context()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(bookmarkEvery)
	defer tick.Stop()
	for {
		evs, wake, err := s.cache.since(from)
		if err != nil {
			st := apierrors.NewResourceExpired(err.Error()).Status()
			st.Kind, st.APIVersion = "Status", "v1"
			_ = enc.Encode(map[string]any{"type": watch.Error, "object": st})
			fl.Flush()
			return
		}
		for _, ev := range evs {
			from = ev.rv
			if ev.res != res || (ns != "" && metaString(ev.obj, "namespace") != ns) {
				continue
			}
			k := objKey(metaString(ev.obj, "namespace"), metaString(ev.obj, "name"))
			typ := ev.typ
			switch {
			case typ == watch.Deleted:
				// A watch resumed from a version has not seen the objects
				// it follows: their deletion is sent when the deleted
				// object matches (kubectl delete waits for it).
				if !matched[k] && !(resumed && matches(ev.obj, ls, fs)) {
					continue
				}
				delete(matched, k)
			case matches(ev.obj, ls, fs):
				if matched[k] {
					typ = watch.Modified
				} else {
					typ = watch.Added
				}
				matched[k] = true
			case matched[k]:
				// It no longer matches the selectors: gone from this watch.
				typ = watch.Deleted
				delete(matched, k)
			default:
				continue
			}
			if !send(typ, ev.obj) {
				return
			}
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-wake:
		case <-tick.C:
			if bookmarks {
				bm := map[string]any{"kind": res.Kind, "apiVersion": res.APIVersion(), "metadata": map[string]any{"resourceVersion": strconv.FormatUint(from, 10)}}
				if !send(watch.Bookmark, bm) {
					return
				}
				fl.Flush()
			}
		}
	}
}

// readBody reads a request body as JSON (YAML and protobuf are converted).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tl *http.MaxBytesError
		if errors.As(err, &tl) {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", maxBody))
		}
		return nil, apierrors.NewBadRequest("reading the body: " + err.Error())
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == protobufType {
		return s.proto.toJSON(b)
	}
	if strings.Contains(ct, "yaml") {
		j, err := api.YAMLToJSON(b)
		if err != nil {
			return nil, apierrors.NewBadRequest("the body is not valid YAML: " + err.Error())
		}
		b = j
	}
	return b, nil
}

// decodeObject parses doc as an object of res and checks its fields per
// the fieldValidation parameter (Strict, Warn (the default), Ignore).
func decodeObject(r *http.Request, res *Resource, doc []byte) (map[string]any, []string, error) {
	var obj map[string]any
	if err := json.Unmarshal(doc, &obj); err != nil || obj == nil {
		return nil, nil, apierrors.NewBadRequest("the body is not a JSON object")
	}
	strict, err := sjson.UnmarshalStrict(doc, res.New(), sjson.DisallowDuplicateFields, sjson.DisallowUnknownFields)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s: %v", res.Kind, err))
	}
	var msgs []string
	for _, e := range strict {
		msgs = append(msgs, e.Error())
	}
	switch r.URL.Query().Get("fieldValidation") {
	case "Strict":
		if len(msgs) > 0 {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("strict decoding error: %s", strings.Join(msgs, ", ")))
		}
		return obj, nil, nil
	case "Ignore":
		return obj, nil, nil
	}
	return obj, msgs, nil
}

// checkIdentity fills in and checks apiVersion, kind, namespace and name.
func checkIdentity(obj map[string]any, res *Resource, ns, name string) error {
	if v, _ := obj["apiVersion"].(string); v != "" && v != res.APIVersion() {
		return apierrors.NewBadRequest(fmt.Sprintf("apiVersion %q does not match the resource %s (%s)", v, res.Plural, res.APIVersion()))
	}
	if k, _ := obj["kind"].(string); k != "" && k != res.Kind {
		return apierrors.NewBadRequest(fmt.Sprintf("kind %q does not match the resource %s (%s)", k, res.Plural, res.Kind))
	}
	obj["apiVersion"], obj["kind"] = res.APIVersion(), res.Kind
	if res.Namespaced {
		switch got := metaString(obj, "namespace"); {
		case got == "":
			setMeta(obj, "namespace", ns)
		case got != ns:
			return apierrors.NewBadRequest(fmt.Sprintf("the namespace of the provided object (%s) does not match the namespace sent on the request (%s)", got, ns))
		}
	}
	if name != "" {
		switch got := metaString(obj, "name"); {
		case got == "":
			setMeta(obj, "name", name)
		case got != name:
			return apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", got, name))
		}
	}
	if metaString(obj, "name") == "" {
		gen := metaString(obj, "generateName")
		if gen == "" {
			return apierrors.NewInvalid(schema.GroupKind{Group: res.Group, Kind: res.Kind}, "", nil)
		}
		setMeta(obj, "name", gen+randomSuffix())
	}
	return nil
}

func randomSuffix() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, 5)
	for i := range b {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[n.Int64()]
	}
	return string(b)
}

// objectOf decodes doc as an object of res (per fieldValidation) and fills
// in and checks its identity against the request's namespace and name.
func objectOf(r *http.Request, res *Resource, doc []byte, ns, name string) (map[string]any, []string, error) {
	obj, warns, err := decodeObject(r, res, doc)
	if err != nil {
		return nil, nil, err
	}
	if err := checkIdentity(obj, res, ns, name); err != nil {
		return nil, nil, err
	}
	return obj, warns, nil
}

// requestObject reads the request's body as an object of res.
func (s *Server) requestObject(w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) (map[string]any, []string, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	return objectOf(r, res, body, ns, name)
}

// isApply reports whether r is a server-side apply.
func isApply(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.HasPrefix(ct, "application/apply-patch")
}

func dryRun(r *http.Request) bool { return len(r.URL.Query()["dryRun"]) > 0 }

func (s *Server) create(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns string) {
	if !res.Writable {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "create"))
		return
	}
	if res.Live {
		h := s.opts.Create[gr(res).String()]
		if h == nil {
			writeError(w, apierrors.NewMethodNotSupported(gr(res), "create"))
			return
		}
		r.SetPathValue("namespace", ns)
		h.ServeHTTP(w, r)
		return
	}
	obj, warns, err := s.requestObject(w, r, res, ns, "")
	if err != nil {
		writeError(w, err)
		return
	}
	s.store(ctx, w, r, res, obj, nil, warns, "", http.StatusCreated)
}

// store hands obj to the backend (create when name is "", else update) and
// answers the object as now served.
//
// base is the object the change was made on (nil for a create): the backend
// writes only what differs between base and obj. It must be the very
// object the patch or the client's update started from, not a newer read:
// a field changed meanwhile through another peer would otherwise be
// written back with its old value.
//
// It reports gone, having written nothing to w, when a server-side apply
// updated an object that turned out to be deleted through another peer
// (see ErrUnchanged): the caller then applies again to create it.
func (s *Server) store(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, obj, baseObj map[string]any, warns []string, name string, code int) (gone bool) {
	if !isApply(r) {
		obj = s.trackUpdate(r, res, baseObj, obj)
	}
	kept, keptBase := obj, baseObj
	if cv := res.Convert; cv != nil {
		var err error
		if kept, err = cv.ToKept(obj); err == nil && baseObj != nil {
			keptBase, err = cv.ToKept(baseObj)
		}
		if err != nil {
			writeError(w, apierrors.NewBadRequest(err.Error()))
			return
		}
	}
	var base []byte
	if name != "" {
		base, _ = json.Marshal(keptBase)
	}
	doc, err := json.Marshal(kept)
	if err != nil {
		writeError(w, err)
		return
	}
	var more []string
	if name == "" {
		more, err = s.backend.Create(ctx, res.Kind, doc, dryRun(r))
	} else {
		more, err = s.updateObject(ctx, res, metaString(obj, "namespace"), name, base, doc, dryRun(r))
		if isApply(r) && apierrors.IsNotFound(err) {
			return true
		}
	}
	warn(w, append(warns, more...))
	if err != nil {
		writeError(w, err)
		return
	}
	if dryRun(r) {
		writeJSON(w, code, obj)
		return
	}
	s.cache.sync(ctx)
	cur, ok := s.cache.get(res, metaString(obj, "namespace"), metaString(obj, "name"))
	if !ok {
		// Stored, but not listed yet (a derived view): answer what was sent.
		cur = obj
	}
	writeJSON(w, code, cur)
	return false
}

// updateObject has the backend update an object. An update that changed
// nothing (ErrUnchanged), on a backend that may lag behind its peers,
// catches up and answers NotFound if the object is gone then.
func (s *Server) updateObject(ctx context.Context, res *Resource, ns, name string, base, doc []byte, dry bool) ([]string, error) {
	warns, err := s.backend.Update(ctx, res.Kind, ns, name, base, doc, dry)
	if !errors.Is(err, ErrUnchanged) {
		return warns, err
	}
	if cu, ok := s.backend.(CatchUpper); ok {
		cu.CatchUp(ctx)
		s.cache.sync(ctx)
		if _, ok := s.cache.get(res, ns, name); !ok {
			return warns, apierrors.NewNotFound(gr(res), name)
		}
	}
	return warns, nil
}

// checkVersion enforces a resourceVersion precondition against this
// peer's replica.
func checkVersion(res *Resource, obj, cur map[string]any) error {
	want := metaString(obj, "resourceVersion")
	if want == "" || want == metaString(cur, "resourceVersion") {
		return nil
	}
	return apierrors.NewConflict(gr(res), metaString(cur, "name"),
		fmt.Errorf("the object has been modified (or was read from another peer); please apply your changes to the latest version and try again"))
}

// target returns the object a read or a write acts on. If this peer does
// not hold it, the backend may lag behind the peer that wrote it a moment
// ago: it catches up (see CatchUpper) and the object is looked up again.
func (s *Server) target(ctx context.Context, res *Resource, ns, name string) (map[string]any, bool) {
	if cur, ok := s.cache.get(res, ns, name); ok {
		return cur, true
	}
	cu, ok := s.backend.(CatchUpper)
	if !ok {
		return nil, false
	}
	cu.CatchUp(ctx)
	s.cache.sync(ctx)
	return s.cache.get(res, ns, name)
}

func (s *Server) update(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	if res.Live || !res.Writable && !res.Updatable {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "update"))
		return
	}
	obj, warns, err := s.requestObject(w, r, res, ns, name)
	if err != nil {
		writeError(w, err)
		return
	}
	cur, ok := s.target(ctx, res, ns, name)
	if !ok {
		writeError(w, apierrors.NewNotFound(gr(res), name))
		return
	}
	if err := checkVersion(res, obj, cur); err != nil {
		writeError(w, err)
		return
	}
	s.store(ctx, w, r, res, obj, cur, warns, name, http.StatusOK)
}

// applyPatch applies a patch of the request's type to cur.
func applyPatch(r *http.Request, res *Resource, typed any, cur, patch []byte) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json-patch+json":
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest("JSON patch: " + err.Error())
		}
		if len(p) > maxPatchOps {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("a JSON patch may hold at most %d operations", maxPatchOps))
		}
		out, err := applyJSONPatch(p, cur)
		if err != nil {
			return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity, Reason: metav1.StatusReasonInvalid,
				Message: fmt.Sprintf("%s: JSON patch: %v", res.Kind, err)}}
		}
		return out, nil
	case "application/merge-patch+json":
		out, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest("merge patch: " + err.Error())
		}
		return out, nil
	case "application/strategic-merge-patch+json":
		out, err := strategicpatch.StrategicMergePatch(cur, patch, typed)
		if err != nil {
			return nil, apierrors.NewBadRequest("strategic merge patch: " + err.Error())
		}
		return out, nil
	}
	return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the patch content type %q is not supported", ct)}}
}

func (s *Server) patch(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	if res.Live || !res.Writable && !res.Updatable {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "patch"))
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	apply := isApply(r)
	cur, ok := s.target(ctx, res, ns, name)
	if !ok && (!apply || !res.Writable) {
		writeError(w, apierrors.NewNotFound(gr(res), name))
		return
	}
	if apply {
		// Server-side apply: the applied configuration, checked as any
		// object of res, merged by field ownership.
		applied, warns, err := objectOf(r, res, body, ns, name)
		if err != nil {
			writeError(w, err)
			return
		}
		if ok {
			if err := checkVersion(res, applied, cur); err != nil {
				writeError(w, err)
				return
			}
		}
		obj, err := s.serverSideApply(r, res, cur, applied)
		if err != nil {
			writeError(w, err)
			return
		}
		if !ok {
			s.store(ctx, w, r, res, obj, nil, warns, "", http.StatusCreated)
			return
		}
		if s.store(ctx, w, r, res, obj, cur, warns, name, http.StatusOK) {
			// Deleted through another peer meanwhile: the apply makes it
			// again, from the applied configuration alone.
			if obj, err = s.serverSideApply(r, res, nil, applied); err != nil {
				writeError(w, err)
				return
			}
			s.store(ctx, w, r, res, obj, nil, warns, "", http.StatusCreated)
		}
		return
	}
	curDoc, err := json.Marshal(cur)
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := applyPatch(r, res, res.New(), curDoc, body)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(out) > maxBody {
		writeError(w, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the patched object is larger than %d bytes", maxBody)))
		return
	}
	obj, warns, err := objectOf(r, res, out, ns, name)
	if err != nil {
		writeError(w, err)
		return
	}
	var pm map[string]any
	if json.Unmarshal(body, &pm) == nil {
		if err := checkVersion(res, map[string]any{"metadata": pm["metadata"]}, cur); err != nil {
			writeError(w, err)
			return
		}
	}
	s.store(ctx, w, r, res, obj, cur, warns, name, http.StatusOK)
}

func (s *Server) delete(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	if !res.Writable && !res.Deletable {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "delete"))
		return
	}
	if res.Live {
		s.deleteLive(w, r, res, ns, name)
		return
	}
	cur, ok := s.target(ctx, res, ns, name)
	if !ok {
		writeError(w, apierrors.NewNotFound(gr(res), name))
		return
	}
	opts, err := s.deleteOptions(w, r)
	if err == nil {
		err = checkPreconditions(res, cur, opts)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if dryRun(r) || len(opts.DryRun) > 0 {
		writeJSON(w, http.StatusOK, cur)
		return
	}
	if err := s.backend.Delete(ctx, res.Kind, ns, name, opts); err != nil {
		writeError(w, err)
		return
	}
	s.cache.sync(ctx)
	writeJSON(w, http.StatusOK, cur)
}

func (s *Server) deleteCollection(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns string) {
	if !res.Writable && !res.Deletable {
		writeError(w, apierrors.NewMethodNotSupported(gr(res), "deletecollection"))
		return
	}
	if res.Live {
		s.deleteLiveCollection(w, r, res, ns)
		return
	}
	ls, fs, err := selectors(r)
	if err != nil {
		writeError(w, err)
		return
	}
	opts, err := s.deleteOptions(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	objs, _ := s.cache.list(res, ns)
	var items []map[string]any
	for _, o := range objs {
		if !matches(o, ls, fs) {
			continue
		}
		if !dryRun(r) && len(opts.DryRun) == 0 {
			if err := s.backend.Delete(ctx, res.Kind, metaString(o, "namespace"), metaString(o, "name"), opts); err != nil && !apierrors.IsNotFound(err) {
				writeError(w, err)
				return
			}
		}
		items = append(items, o)
	}
	if items == nil {
		items = []map[string]any{}
	}
	s.cache.sync(ctx)
	writeJSON(w, http.StatusOK, map[string]any{"kind": res.Kind + "List", "apiVersion": res.APIVersion(),
		"metadata": map[string]any{"resourceVersion": strconv.FormatUint(s.cache.current(), 10)}, "items": items})
}

// deleteOptions reads a delete's options from its body (DeleteOptions, as
// kubectl sends them) and its query (propagationPolicy, gracePeriodSeconds,
// dryRun), the query winning.
func (s *Server) deleteOptions(w http.ResponseWriter, r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		body, err := s.readBody(w, r)
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := sjson.UnmarshalCaseSensitivePreserveInts(body, opts); err != nil {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("the body of a delete is not DeleteOptions: %v", err))
			}
		}
	}
	q := r.URL.Query()
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds: %q is not a number of seconds", v))
		}
		opts.GracePeriodSeconds = &n
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationOrphan, metav1.DeletePropagationBackground, metav1.DeletePropagationForeground:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: %q is not one of Orphan, Background, Foreground", *p))
		}
	}
	if opts.OrphanDependents != nil && opts.PropagationPolicy == nil { // the deprecated form
		p := metav1.DeletePropagationBackground
		if *opts.OrphanDependents {
			p = metav1.DeletePropagationOrphan
		}
		opts.PropagationPolicy = &p
	}
	return opts, nil
}

// checkPreconditions refuses a delete whose preconditions (uid,
// resourceVersion) the object as this peer serves it does not meet.
func checkPreconditions(res *Resource, cur map[string]any, opts *metav1.DeleteOptions) error {
	pre := opts.Preconditions
	if pre == nil {
		return nil
	}
	name := metaString(cur, "name")
	if pre.UID != nil && string(*pre.UID) != metaString(cur, "uid") {
		return apierrors.NewConflict(gr(res), name, fmt.Errorf("the UID in the precondition (%s) does not match the UID in record (%s); the object might have been deleted and then recreated", *pre.UID, metaString(cur, "uid")))
	}
	if pre.ResourceVersion != nil && *pre.ResourceVersion != metaString(cur, "resourceVersion") {
		return apierrors.NewConflict(gr(res), name, fmt.Errorf("the ResourceVersion in the precondition (%s) does not match the ResourceVersion in record (%s); the object might have been modified", *pre.ResourceVersion, metaString(cur, "resourceVersion")))
	}
	return nil
}

// scaleOf returns the autoscaling/v1 Scale of a deployment.
func scaleOf(obj map[string]any) map[string]any {
	spec, _ := obj["spec"].(map[string]any)
	status, _ := obj["status"].(map[string]any)
	sel := ""
	if b, err := json.Marshal(spec["selector"]); err == nil {
		var ls metav1.LabelSelector
		if json.Unmarshal(b, &ls) == nil {
			if s, err := metav1.LabelSelectorAsSelector(&ls); err == nil {
				sel = s.String()
			}
		}
	}
	m, _ := obj["metadata"].(map[string]any)
	meta := map[string]any{}
	for _, k := range []string{"name", "namespace", "uid", "resourceVersion", "creationTimestamp"} {
		if v, ok := m[k]; ok {
			meta[k] = v
		}
	}
	return map[string]any{"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
		"spec": map[string]any{"replicas": spec["replicas"]}, "status": map[string]any{"replicas": orZero(status["replicas"]), "selector": sel}}
}

func orZero(v any) any {
	if v == nil {
		return 0
	}
	return v
}

// scale serves the scale subresource: GET, PUT and PATCH of spec.replicas.
func (s *Server) scale(ctx context.Context, w http.ResponseWriter, r *http.Request, res *Resource, ns, name string) {
	cur, ok := s.cache.get(res, ns, name)
	if !ok && r.Method != http.MethodGet {
		cur, ok = s.target(ctx, res, ns, name)
	}
	if !ok {
		writeError(w, apierrors.NewNotFound(gr(res), name))
		return
	}
	sc := scaleOf(cur)
	var next []byte
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, sc)
		return
	case http.MethodPut, http.MethodPatch:
		body, err := s.readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		next = body
		if r.Method == http.MethodPatch {
			scDoc, _ := json.Marshal(sc)
			if next, err = applyPatch(r, res, &autoscalingv1.Scale{}, scDoc, body); err != nil {
				writeError(w, err)
				return
			}
		}
	default:
		writeError(w, apierrors.NewMethodNotSupported(schema.GroupResource{Group: res.Group, Resource: res.Plural + "/scale"}, r.Method))
		return
	}
	var want autoscalingv1.Scale
	if err := json.Unmarshal(next, &want); err != nil {
		writeError(w, apierrors.NewBadRequest("Scale: "+err.Error()))
		return
	}
	if want.ResourceVersion != "" && want.ResourceVersion != metaString(cur, "resourceVersion") {
		writeError(w, checkVersion(res, map[string]any{"metadata": map[string]any{"resourceVersion": want.ResourceVersion}}, cur))
		return
	}
	obj := deepCopy(cur)
	spec, _ := obj["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		obj["spec"] = spec
	}
	spec["replicas"] = want.Spec.Replicas
	obj = s.trackUpdate(r, res, cur, obj)
	doc, _ := json.Marshal(obj)
	base, _ := json.Marshal(cur)
	warns, err := s.updateObject(ctx, res, ns, name, base, doc, dryRun(r))
	warn(w, warns)
	if err != nil {
		writeError(w, err)
		return
	}
	s.cache.sync(ctx)
	if now, ok := s.cache.get(res, ns, name); ok {
		cur = now
	}
	writeJSON(w, http.StatusOK, scaleOf(cur))
}

func deepCopy(obj map[string]any) map[string]any {
	b, _ := json.Marshal(obj)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// applyJSONPatch applies p to doc. The library panics on some malformed
// operations (a replace without a value): that is a bad request, not a
// crash of the handler.
func applyJSONPatch(p jsonpatch.Patch, doc []byte) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("malformed operation: %v", v)
		}
	}()
	return p.Apply(doc)
}
