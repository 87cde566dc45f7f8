package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Limits on what Decode accepts.
const (
	// MaxManifestBytes is the largest manifest Decode reads.
	MaxManifestBytes = 4 << 20
	// MaxManifestDocuments is the most objects (documents and List items)
	// one manifest may hold.
	MaxManifestDocuments = 1000
	// MaxAliasExpansion bounds the size of a YAML document once its
	// aliases are expanded, counted as the bytes of its scalars plus 16 per
	// node. It is checked before anything expands them: a 1 MB anchored
	// string referenced 400 times would otherwise become 400 MB of JSON.
	MaxAliasExpansion = 4 * MaxManifestBytes
)

// FieldError is one problem with a manifest: where it is and what is wrong.
type FieldError struct {
	Source string // file name, "" if none
	Doc    int    // document number, from 1; 0 for the manifest as a whole
	Kind   string // the object's kind, "" if not known
	Name   string // the object's name, "" if not known
	Field  string // path of the field at fault, like spec.template.spec.containers[0].image
	Reason string // what is wrong
	Line   int    // line in the source, 0 if not known
}

// Error renders the problem as
// "<source>: document N (Kind name): <field.path>: <reason> (line L)",
// leaving out the parts that are empty.
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	obj := strings.TrimSpace(e.Kind + " " + e.Name)
	switch {
	case e.Doc > 0 && obj != "":
		fmt.Fprintf(&b, "document %d (%s): ", e.Doc, obj)
	case e.Doc > 0:
		fmt.Fprintf(&b, "document %d: ", e.Doc)
	case obj != "":
		b.WriteString(obj)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// ManifestError is what Decode returns for a manifest it rejects: every
// problem found in every document.
type ManifestError struct {
	Errors []FieldError
}

// Error returns the problems, one per line.
func (e *ManifestError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = fe.Error()
	}
	return strings.Join(lines, "\n")
}

// kindInfo describes a kind manifests may hold.
type kindInfo struct {
	apiVersion string
	new        func() Object
}

var supportedKinds = map[string]kindInfo{
	KindNamespace:               {apiVersionV1, func() Object { return new(Namespace) }},
	KindDeployment:              {apiVersionAppsV1, func() Object { return new(Deployment) }},
	KindService:                 {apiVersionV1, func() Object { return new(Service) }},
	KindDaemonSet:               {apiVersionAppsV1, func() Object { return new(DaemonSet) }},
	KindConfigMap:               {apiVersionV1, func() Object { return new(ConfigMap) }},
	KindSecret:                  {apiVersionV1, func() Object { return new(Secret) }},
	KindPod:                     {apiVersionV1, func() Object { return new(Pod) }},
	KindJob:                     {apiVersionBatchV1, func() Object { return new(Job) }},
	KindServiceAccount:          {apiVersionV1, func() Object { return new(ServiceAccount) }},
	KindStatefulSet:             {apiVersionAppsV1, func() Object { return new(StatefulSet) }},
	KindPersistentVolumeClaim:   {apiVersionV1, func() Object { return new(PersistentVolumeClaim) }},
	KindCronJob:                 {apiVersionBatchV1, func() Object { return new(CronJob) }},
	KindIngress:                 {apiVersionNetworkingV1, func() Object { return new(Ingress) }},
	KindIngressClass:            {apiVersionNetworkingV1, func() Object { return new(IngressClass) }},
	KindHorizontalPodAutoscaler: {apiVersionAutoscalingV2, func() Object { return new(HorizontalPodAutoscaler) }},
}

// NewObject returns a new, empty object of kind, or nil when chorus does
// not know the kind.
func NewObject(kind string) Object {
	if info, ok := supportedKinds[kind]; ok {
		return info.new()
	}
	return nil
}

const supportedKindsText = "Namespace (v1), Deployment (apps/v1), DaemonSet (apps/v1), Service (v1), ConfigMap (v1), Secret (v1), Pod (v1), Job (batch/v1), CronJob (batch/v1), StatefulSet (apps/v1), PersistentVolumeClaim (v1), ServiceAccount (v1), Ingress (networking.k8s.io/v1), IngressClass (networking.k8s.io/v1), HorizontalPodAutoscaler (autoscaling/v2)"

// Decode reads a manifest: YAML documents separated by "---" lines, or a
// stream of JSON objects, each a Namespace (v1), a Deployment (apps/v1), a
// Service (v1), a ConfigMap, a Secret, a Pod (v1) or a List of them. Empty documents are skipped. source names
// the manifest in messages and may be empty.
//
// Each object is decoded, defaulted (SetDefaults) and validated (Validate).
// Fields chorus does not know, or knows but ignores (status, volumes, ...),
// are warnings. Anything else wrong fails the whole manifest: objs is then
// nil and err a *ManifestError listing every problem of every document.
// Warnings are returned in both cases.
func Decode(data []byte, source string) (objs []Object, warnings []string, err error) {
	dec := &manifestDecoder{source: source, seen: map[string]int{}}
	if len(data) > MaxManifestBytes {
		dec.errs = append(dec.errs, FieldError{Source: source,
			Reason: fmt.Sprintf("manifest is %d bytes; the limit is %d (4 MiB)", len(data), MaxManifestBytes)})
		return nil, nil, &ManifestError{Errors: dec.errs}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	docs, tooMany := splitDocuments(data)
	if tooMany {
		dec.errs = append(dec.errs, FieldError{Source: source,
			Reason: fmt.Sprintf("more than %d documents; split the manifest", MaxManifestDocuments)})
		return nil, nil, &ManifestError{Errors: dec.errs}
	}
	n := 0
	for _, d := range docs {
		if d.value == nil && d.syntax == "" {
			continue // empty document
		}
		n++
		if dec.objects >= MaxManifestDocuments {
			dec.errs = append(dec.errs, FieldError{Source: source, Doc: n,
				Reason: fmt.Sprintf("more than %d objects; split the manifest", MaxManifestDocuments)})
			break
		}
		dec.document(d, n)
	}
	for _, w := range dec.warns {
		warnings = append(warnings, w.Error())
	}
	if len(dec.errs) > 0 {
		return nil, warnings, &ManifestError{Errors: dec.errs}
	}
	if len(dec.objs) == 0 {
		warnings = append(warnings, FieldError{Source: source, Reason: "no objects found"}.Error())
	}
	return dec.objs, warnings, nil
}

type manifestDecoder struct {
	source      string
	objs        []Object
	objects     int
	errs, warns []FieldError
	seen        map[string]int // ObjectKey -> document
}

// document decodes document d, numbered n.
func (dec *manifestDecoder) document(d *document, n int) {
	if d.syntax != "" {
		dec.errs = append(dec.errs, FieldError{Source: dec.source, Doc: n, Reason: d.syntax})
		return
	}
	for _, w := range d.warns {
		w.Source, w.Doc = dec.source, n
		dec.warns = append(dec.warns, w)
	}
	m, ok := d.value.(map[string]any)
	if !ok {
		dec.object(d, n, "", d.value)
		return
	}
	kind, _ := m["kind"].(string)
	if base, isList := strings.CutSuffix(kind, "List"); isList && (base == "" || supportedKinds[base].new != nil) {
		items, ok := m["items"].([]any)
		if !ok && m["items"] != nil {
			dec.errs = append(dec.errs, FieldError{Source: dec.source, Doc: n, Kind: kind, Field: "items",
				Reason: fmt.Sprintf("want a list, got %s", describe(m["items"])), Line: d.lineOf("items")})
			return
		}
		for i, item := range items {
			if dec.objects >= MaxManifestDocuments {
				dec.errs = append(dec.errs, FieldError{Source: dec.source, Doc: n, Kind: kind,
					Reason: fmt.Sprintf("more than %d objects; split the manifest", MaxManifestDocuments)})
				return
			}
			dec.object(d, n, index("items", i), item)
		}
		return
	}
	dec.object(d, n, "", m)
}

// located is a problem and the path of the document node it is about.
type located struct {
	FieldError
	at string
}

// object decodes one object of document d, at path base within it ("" for
// the document itself, items[i] for a List's item).
func (dec *manifestDecoder) object(d *document, n int, base string, raw any) {
	dec.objects++
	obj, kind, name, errs, warns := decodeObject(raw, base)
	add := func(to *[]FieldError, l located) {
		fe := l.FieldError
		fe.Source, fe.Doc, fe.Line = dec.source, n, d.lineOf(l.at)
		if fe.Kind == "" && fe.Name == "" {
			fe.Kind, fe.Name = kind, name
		}
		*to = append(*to, fe)
	}
	for _, w := range warns {
		add(&dec.warns, w)
	}
	for _, e := range errs {
		add(&dec.errs, e)
	}
	if obj == nil || len(errs) > 0 {
		return
	}
	key := ObjectKey(obj)
	if prev, dup := dec.seen[key]; dup {
		what := fmt.Sprintf("%s %q", kind, name)
		if ns := obj.Meta().Namespace; ns != "" {
			what += fmt.Sprintf(" in namespace %q", ns)
		}
		at := child(base, "metadata.name")
		add(&dec.errs, located{FieldError{Field: at, Reason: fmt.Sprintf("%s is also defined in document %d", what, prev)}, at})
		return
	}
	dec.seen[key] = n
	dec.objs = append(dec.objs, obj)
}

// decodeObject decodes, defaults and validates one object. Paths in the
// problems it returns start with base. kind and name are for messages; kind
// is "" when it is not supported.
func decodeObject(raw any, base string) (obj Object, kind, name string, errs, warns []located) {
	fail := func(field, format string, args ...any) {
		errs = append(errs, located{FieldError{Kind: kind, Name: name, Field: field, Reason: fmt.Sprintf(format, args...)}, field})
	}
	m, ok := raw.(map[string]any)
	if !ok {
		fail(base, "want an object with apiVersion and kind, got %s", describe(raw))
		return
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	k, kok := m["kind"].(string)
	apiVersion, aok := m["apiVersion"].(string)
	switch {
	case m["kind"] == nil || k == "":
		fail(child(base, "kind"), "required: every object needs apiVersion and kind, like apiVersion: apps/v1 and kind: Deployment")
		return
	case !kok:
		fail(child(base, "kind"), "want a string, got %s", describe(m["kind"]))
		return
	case m["apiVersion"] != nil && !aok:
		fail(child(base, "apiVersion"), "want a string, got %s", describe(m["apiVersion"]))
		return
	}
	info, supported := supportedKinds[k]
	if !supported {
		version := ""
		if apiVersion != "" {
			version = " (" + apiVersion + ")"
		}
		reason := fmt.Sprintf("kind %q%s is not supported; supported kinds: %s", k, version, supportedKindsText)
		for s := range supportedKinds {
			if strings.EqualFold(s, k) {
				reason += fmt.Sprintf(" (did you mean %q?)", s)
			}
		}
		name = ""
		errs = append(errs, located{FieldError{Field: base, Reason: reason}, child(base, "kind")})
		return
	}
	kind = k
	switch {
	case apiVersion == "":
		fail(child(base, "apiVersion"), "required: %s is %q", kind, info.apiVersion)
		return
	case apiVersion != info.apiVersion:
		fail(child(base, "apiVersion"), "%q is not supported for %s; use %q", apiVersion, kind, info.apiVersion)
		return
	}
	obj = info.new()
	fd := &fieldDecoder{}
	fd.decodeStruct(reflect.ValueOf(obj).Elem(), m, base)
	for _, w := range fd.warns {
		warns = append(warns, located{FieldError{Kind: kind, Name: name, Reason: w.Reason}, w.Field})
	}
	for _, e := range fd.errs {
		fail(e.Field, "%s", e.Reason)
	}
	if len(errs) > 0 {
		return
	}
	SetDefaults(obj)
	name = obj.Meta().Name
	verrs, vwarns := validate(obj)
	verrs = append(verrs, reservedLabels(obj)...)
	for _, e := range verrs {
		e.Field = child(base, e.Field)
		errs = append(errs, located{e, e.Field})
	}
	for _, w := range vwarns {
		w.Field = child(base, w.Field)
		warns = append(warns, located{w, w.Field})
	}
	return
}

// document is one document of a manifest.
type document struct {
	line   int    // line of the source the document starts on, from 1
	text   []byte // the document's YAML or JSON
	value  any    // decoded as generic JSON; nil for an empty document
	syntax string // the syntax error, if the document could not be parsed
	warns  []FieldError

	parsed bool
	root   *yaml3.Node // for line numbers, parsed when first needed
}

// splitDocuments splits data into documents and parses each. tooMany
// reports more than MaxManifestDocuments non-empty documents; then only the
// first ones are returned.
func splitDocuments(data []byte) (docs []*document, tooMany bool) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		jdocs, tooMany, ok := jsonDocuments(data)
		if ok || len(jdocs) > 1 {
			return jdocs, tooMany
		}
		// The first document is not JSON. The manifest may still be YAML
		// starting with a flow mapping.
		ydocs, ytooMany := yamlDocuments(data)
		for _, d := range ydocs {
			if d.syntax != "" {
				return jdocs, tooMany // report the JSON error
			}
		}
		return ydocs, ytooMany
	}
	return yamlDocuments(data)
}

// jsonDocuments reads a stream of JSON values. ok is false if one is not
// valid JSON; the last document then holds the error.
func jsonDocuments(data []byte) (docs []*document, tooMany, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		start := dec.InputOffset()
		for start < int64(len(data)) && strings.IndexByte(" \t\r\n", data[start]) >= 0 {
			start++
		}
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			return docs, false, true
		}
		if err != nil {
			off := start
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = se.Offset
			}
			msg := strings.TrimPrefix(err.Error(), "json: ")
			if errors.Is(err, io.ErrUnexpectedEOF) {
				off = int64(len(data))
				msg = "unexpected end of input"
			}
			line := lineAt(data, off)
			docs = append(docs, &document{line: line, syntax: fmt.Sprintf("json: line %d: %s", line, msg)})
			return docs, false, false
		}
		if v == nil {
			continue
		}
		if len(docs) == MaxManifestDocuments {
			return docs, true, true
		}
		docs = append(docs, &document{line: lineAt(data, start), text: data[start:dec.InputOffset()], value: v})
	}
}

// lineAt returns the line, from 1, of byte offset off of data.
func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// yamlDocuments splits data at "---" lines and parses each document.
func yamlDocuments(data []byte) (docs []*document, tooMany bool) {
	var (
		start     = 0 // offset of the current document
		startLine = 1
		prefix    []byte // content after "---" on the separator line
		line      = 1
	)
	flush := func(end int) {
		text := data[start:end]
		if prefix != nil {
			text = append(append(append([]byte(nil), prefix...), '\n'), text...)
		}
		if !blankYAML(text) {
			docs = append(docs, &document{line: startLine, text: text})
		}
	}
	for pos := 0; pos < len(data) && len(docs) <= MaxManifestDocuments; line++ {
		end := len(data)
		if nl := bytes.IndexByte(data[pos:], '\n'); nl >= 0 {
			end = pos + nl + 1
		}
		l := data[pos:end]
		if bytes.HasPrefix(l, []byte("---")) && (len(l) == 3 || strings.IndexByte(" \t\r\n", l[3]) >= 0) {
			flush(pos)
			start, startLine, prefix = end, line+1, nil
			if rest := bytes.TrimSpace(l[3:]); len(rest) > 0 && rest[0] != '#' {
				prefix, startLine = rest, line
			}
		}
		pos = end
	}
	if len(docs) <= MaxManifestDocuments {
		flush(len(data))
	}
	if len(docs) > MaxManifestDocuments {
		return docs[:MaxManifestDocuments], true
	}
	for _, d := range docs {
		d.parseYAML()
	}
	return docs, false
}

// blankYAML reports whether text holds only blank lines, comments and
// document end markers.
func blankYAML(text []byte) bool {
	for l := range bytes.Lines(text) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && !bytes.Equal(l, []byte("...")) {
			return false
		}
	}
	return true
}

var (
	yamlLineRE = regexp.MustCompile(`\bline (\d+)`)
	dupKeyRE   = regexp.MustCompile(`line (\d+): key "((?:[^"\\]|\\.)*)" already set in map`)
)

// YAMLToJSON converts one YAML document to JSON, refusing, before
// expanding any, the aliases that would expand it beyond
// MaxAliasExpansion (as Decode does): the Kubernetes API's YAML bodies.
func YAMLToJSON(text []byte) ([]byte, error) {
	d := &document{line: 1, text: text}
	if msg := d.aliasBomb(); msg != "" {
		return nil, errors.New(msg)
	}
	return yaml.YAMLToJSON(text)
}

// aliasBomb parses a document with anchors and aliases without expanding
// them, and says why they would expand it beyond the bound ("" when they
// would not, or there are none).
func (d *document) aliasBomb() string {
	if bytes.IndexByte(d.text, '&') < 0 || bytes.IndexByte(d.text, '*') < 0 {
		return ""
	}
	var n yaml3.Node
	if yaml3.Unmarshal(d.text, &n) != nil {
		return ""
	}
	d.parsed, d.root = true, &n
	return d.checkAliases(&n)
}

func (d *document) parseYAML() {
	if msg := d.aliasBomb(); msg != "" {
		d.syntax = msg
		return
	}
	j, err := yaml.YAMLToJSONStrict(d.text)
	if err != nil {
		dups := dupKeyRE.FindAllStringSubmatch(err.Error(), -1)
		j2, err2 := yaml.YAMLToJSON(d.text)
		if len(dups) == 0 || err2 != nil {
			d.syntax = d.yamlError(err)
			return
		}
		j = j2
		for _, m := range dups {
			l, _ := strconv.Atoi(m[1])
			d.warns = append(d.warns, FieldError{Reason: fmt.Sprintf("duplicate key %q; the last value is used", m[2]), Line: d.line + l - 1})
		}
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	if err := dec.Decode(&d.value); err != nil {
		d.syntax = "yaml: " + err.Error()
	}
}

// checkAliases returns why the document's aliases expand it beyond
// MaxAliasExpansion (or refer to the node that holds them), naming the
// alias and its line; "" when they do not.
func (d *document) checkAliases(root *yaml3.Node) string {
	const nodeCost = 16
	const inProgress = -1
	size := map[*yaml3.Node]int64{}
	var msg string
	var total int64 // the expanded size of what was walked so far
	var walk func(n *yaml3.Node) int64
	walk = func(n *yaml3.Node) int64 {
		if n == nil || msg != "" {
			return 0
		}
		if v, ok := size[n]; ok {
			if v == inProgress {
				msg = fmt.Sprintf("yaml: line %d: alias *%s refers to a node that contains it", d.line+n.Line-1, n.Anchor)
				return 0
			}
			return v
		}
		size[n] = inProgress
		var sz int64
		if n.Kind == yaml3.AliasNode {
			sz = walk(n.Alias)
			if n.Alias != nil {
				total += sz
				if total > MaxAliasExpansion && msg == "" {
					msg = fmt.Sprintf("yaml: line %d: alias *%s makes the document expand to more than %d bytes; write the values out, or use fewer aliases",
						d.line+n.Line-1, n.Alias.Anchor, MaxAliasExpansion)
				}
			}
		} else {
			sz = nodeCost + int64(len(n.Value))
			total += sz
			for _, c := range n.Content {
				if msg != "" {
					break
				}
				sz += walk(c)
			}
		}
		size[n] = sz
		return sz
	}
	walk(root)
	return msg
}

// yamlError turns a YAML parser error into a one-line reason with line
// numbers counted from the start of the source.
func (d *document) yamlError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = yamlLineRE.ReplaceAllStringFunc(msg, func(s string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(s, "line "))
		return "line " + strconv.Itoa(d.line+n-1)
	})
	msg = strings.Join(strings.Fields(msg), " ")
	if strings.Contains(msg, "found character that cannot start any token") && bytes.ContainsRune(d.text, '\t') {
		msg += " (YAML does not allow tabs for indentation)"
	}
	return msg
}

// lineOf returns the source line of the node at path (as Decode writes
// paths), or of its deepest ancestor in the document; 0 if not known.
func (d *document) lineOf(path string) int {
	if !d.parsed {
		d.parsed = true
		var n yaml3.Node
		if d.text != nil && yaml3.Unmarshal(d.text, &n) == nil {
			d.root = &n
		}
	}
	if d.root == nil {
		return 0
	}
	node := d.root
	if node.Kind == yaml3.DocumentNode {
		if len(node.Content) == 0 {
			return 0
		}
		node = node.Content[0]
	}
	line := node.Line
walk:
	for _, tok := range splitPath(path) {
		for node.Kind == yaml3.AliasNode && node.Alias != nil {
			node = node.Alias
		}
		switch node.Kind {
		case yaml3.MappingNode:
			for i := 0; i+1 < len(node.Content); i += 2 {
				if node.Content[i].Value == tok {
					line, node = node.Content[i].Line, node.Content[i+1]
					continue walk
				}
			}
			break walk
		case yaml3.SequenceNode:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(node.Content) {
				break walk
			}
			node = node.Content[i]
			line = node.Line
		default:
			break walk
		}
	}
	return d.line + line - 1
}

// splitPath splits a path like spec.containers[0].env or
// metadata.labels[app.kubernetes.io/name] into its keys and indexes.
func splitPath(path string) []string {
	var toks []string
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(toks, path[1:])
			}
			toks = append(toks, path[1:end])
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			toks = append(toks, path[:end])
			path = path[end:]
		}
	}
	return toks
}
