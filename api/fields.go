package api

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file decodes a generic JSON value (maps, slices, json.Number, string,
// bool, nil) into the typed objects, field by field, so that each unknown or
// ignored field becomes a warning with its full path and each type error an
// error with its path, rather than the first of them failing the whole
// document as encoding/json would.

// ignoredFields lists, per type, the fields Kubernetes has and chorus
// accepts but does not act on, with a note for the warning.
var ignoredFields = map[reflect.Type]map[string]string{
	reflect.TypeFor[ObjectMeta](): set("generateName", "selfLink", "deletionTimestamp",
		"deletionGracePeriodSeconds", "finalizers", "clusterName"),
	reflect.TypeFor[Namespace]():      withStatus(set("spec")),
	reflect.TypeFor[Deployment]():     withStatus(nil),
	reflect.TypeFor[Service]():        withStatus(nil),
	reflect.TypeFor[DeploymentSpec](): set("progressDeadlineSeconds"),
	reflect.TypeFor[PodSpec](): set("ephemeralContainers",
		"imagePullSecrets", "affinity", "tolerations", "schedulerName", "priorityClassName", "priority",
		"dnsPolicy", "dnsConfig", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace",
		"hostAliases", "activeDeadlineSeconds", "readinessGates", "runtimeClassName",
		"enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints",
		"setHostnameAsFQDN", "os", "schedulingGates", "resourceClaims", "resources"),
	reflect.TypeFor[Container](): set("volumeDevices",
		"terminationMessagePath", "terminationMessagePolicy", "stdin",
		"stdinOnce", "tty", "resizePolicy"),
	reflect.TypeFor[PodSecurityContext](): set("seLinuxOptions", "windowsOptions", "sysctls", "fsGroupChangePolicy",
		"supplementalGroupsPolicy", "appArmorProfile", "seLinuxChangePolicy"),
	reflect.TypeFor[SecurityContext]():       set("seLinuxOptions", "windowsOptions", "procMount", "appArmorProfile"),
	reflect.TypeFor[ConfigMap]():             withStatus(nil),
	reflect.TypeFor[Job]():                   withStatus(nil),
	reflect.TypeFor[ServiceAccount]():        set(),
	reflect.TypeFor[StatefulSet]():           withStatus(nil),
	reflect.TypeFor[PersistentVolumeClaim](): withStatus(nil),
	reflect.TypeFor[CronJob]():               withStatus(nil),
	reflect.TypeFor[JobSpec](): set("podFailurePolicy", "successPolicy", "backoffLimitPerIndex", "maxFailedIndexes",
		"podReplacementPolicy", "managedBy"),
	reflect.TypeFor[Secret]():      withStatus(nil),
	reflect.TypeFor[VolumeMount](): set("mountPropagation", "subPathExpr", "recursiveReadOnly"),
	reflect.TypeFor[Volume](): set("nfs", "iscsi", "csi", "ephemeral", "image",
		"awsElasticBlockStore", "gcePersistentDisk", "azureDisk", "azureFile", "cephfs", "cinder", "fc", "flexVolume",
		"flocker", "gitRepo", "glusterfs", "photonPersistentDiskVolume", "portworxVolume", "quobyte", "rbd", "scaleIO",
		"storageos", "vsphereVolume"),
	reflect.TypeFor[VolumeProjection]():     set("serviceAccountToken", "clusterTrustBundle", "podCertificate"),
	reflect.TypeFor[ContainerPort]():        set("hostPort", "hostIP"),
	reflect.TypeFor[ResourceRequirements](): set("claims"),
	reflect.TypeFor[Probe]():                set("terminationGracePeriodSeconds"),
	reflect.TypeFor[HTTPGetAction]():        set("httpHeaders"),
	reflect.TypeFor[ServiceSpec](): set("clusterIPs", "externalIPs", "loadBalancerIP", "loadBalancerSourceRanges", "loadBalancerClass",
		"externalName", "externalTrafficPolicy", "internalTrafficPolicy", "healthCheckNodePort",
		"publishNotReadyAddresses", "ipFamilies", "ipFamilyPolicy", "allocateLoadBalancerNodePorts",
		"trafficDistribution"),
	reflect.TypeFor[ServicePort]():      set("appProtocol"),
	reflect.TypeFor[Ingress]():          withStatus(nil),
	reflect.TypeFor[IngressBackend]():   set("resource"),
	reflect.TypeFor[IngressClassSpec](): set("parameters"),
}

const notSupported = "chorus does not support it"

func set(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = notSupported
	}
	return m
}

func withStatus(m map[string]string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m["status"] = "status is reported by chorus, not read from manifests"
	return m
}

var (
	typeIntOrString  = reflect.TypeFor[IntOrString]()
	typeTime         = reflect.TypeFor[time.Time]()
	typeResourceList = reflect.TypeFor[ResourceList]()
)

// fieldDecoder accumulates problems while decoding one object. Paths are
// relative to the document.
type fieldDecoder struct {
	errs  []FieldError // only Field and Reason set
	warns []FieldError
}

func (d *fieldDecoder) fail(path, format string, args ...any) {
	d.errs = append(d.errs, FieldError{Field: path, Reason: fmt.Sprintf(format, args...)})
}

// decode stores raw into v, which must be settable.
func (d *fieldDecoder) decode(v reflect.Value, raw any, path string) {
	if raw == nil { // null: leave the zero value, as encoding/json does
		return
	}
	t := v.Type()
	switch t {
	case typeIntOrString:
		switch r := raw.(type) {
		case string:
			v.Set(reflect.ValueOf(FromString(r)))
		case json.Number:
			n, err := strconv.ParseInt(string(r), 10, 32)
			if err != nil {
				d.fail(path, "want an integer or a string, got %s", describe(raw))
				return
			}
			v.Set(reflect.ValueOf(FromInt(int32(n))))
		default:
			d.fail(path, "want an integer or a string, got %s", describe(raw))
		}
		return
	case typeTime:
		s, ok := raw.(string)
		tm, err := time.Parse(time.RFC3339, s)
		if !ok || err != nil {
			d.fail(path, "want a time like \"2006-01-02T15:04:05Z\" (RFC 3339), got %s", describe(raw))
			return
		}
		v.Set(reflect.ValueOf(tm))
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		p := reflect.New(t.Elem())
		d.decode(p.Elem(), raw, path)
		v.Set(p)
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			d.fail(path, "want an object, got %s", describe(raw))
			return
		}
		d.decodeStruct(v, m, path)
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			d.fail(path, "want an object, got %s", describe(raw))
			return
		}
		out := reflect.MakeMapWithSize(t, len(m))
		for _, k := range sortedKeys(m) {
			ev := reflect.New(t.Elem()).Elem()
			val := m[k]
			if n, isNum := val.(json.Number); isNum && t == typeResourceList {
				val = string(n) // quantities may be bare numbers: cpu: 1
			}
			d.decode(ev, val, keyPath(path, k))
			out.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		v.Set(out)
	case reflect.Slice:
		s, ok := raw.([]any)
		if !ok {
			d.fail(path, "want a list, got %s", describe(raw))
			return
		}
		out := reflect.MakeSlice(t, len(s), len(s))
		for i, e := range s {
			d.decode(out.Index(i), e, index(path, i))
		}
		v.Set(out)
	case reflect.String:
		switch r := raw.(type) {
		case string:
			v.SetString(r)
		case json.Number:
			d.fail(path, "want a string, got %s (put it in quotes: \"%s\")", r, r)
		case bool:
			d.fail(path, "want a string, got %v (YAML reads a bare y, n, yes, no, on, off, true or false as a boolean: put it in quotes)", r)
		default:
			d.fail(path, "want a string, got %s", describe(raw))
		}
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			d.fail(path, "want true or false, got %s", describe(raw))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := raw.(json.Number)
		if !ok {
			d.fail(path, "want an integer, got %s", describe(raw))
			return
		}
		i, err := strconv.ParseInt(string(n), 10, t.Bits())
		if err != nil {
			f, ferr := strconv.ParseFloat(string(n), 64)
			switch {
			case isIntRangeErr(err):
				d.fail(path, "%s is out of range for a %d-bit integer", n, t.Bits())
				return
			case ferr != nil || f != math.Trunc(f):
				d.fail(path, "want an integer, got %s", n)
				return
			case math.Abs(f) >= 1<<62 || v.OverflowInt(int64(f)):
				d.fail(path, "%s is out of range for a %d-bit integer", n, t.Bits())
				return
			}
			i = int64(f) // written 3.0 or 1e3
		}
		v.SetInt(i)
	case reflect.Interface:
		v.Set(reflect.ValueOf(raw))
	default:
		d.fail(path, "cannot decode into %s", t) // not reached for this package's types
	}
}

func isIntRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func (d *fieldDecoder) decodeStruct(v reflect.Value, m map[string]any, path string) {
	t := v.Type()
	info := structFieldsOf(t)
	ignored := ignoredFields[t]
	for _, k := range sortedKeys(m) {
		p := keyPath(path, k)
		if note, ok := ignored[k]; ok {
			// An empty value (the `status: {}` kubectl writes for a
			// claim template, `finalizers: []`) asks for nothing.
			if !emptyValue(m[k]) {
				d.warns = append(d.warns, FieldError{Field: p, Reason: fmt.Sprintf("ignored field %q: %s", p, note)})
			}
			continue
		}
		idx, ok := info.fields[k]
		if !ok {
			reason := fmt.Sprintf("unknown field %q", p)
			if s := suggest(k, info.names, ignored); s != "" {
				reason += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.warns = append(d.warns, FieldError{Field: p, Reason: reason})
			continue
		}
		d.decode(v.FieldByIndex(idx), m[k], p)
	}
}

type structInfo struct {
	fields map[string][]int // JSON name -> field index path
	names  []string
}

var structCache sync.Map // reflect.Type -> *structInfo

// structFieldsOf returns the JSON fields of struct type t, with embedded
// structs that have no JSON name (TypeMeta `json:",inline"`) flattened.
func structFieldsOf(t reflect.Type) *structInfo {
	if info, ok := structCache.Load(t); ok {
		return info.(*structInfo)
	}
	info := &structInfo{fields: map[string][]int{}}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, _, _ := strings.Cut(tag, ",")
			if tag == "-" {
				continue
			}
			idx := append(append([]int(nil), prefix...), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			info.fields[name] = idx
			info.names = append(info.names, name)
		}
	}
	walk(t, nil)
	sort.Strings(info.names)
	structCache.Store(t, info)
	return info
}

// suggest returns the known field name k most likely stands for: one that
// differs only in case, or by at most two edits.
func suggest(k string, names []string, ignored map[string]string) string {
	candidates := append([]string(nil), names...)
	for n := range ignored {
		candidates = append(candidates, n)
	}
	sort.Strings(candidates)
	for _, n := range candidates {
		if strings.EqualFold(n, k) {
			return n
		}
	}
	if len(k) < 4 || len(k) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, n := range candidates {
		if d := editDistance(k, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// describe renders a generic JSON value for a message.
func describe(raw any) string {
	switch r := raw.(type) {
	case nil:
		return "null"
	case string:
		if len(r) > 40 {
			r = r[:40] + "..."
		}
		return strconv.Quote(r)
	case json.Number:
		return string(r)
	case bool:
		return strconv.FormatBool(r)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%T", raw)
}

// emptyValue reports whether a decoded JSON value holds nothing: null, or
// an empty object or list.
func emptyValue(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}
