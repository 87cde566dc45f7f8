package api

import (
	"encoding"
	"encoding/json"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"
)

// Clone returns what DeepCopy returns, the value a JSON round trip of v
// gives, without encoding anything: it walks v by reflection and copies
// what JSON would carry, so it allocates only the copy. As DeepCopy:
// unexported fields and fields tagged "-" are not copied, fields tagged
// omitempty that are empty come back zero (an empty map or slice as nil),
// a pointer to a nil map, slice or pointer comes back nil, a time loses
// its monotonic reading, an IntOrString keeps only the half it holds.
// Values that encode themselves (other json or text marshalers, interface
// values, times not in UTC, strings that are not valid UTF-8) go through
// JSON, so the result is the same. It panics where DeepCopy panics, except
// on a value that points to itself (which nothing decoded from JSON does),
// where it recurses without end. Not handled as JSON handles them: fields
// promoted from two embedded structs under the same name (no type of this
// package has any); TestCloneIsDeepCopy checks pods, pod specs and maps.
func Clone[T any](v T) T {
	var out T
	dst := reflect.ValueOf(&out).Elem()
	if dst.Kind() == reflect.Interface {
		roundTrip(dst, reflect.ValueOf(&v).Elem())
		return out
	}
	// v as JSON sees it: not addressable, so that methods with a pointer
	// receiver apply where they apply for JSON.
	cloneValue(dst, reflect.ValueOf(v))
	return out
}

// cloneValue sets dst, settable and zero, to the JSON round trip of src.
func cloneValue(dst, src reflect.Value) {
	t := src.Type()
	switch t {
	case reflect.TypeFor[time.Time]():
		tm := src.Interface().(time.Time)
		if tm.Location() == time.UTC && tm.Year() >= 0 && tm.Year() <= 9999 {
			dst.Set(reflect.ValueOf(tm.Round(0).UTC()))
			return
		}
		roundTrip(dst, src)
		return
	case reflect.TypeFor[IntOrString]():
		v := src.Interface().(IntOrString)
		if v.IsString {
			v = FromString(v.StrVal)
		} else {
			v = FromInt(v.IntVal)
		}
		if !utf8.ValidString(v.StrVal) {
			roundTrip(dst, src)
			return
		}
		dst.Set(reflect.ValueOf(v))
		return
	}
	if mayEncodeItself(t) && t.Kind() != reflect.Pointer && encodesItself(t, src.CanAddr()) {
		roundTrip(dst, src)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if src.IsNil() || encodesNull(src.Elem()) {
			return
		}
		p := reflect.New(t.Elem())
		cloneValue(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Interface:
		if !src.IsNil() {
			roundTrip(dst, src)
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		if t.Elem().Kind() == reflect.Uint8 && !encodesItself(t.Elem(), true) {
			// []byte: base64 and back, a new slice of the same bytes.
			b := reflect.MakeSlice(t, src.Len(), src.Len())
			reflect.Copy(b, src)
			dst.Set(b)
			return
		}
		s := reflect.MakeSlice(t, src.Len(), src.Len())
		for i := range src.Len() {
			cloneValue(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Array:
		for i := range src.Len() {
			cloneValue(dst.Index(i), src.Index(i))
		}
	case reflect.Map:
		if src.IsNil() {
			return
		}
		if t.Key().Kind() != reflect.String || encodesItself(t.Key(), false) {
			roundTrip(dst, src)
			return
		}
		m := reflect.MakeMapWithSize(t, src.Len())
		it := src.MapRange()
		for it.Next() {
			k := it.Key()
			if !utf8.ValidString(k.String()) {
				roundTrip(dst, src)
				return
			}
			e := reflect.New(t.Elem()).Elem()
			cloneValue(e, it.Value())
			m.SetMapIndex(k, e)
		}
		dst.Set(m)
	case reflect.Struct:
		cloneStruct(dst, src)
	case reflect.String:
		if !utf8.ValidString(src.String()) {
			roundTrip(dst, src) // JSON replaces each invalid byte
			return
		}
		dst.Set(src)
	case reflect.Float32, reflect.Float64, reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		roundTrip(dst, src) // as JSON does, or panics as it does
	default: // booleans and integers
		dst.Set(src)
	}
}

// cloneStruct copies the fields of a struct that JSON carries.
func cloneStruct(dst, src reflect.Value) {
	t := src.Type()
	for i := range src.NumField() {
		sv := src.Field(i)
		if sv.IsZero() && !mayEncodeItself(sv.Type()) && sv.Kind() != reflect.Array {
			continue // unexported, or null, false, 0 or "", which decode to the zero value
		}
		f := t.Field(i)
		if f.Anonymous && (!f.IsExported() || f.Type.Kind() == reflect.Pointer) {
			// promoted fields through an unexported or pointer
			// embedding: leave the whole struct to JSON.
			roundTrip(dst, src)
			return
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		_, opts, _ := strings.Cut(tag, ",")
		if hasOption(opts, "omitzero") {
			roundTrip(dst, src) // not used by this package; JSON knows the rules
			return
		}
		if hasOption(opts, "omitempty") && isEmpty(sv) {
			continue
		}
		cloneValue(dst.Field(i), sv)
	}
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}

// isEmpty is what omitempty leaves out.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Interface, reflect.Pointer:
		return v.IsZero()
	}
	return false
}

// encodesNull reports whether v encodes as JSON null without methods of
// its own, so that a pointer to it comes back nil.
func encodesNull(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface:
		return v.IsNil() && !encodesItself(v.Type(), true)
	}
	return false
}

// mayEncodeItself reports whether t may have methods, so that JSON may
// encode it otherwise than by its kind: false for predeclared types and
// for types without a name other than structs (*T, []T, map[K]V, any),
// which have none.
func mayEncodeItself(t reflect.Type) bool {
	return t.PkgPath() != "" || t.Kind() == reflect.Struct
}

// encodesItself reports whether JSON encodes or decodes values of t
// through methods of t (or of *t, when addressable).
func encodesItself(t reflect.Type, addressable bool) bool {
	for _, m := range []reflect.Type{
		reflect.TypeFor[json.Marshaler](), reflect.TypeFor[encoding.TextMarshaler](),
	} {
		if t.Implements(m) || (addressable && reflect.PointerTo(t).Implements(m)) {
			return true
		}
	}
	for _, m := range []reflect.Type{
		reflect.TypeFor[json.Unmarshaler](), reflect.TypeFor[encoding.TextUnmarshaler](),
	} {
		if reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}

// roundTrip sets dst to src through JSON, as DeepCopy does.
func roundTrip(dst, src reflect.Value) {
	dst.SetZero()
	in := src.Interface()
	if src.CanAddr() {
		in = src.Addr().Interface()
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic("api.Clone: " + err.Error())
	}
	if err := json.Unmarshal(b, dst.Addr().Interface()); err != nil {
		panic("api.Clone: " + err.Error())
	}
}
