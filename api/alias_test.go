package api

import (
	"runtime"
	"strings"
	"testing"
)

// Aliases that would expand a document beyond MaxAliasExpansion are
// refused before anything expands them, with the document and the line.
func TestDecodeRefusesAliasBombs(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	var refs strings.Builder
	for i := range 400 {
		refs.WriteString("    k" + strings.Repeat("a", i%7) + string(rune('a'+i%26)) + itoa(i) + ": *big\n")
	}
	laughs := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		laughs += n + ": &" + n + " [*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + ",*" + prev + "]\n"
		prev = n
	}
	for name, tc := range map[string]struct {
		doc  string
		line string
	}{
		"1 MB string x 400": {"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: b\n  annotations:\n    big: &big " + big + "\n" + refs.String(), "line "},
		"billion laughs":    {laughs, "line "},
		"self reference":    {"a: &a [*a]\n", "refers to a node that contains it"},
	} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err := Decode([]byte(tc.doc), "bomb.yaml")
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.line) || !strings.Contains(err.Error(), "bomb.yaml: document") {
				t.Fatalf("error %q does not say where", err)
			}
			t.Log(err)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
				t.Fatalf("decoding allocated %d MiB", grew>>20)
			}
		})
	}
	// Aliases within the bound still work.
	ok := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: &l {team: x}\n  annotations: *l\n"
	objs, _, err := Decode([]byte(ok), "")
	if err != nil || len(objs) != 1 || objs[0].Meta().Annotations["team"] != "x" {
		t.Fatalf("small alias: %v %v", objs, err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}
