package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// A list with `limit` is answered a page at a time, as Kubernetes does:
// the items in namespace/name order after the `continue` token's key, at
// most limit of them, and a new token when more remain. This peer keeps no
// snapshot of old listings, so a later page is read from the current state;
// every page carries the first page's resourceVersion, so a watch started
// from it replays whatever changed between the pages (a change is seen
// twice at worst, never lost).

// pageToken is what a continue token holds (base64 of its JSON, as
// kube-apiserver's): the resource version of the first page and the key of
// the last item sent.
type pageToken struct {
	V     string `json:"v"`
	RV    uint64 `json:"rv"`
	Start string `json:"start"`
}

const pageTokenVersion = "meta.k8s.io/v1"

// pageRequest is what a list asks of paging.
type pageRequest struct {
	limit int    // 0: everything
	after string // key of the last item already sent ("" from the start)
	rv    uint64 // resource version of the first page (0: this listing's)
}

// parsePage reads limit and continue from a list's query. ours tells
// whether a resource version was issued by this peer.
func parsePage(q url.Values, ours func(uint64) bool) (pageRequest, error) {
	var p pageRequest
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return p, apierrors.NewBadRequest(fmt.Sprintf("limit: %q is not a number of items (want an integer >= 0)", s))
		}
		p.limit = int(min(n, 1<<30))
	}
	s := q.Get("continue")
	if s == "" {
		return p, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		raw, err = base64.StdEncoding.DecodeString(s)
	}
	var t pageToken
	if err != nil || json.Unmarshal(raw, &t) != nil || t.V != pageTokenVersion || t.RV == 0 {
		return p, apierrors.NewBadRequest("continue: the token is not one this server issued (start the list again without it)")
	}
	if !ours(t.RV) {
		return p, apierrors.NewResourceExpired("continue: the token was issued by another peer; start the list again without it")
	}
	p.after, p.rv = t.Start, t.RV
	return p, nil
}

// paginate returns the page of items p asks for and the list metadata to
// send with it. items must be sorted by key when p asks for a page; rv is
// the current resource version.
func paginate(items []map[string]any, p pageRequest, rv uint64) ([]map[string]any, map[string]any) {
	if p.rv != 0 {
		rv = p.rv
	}
	meta := map[string]any{"resourceVersion": strconv.FormatUint(rv, 10)}
	if p.after != "" {
		i := sort.Search(len(items), func(i int) bool { return itemKey(items[i]) > p.after })
		items = items[i:]
	}
	if p.limit == 0 || len(items) <= p.limit {
		return items, meta
	}
	page := items[:p.limit]
	tok, _ := json.Marshal(pageToken{V: pageTokenVersion, RV: rv, Start: itemKey(page[len(page)-1])})
	meta["continue"] = base64.RawURLEncoding.EncodeToString(tok)
	meta["remainingItemCount"] = int64(len(items) - p.limit)
	return page, meta
}

// itemKey orders items by namespace, then name: the space sorts before any
// character a namespace may hold.
func itemKey(obj map[string]any) string {
	return metaString(obj, "namespace") + " " + metaString(obj, "name")
}

// sortItems puts items in key order (live lists come in the backend's).
func sortItems(items []map[string]any) {
	sort.SliceStable(items, func(i, j int) bool { return itemKey(items[i]) < itemKey(items[j]) })
}
