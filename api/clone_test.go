package api

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestCloneIsDeepCopy: Clone gives what the JSON round trip (DeepCopy)
// gives, for random pods, pod specs and label maps; compared with
// reflect.DeepEqual, so a nil map is not an empty one and a time's
// location and monotonic reading count; and the copy shares no memory
// with the original.
func TestCloneIsDeepCopy(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := randomValue(t, reflect.TypeFor[Pod](), "pod").Interface().(Pod)
		want, got := DeepCopy(p), Clone(p)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Clone and DeepCopy differ at %s", firstDiff(reflect.ValueOf(got), reflect.ValueOf(want), ""))
		}
		spec := randomValue(t, reflect.TypeFor[PodSpec](), "spec").Interface().(PodSpec)
		if got, want := Clone(spec), DeepCopy(spec); !reflect.DeepEqual(got, want) {
			t.Fatalf("Clone and DeepCopy differ at %s", firstDiff(reflect.ValueOf(got), reflect.ValueOf(want), ""))
		}
		labels := randomValue(t, reflect.TypeFor[map[string]string](), "labels").Interface().(map[string]string)
		if got, want := Clone(labels), DeepCopy(labels); !reflect.DeepEqual(got, want) {
			t.Fatalf("Clone and DeepCopy differ at %s", firstDiff(reflect.ValueOf(got), reflect.ValueOf(want), ""))
		}
		// Changing the copy leaves the original as it was.
		before := DeepCopy(p)
		scribble(reflect.ValueOf(&got).Elem())
		if !reflect.DeepEqual(DeepCopy(p), before) {
			t.Fatalf("changing the clone changed the original")
		}
	})
}

// TestCloneKeepsWhatJSONKeeps pins cases a random pod reaches rarely.
func TestCloneKeepsWhatJSONKeeps(t *testing.T) {
	local := time.Date(2026, 12, 2, 12, 0, 0, 5, time.FixedZone("X", 3600))
	empty := []string{}
	var nilSlice []string
	p := Pod{
		Metadata: ObjectMeta{Name: "a\xffb", Labels: map[string]string{}, CreationTimestamp: &local,
			ManagedFields: []ManagedFieldsEntry{{FieldsV1: map[string]any{"f:spec": map[string]any{"n": 1}}}}},
		Spec: PodSpec{Containers: []Container{{Name: "c", Command: empty, Args: nilSlice,
			Ports: []ContainerPort{}}}},
	}
	now := time.Now()
	p.Status.StartTime = &now
	got, want := Clone(p), DeepCopy(p)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Clone and DeepCopy differ at %s", firstDiff(reflect.ValueOf(got), reflect.ValueOf(want), ""))
	}
	if got.Metadata.Labels != nil || got.Metadata.Name != "a\ufffdb" || got.Status.StartTime.Equal(now) == false {
		t.Fatalf("Clone: %#v", got)
	}
	if _, ok := got.Metadata.ManagedFields[0].FieldsV1.(map[string]any)["f:spec"].(map[string]any)["n"].(float64); !ok {
		t.Fatalf("FieldsV1 not as JSON decodes it: %#v", got.Metadata.ManagedFields[0].FieldsV1)
	}
}

// randomValue draws a value of type typ, every field filled or left empty
// at random: nil, empty and full maps and slices, times in and out of UTC
// with and without a monotonic reading, strings that are not UTF-8,
// IntOrStrings with both halves set, generic JSON in interface fields.
func randomValue(t *rapid.T, typ reflect.Type, label string) reflect.Value {
	v := reflect.New(typ).Elem()
	switch typ {
	case reflect.TypeFor[time.Time]():
		tm := time.Unix(rapid.Int64Range(-62135596800+13*3600, 253402300799-13*3600).Draw(t, label+".sec"),
			rapid.Int64Range(0, 999999999).Draw(t, label+".nsec"))
		switch rapid.IntRange(0, 3).Draw(t, label+".zone") {
		case 0:
			tm = tm.UTC()
		case 1:
			tm = tm.In(time.FixedZone("Z1", rapid.IntRange(-12, 12).Draw(t, label+".offset")*3600))
		case 2:
			tm = time.Now().UTC() // monotonic reading
		case 3:
			tm = time.Now() // local, monotonic
		}
		v.Set(reflect.ValueOf(tm))
		return v
	case reflect.TypeFor[IntOrString]():
		v.Set(reflect.ValueOf(IntOrString{IsString: rapid.Bool().Draw(t, label+".isString"),
			IntVal: rapid.Int32().Draw(t, label+".int"), StrVal: rapid.String().Draw(t, label+".str")}))
		return v
	}
	switch typ.Kind() {
	case reflect.Bool:
		v.SetBool(rapid.Bool().Draw(t, label))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(rapid.Int64Range(-1<<(typ.Bits()-1), 1<<(typ.Bits()-1)-1).Draw(t, label))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(rapid.Uint64Range(0, 1<<typ.Bits()-1).Draw(t, label))
	case reflect.Float32, reflect.Float64:
		v.SetFloat(rapid.Float64Range(-1e9, 1e9).Draw(t, label))
	case reflect.String:
		s := rapid.String().Draw(t, label)
		if rapid.IntRange(0, 9).Draw(t, label+".invalid") == 0 {
			s += "\xff"
		}
		v.SetString(s)
	case reflect.Pointer:
		if rapid.Bool().Draw(t, label+".nil") {
			return v
		}
		p := reflect.New(typ.Elem())
		p.Elem().Set(randomValue(t, typ.Elem(), label+"*"))
		v.Set(p)
	case reflect.Slice:
		n := rapid.IntRange(-1, 2).Draw(t, label+".len")
		if n < 0 {
			return v
		}
		v.Set(reflect.MakeSlice(typ, n, n))
		for i := range n {
			v.Index(i).Set(randomValue(t, typ.Elem(), fmt.Sprintf("%s[%d]", label, i)))
		}
	case reflect.Map:
		n := rapid.IntRange(-1, 2).Draw(t, label+".len")
		if n < 0 {
			return v
		}
		v.Set(reflect.MakeMap(typ))
		for i := range n {
			k := randomValue(t, typ.Key(), fmt.Sprintf("%s.key%d", label, i))
			v.SetMapIndex(k, randomValue(t, typ.Elem(), fmt.Sprintf("%s[%d]", label, i)))
		}
	case reflect.Struct:
		for i := range typ.NumField() {
			if typ.Field(i).IsExported() {
				v.Field(i).Set(randomValue(t, typ.Field(i).Type, label+"."+typ.Field(i).Name))
			}
		}
	case reflect.Interface:
		if j := randomJSON(t, label, 2); j != nil {
			v.Set(reflect.ValueOf(j))
		}
	default:
		t.Fatalf("%s: no generator for %s", label, typ)
	}
	return v
}

// randomJSON draws what an interface field may hold: nil, JSON's scalar
// types, an int (which JSON turns into a float64), objects and arrays.
func randomJSON(t *rapid.T, label string, depth int) any {
	kinds := 5
	if depth > 0 {
		kinds = 7
	}
	switch rapid.IntRange(0, kinds-1).Draw(t, label+".kind") {
	case 0:
		return nil
	case 1:
		return rapid.String().Draw(t, label+".s")
	case 2:
		return rapid.Float64Range(-1e6, 1e6).Draw(t, label+".f")
	case 3:
		return rapid.Bool().Draw(t, label+".b")
	case 4:
		return rapid.Int().Draw(t, label+".i")
	case 5:
		m := map[string]any{}
		for i := range rapid.IntRange(0, 2).Draw(t, label+".len") {
			m[rapid.String().Draw(t, fmt.Sprintf("%s.key%d", label, i))] = randomJSON(t, label+".v", depth-1)
		}
		return m
	default:
		var a []any
		for range rapid.IntRange(0, 2).Draw(t, label+".len") {
			a = append(a, randomJSON(t, label+".e", depth-1))
		}
		return a
	}
}

// scribble changes every string, number and map it reaches in v.
func scribble(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() && v.Elem().CanSet() {
			scribble(v.Elem())
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			scribble(v.Index(i))
		}
	case reflect.Map:
		if !v.IsNil() && v.Type().Key().Kind() == reflect.String {
			v.SetMapIndex(reflect.ValueOf("scribbled").Convert(v.Type().Key()), reflect.New(v.Type().Elem()).Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1, 0)))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				scribble(v.Field(i))
			}
		}
	case reflect.String:
		v.SetString(v.String() + "!")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() ^ 1)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	}
}

// firstDiff returns the path of a place where a and b differ, for failure
// messages.
func firstDiff(a, b reflect.Value, path string) string {
	if a.IsValid() != b.IsValid() || (a.IsValid() && a.Type() != b.Type()) {
		return path + ": types differ"
	}
	if !a.IsValid() || reflect.DeepEqual(a.Interface(), b.Interface()) {
		return ""
	}
	switch a.Kind() {
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return fmt.Sprintf("%s: %v against %v", path, a, b)
		}
		return firstDiff(a.Elem(), b.Elem(), path+"*")
	case reflect.Slice, reflect.Array:
		if a.Kind() == reflect.Slice && (a.IsNil() != b.IsNil() || a.Len() != b.Len()) {
			return fmt.Sprintf("%s: %#v against %#v", path, a, b)
		}
		for i := range a.Len() {
			if d := firstDiff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
				return d
			}
		}
	case reflect.Struct:
		if a.Type() != reflect.TypeFor[time.Time]() {
			for i := range a.NumField() {
				if a.Type().Field(i).IsExported() {
					if d := firstDiff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
						return d
					}
				}
			}
		}
	}
	return fmt.Sprintf("%s: %#v against %#v", path, a, b)
}

// BenchmarkClone compares Clone with DeepCopy on a pod as the agent holds
// one of the web deployment's.
func BenchmarkClone(b *testing.B) {
	now := time.Now().UTC()
	p := Pod{TypeMeta: TypeMeta{APIVersion: "v1", Kind: KindPod},
		Metadata: ObjectMeta{Name: "web-7d9f-abcde", Namespace: "default", UID: "0b7c5f1e-8a61-4d1c-9d7e-3f5b2a1c0d9e",
			CreationTimestamp: &now, Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f"},
			OwnerReferences: []OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", UID: "u"}}},
		Spec: PodSpec{NodeName: "node-1", Containers: []Container{{Name: "web", Image: "example/web:1",
			Env:            []EnvVar{{Name: "PORT", Value: "8080"}},
			Ports:          []ContainerPort{{ContainerPort: 8080}},
			ReadinessProbe: &Probe{PeriodSeconds: 1, HTTPGet: &HTTPGetAction{Path: "/ready", Port: FromInt(8080)}}}}},
		Status: PodStatus{Phase: PodRunning, PodIP: "10.88.0.2", StartTime: &now,
			Conditions: []PodCondition{{Type: "Ready", Status: "True", LastTransitionTime: &now}}},
	}
	for _, c := range []struct {
		name string
		copy func(Pod) Pod
	}{{"DeepCopy", DeepCopy[Pod]}, {"Clone", Clone[Pod]}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = c.copy(p)
			}
		})
	}
}
