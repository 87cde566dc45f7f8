package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// resourceType is one kind of object the agent serves.
type resourceType struct {
	plural     string // URL segment: "deployments"
	singular   string // "deployment"
	short      string // kubectl's short name: "deploy"
	kind       string // "Deployment"
	group      string // "apps", or "" for the core group
	namespaced bool
}

// resourceTypes lists the types the agent serves, in `get all`'s order
// first (kubectl's: pods, services, deployments).
func resourceTypes() []resourceType {
	return []resourceType{
		{plural: "pods", singular: "pod", short: "po", kind: api.KindPod, namespaced: true},
		{plural: "services", singular: "service", short: "svc", kind: api.KindService, namespaced: true},
		{plural: "deployments", singular: "deployment", short: "deploy", kind: api.KindDeployment, group: "apps", namespaced: true},
		{plural: "daemonsets", singular: "daemonset", short: "ds", kind: api.KindDaemonSet, group: "apps", namespaced: true},
		{plural: "namespaces", singular: "namespace", short: "ns", kind: api.KindNamespace},
		{plural: "nodes", singular: "node", short: "no", kind: "Node"},
		{plural: "events", singular: "event", short: "ev", kind: "Event", namespaced: true},
	}
}

// allTypes is what `get all` expands to.
func allTypes() []resourceType { return resourceTypes()[:4] }

// nameKind is the type's name in `-o name` and in messages about one object:
// "pod", "deployment.apps".
func (r resourceType) nameKind() string {
	if r.group != "" {
		return r.singular + "." + r.group
	}
	return r.singular
}

// groupResource is the plural qualified by group, as in kubectl's NotFound
// messages: "pods", "deployments.apps".
func (r resourceType) groupResource() string {
	if r.group != "" {
		return r.plural + "." + r.group
	}
	return r.plural
}

// errUnknownType is kubectl's message for an unknown resource type.
func errUnknownType(s string) error {
	return fmt.Errorf("the server doesn't have a resource type %q", s)
}

// lookupResource resolves one type name or alias, case-insensitively:
// po, pod, pods, pods.v1, deploy, deployment.apps, ...
func lookupResource(s string) (resourceType, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for _, r := range resourceTypes() {
		names := []string{r.plural, r.singular, r.short}
		if r.group != "" {
			names = append(names, r.plural+"."+r.group, r.singular+"."+r.group, r.short+"."+r.group,
				r.plural+"."+r.group+"/v1", r.plural+".v1."+r.group)
		} else {
			names = append(names, r.plural+".v1", r.singular+".v1")
		}
		for _, n := range names {
			if name == n {
				return r, nil
			}
		}
	}
	return resourceType{}, errUnknownType(s)
}

// resourceForKind returns the type of objects of kind.
func resourceForKind(kind string) (resourceType, bool) {
	for _, r := range resourceTypes() {
		if strings.EqualFold(r.kind, kind) {
			return r, true
		}
	}
	return resourceType{}, false
}

// kindName returns how kubectl names objects of kind ("deployment.apps"),
// falling back to the lowercased kind for kinds chorus does not serve.
func kindName(kind string) string {
	if r, ok := resourceForKind(kind); ok {
		return r.nameKind()
	}
	return strings.ToLower(kind)
}

// kindGroupResource returns "deployments.apps" for Deployment.
func kindGroupResource(kind string) string {
	if r, ok := resourceForKind(kind); ok {
		return r.groupResource()
	}
	return strings.ToLower(kind) + "s"
}

// parseTypeList resolves "pods,deploy" or "all" into types, without
// duplicates, in the order given.
func parseTypeList(arg string) ([]resourceType, error) {
	var out []resourceType
	seen := map[string]bool{}
	add := func(r resourceType) {
		if !seen[r.plural] {
			seen[r.plural] = true
			out = append(out, r)
		}
	}
	for _, part := range strings.Split(arg, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.EqualFold(part, "all") {
			for _, r := range allTypes() {
				add(r)
			}
			continue
		}
		r, err := lookupResource(part)
		if err != nil {
			return nil, err
		}
		add(r)
	}
	if len(out) == 0 {
		return nil, errUnknownType(arg)
	}
	return out, nil
}

// typedNames is one type and the names asked of it (none: all of them).
type typedNames struct {
	res   resourceType
	names []string
}

// parseResourceArgs reads kubectl's two argument forms: "TYPE[,TYPE...]
// [NAME...]" and "TYPE/NAME [TYPE/NAME...]". multi reports whether several
// types were asked for (kubectl then prefixes names with their type).
func parseResourceArgs(args []string) (reqs []typedNames, multi bool, err error) {
	if len(args) == 0 {
		return nil, false, fmt.Errorf("you must specify the type of resource")
	}
	if strings.Contains(args[0], "/") {
		index := map[string]int{}
		for _, a := range args {
			t, n, ok := strings.Cut(a, "/")
			if !ok || t == "" || n == "" {
				return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'chorus get resource/<resource_name>' instead of 'chorus get resource resource/<resource_name>'")
			}
			r, err := lookupResource(t)
			if err != nil {
				return nil, false, err
			}
			i, ok := index[r.plural]
			if !ok {
				i = len(reqs)
				index[r.plural] = i
				reqs = append(reqs, typedNames{res: r})
			}
			reqs[i].names = append(reqs[i].names, n)
		}
		return reqs, len(reqs) > 1, nil
	}
	types, err := parseTypeList(args[0])
	if err != nil {
		return nil, false, err
	}
	for _, n := range args[1:] {
		if strings.Contains(n, "/") {
			return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'chorus get resource/<resource_name>' instead of 'chorus get resource resource/<resource_name>'")
		}
	}
	for _, r := range types {
		reqs = append(reqs, typedNames{res: r, names: args[1:]})
	}
	multi = len(types) > 1 || strings.EqualFold(args[0], "all")
	return reqs, multi, nil
}

// object is one object as the agent sent it, with its header decoded.
type object struct {
	res      resourceType
	raw      json.RawMessage
	Kind     string         `json:"kind"`
	Metadata api.ObjectMeta `json:"metadata"`
}

// decodeObject reads the header of one raw object of type res.
func decodeObject(res resourceType, raw json.RawMessage) (object, error) {
	o := object{res: res, raw: raw}
	if err := json.Unmarshal(raw, &o); err != nil {
		return o, fmt.Errorf("cannot decode %s from the server: %v", res.plural, err)
	}
	if o.Kind == "" {
		o.Kind = res.kind
	}
	return o, nil
}

// key identifies an object within its type.
func (o object) key() string { return o.Metadata.Namespace + "/" + o.Metadata.Name }

// into decodes the whole object into v.
func (o object) into(v any) error {
	if err := json.Unmarshal(o.raw, v); err != nil {
		return fmt.Errorf("cannot decode %s %q from the server: %v", o.res.singular, o.Metadata.Name, err)
	}
	return nil
}

// creation returns the object's creation time, or the zero time.
func (o object) creation() time.Time {
	if o.Metadata.CreationTimestamp == nil {
		return time.Time{}
	}
	return *o.Metadata.CreationTimestamp
}

// objectPath is the URL path of one object.
func objectPath(res resourceType, ns, name string) string {
	if !res.namespaced {
		return apiPath(res.plural, url.PathEscape(name))
	}
	return apiPath("namespaces", url.PathEscape(ns), res.plural, url.PathEscape(name))
}

// listPath is the URL path of a collection: every namespace when allNS (or
// for cluster-scoped types), else one namespace.
func listPath(res resourceType, ns string, allNS bool) string {
	if !res.namespaced || allNS {
		return apiPath(res.plural)
	}
	return apiPath("namespaces", url.PathEscape(ns), res.plural)
}

// getObject fetches one object.
func getObject(ctx context.Context, c *client, res resourceType, ns, name string) (object, error) {
	var raw json.RawMessage
	if err := c.getJSON(ctx, objectPath(res, ns, name), nil, &raw); err != nil {
		return object{}, err
	}
	return decodeObject(res, raw)
}

// listObjects fetches a collection, keeps what sel matches and sorts it by
// namespace and name (events: by time).
func listObjects(ctx context.Context, c *client, res resourceType, ns string, allNS bool, sel labelSelector, query url.Values) ([]object, error) {
	raws, err := c.list(ctx, listPath(res, ns, allNS), query)
	if err != nil {
		return nil, err
	}
	objs := make([]object, 0, len(raws))
	for _, raw := range raws {
		o, err := decodeObject(res, raw)
		if err != nil {
			return nil, err
		}
		if sel.matches(o.Metadata.Labels) {
			objs = append(objs, o)
		}
	}
	sortObjects(objs)
	return objs, nil
}

// sortObjects orders objects by namespace and name.
func sortObjects(objs []object) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i].Metadata, objs[j].Metadata
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
}

// labelRequirement is one term of a label selector.
type labelRequirement struct {
	key    string
	op     string // "=", "!=", "in", "notin", "exists", "!"
	values []string
}

// labelSelector is a parsed -l selector; every requirement must hold.
type labelSelector []labelRequirement

// parseSelector reads kubectl's selector syntax: k=v, k==v, k!=v, k, !k,
// k in (a,b), k notin (a,b), comma-separated.
func parseSelector(s string) (labelSelector, error) {
	var sel labelSelector
	for _, term := range splitSelector(s) {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		bad := fmt.Errorf("unable to parse requirement: invalid label selector %q", s)
		switch {
		case strings.HasPrefix(term, "!"):
			k := strings.TrimSpace(term[1:])
			if k == "" {
				return nil, bad
			}
			sel = append(sel, labelRequirement{key: k, op: "!"})
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			sel = append(sel, labelRequirement{key: strings.TrimSpace(k), op: "!=", values: []string{strings.TrimSpace(v)}})
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			v = strings.TrimPrefix(v, "=")
			sel = append(sel, labelRequirement{key: strings.TrimSpace(k), op: "=", values: []string{strings.TrimSpace(v)}})
		case strings.Contains(term, "("):
			open := strings.Index(term, "(")
			if !strings.HasSuffix(term, ")") {
				return nil, bad
			}
			fields := strings.Fields(term[:open])
			if len(fields) != 2 || (fields[1] != "in" && fields[1] != "notin") {
				return nil, bad
			}
			var vals []string
			for _, v := range strings.Split(term[open+1:len(term)-1], ",") {
				vals = append(vals, strings.TrimSpace(v))
			}
			sel = append(sel, labelRequirement{key: fields[0], op: fields[1], values: vals})
		default:
			if strings.ContainsAny(term, " \t") {
				return nil, bad
			}
			sel = append(sel, labelRequirement{key: term, op: "exists"})
		}
		if sel[len(sel)-1].key == "" {
			return nil, bad
		}
	}
	return sel, nil
}

// splitSelector splits at commas outside parentheses.
func splitSelector(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, ch := range s {
		switch ch {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// matches reports whether labels satisfy every requirement.
func (s labelSelector) matches(labels map[string]string) bool {
	for _, r := range s {
		v, ok := labels[r.key]
		switch r.op {
		case "=":
			if !ok || v != r.values[0] {
				return false
			}
		case "!=":
			if ok && v == r.values[0] {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!":
			if ok {
				return false
			}
		case "in":
			if !ok || !slices.Contains(r.values, v) {
				return false
			}
		case "notin":
			if ok && slices.Contains(r.values, v) {
				return false
			}
		}
	}
	return true
}
