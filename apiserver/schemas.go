package apiserver

import (
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// schemas builds OpenAPI v3 component schemas from the k8s.io/api Go
// types by reflection, with the descriptions their generated SwaggerDoc
// methods carry, as kube-apiserver publishes them (named like
// io.k8s.api.apps.v1.Deployment). kubectl explain reads them.
type schemas struct {
	defs map[string]any
}

func newSchemas() *schemas { return &schemas{defs: map[string]any{}} }

// defName is the OpenAPI name of a Go type: its package path with the
// domain reversed, then the type name.
func defName(t reflect.Type) string {
	pkg := t.PkgPath()
	domain, rest, _ := strings.Cut(pkg, "/")
	labels := strings.Split(domain, ".")
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	return strings.Join(labels, ".") + "." + strings.ReplaceAll(rest, "/", ".") + "." + t.Name()
}

var (
	timeType      = reflect.TypeFor[metav1.Time]()
	microTimeType = reflect.TypeFor[metav1.MicroTime]()
	durationType  = reflect.TypeFor[metav1.Duration]()
	quantityType  = reflect.TypeFor[resource.Quantity]()
	intOrStrType  = reflect.TypeFor[intstr.IntOrString]()
	rawExtType    = reflect.TypeFor[runtime.RawExtension]()
)

// schemaOf returns the schema of a value of type t: inline for scalars,
// arrays and maps, a reference for structs (whose definition is added).
func (s *schemas) schemaOf(t reflect.Type) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType, microTimeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case durationType:
		return map[string]any{"type": "string"}
	case quantityType, intOrStrType:
		return map[string]any{"x-kubernetes-int-or-string": true, "anyOf": []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}}}
	case rawExtType:
		return map[string]any{"type": "object"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int32, reflect.Uint32, reflect.Int16, reflect.Uint16, reflect.Int8, reflect.Uint8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": s.schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.schemaOf(t.Elem())}
	case reflect.Struct:
		name := defName(t)
		if _, ok := s.defs[name]; !ok {
			s.defs[name] = nil // a cycle stops here
			s.defs[name] = s.structDef(t)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

// structDef is the definition of a struct type: its JSON fields, inline
// embedded structs merged.
func (s *schemas) structDef(t reflect.Type) map[string]any {
	docs := swaggerDoc(t)
	props := map[string]any{}
	s.addFields(t, props)
	def := map[string]any{"type": "object", "properties": props}
	if d := docs[""]; d != "" {
		def["description"] = d
	}
	return def
}

func (s *schemas) addFields(t reflect.Type, props map[string]any) {
	docs := swaggerDoc(t)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				s.addFields(ft, props)
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs := s.schemaOf(f.Type)
		if ref, ok := fs["$ref"]; ok {
			// As kube-apiserver writes it: a description can sit next to
			// an allOf, not next to a bare reference.
			fs = map[string]any{"allOf": []any{map[string]any{"$ref": ref}}}
		}
		if d := docs[name]; d != "" {
			fs["description"] = d
		}
		// How a list merges (by key, as a set, replaced whole), from the
		// k8s.io/api tags kube-apiserver's schemas are generated from:
		// server-side apply merges by it.
		if ps := f.Tag.Get("patchStrategy"); ps != "" && f.Type.Kind() == reflect.Slice {
			fs["x-kubernetes-patch-strategy"] = ps
			if k := f.Tag.Get("patchMergeKey"); k != "" {
				fs["x-kubernetes-patch-merge-key"] = k
			}
		}
		props[name] = fs
	}
}

// swaggerDoc returns the descriptions a k8s.io/api type carries in its
// generated SwaggerDoc method ("" for the type, JSON names for fields).
func swaggerDoc(t reflect.Type) map[string]string {
	m, ok := t.MethodByName("SwaggerDoc")
	if !ok || m.Type.NumIn() != 1 || m.Type.NumOut() != 1 {
		return nil
	}
	out := m.Func.Call([]reflect.Value{reflect.New(t).Elem()})
	docs, _ := out[0].Interface().(map[string]string)
	return docs
}

// componentsFor returns the schemas of the resources given, each top-level
// definition marked with its group, version and kind.
func componentsFor(rs []*Resource) map[string]any {
	s := newSchemas()
	for _, r := range rs {
		s.schemaOf(r.Type)
	}
	out := make(map[string]any, len(s.defs))
	for name, def := range s.defs {
		out[name] = def
	}
	for _, r := range rs {
		if def, ok := out[defName(r.Type)].(map[string]any); ok {
			def["x-kubernetes-group-version-kind"] = []any{map[string]string{"group": r.Group, "version": r.Version, "kind": r.Kind}}
		}
	}
	return out
}
