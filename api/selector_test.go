package api

import "testing"

func TestLabelSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		name string
		sel  *LabelSelector
		want bool
	}{
		{"nil", nil, false},
		{"empty", &LabelSelector{}, false},
		{"matchLabels", &LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"matchLabels all", &LabelSelector{MatchLabels: labels}, true},
		{"matchLabels other value", &LabelSelector{MatchLabels: map[string]string{"app": "api"}}, false},
		{"matchLabels missing key", &LabelSelector{MatchLabels: map[string]string{"zone": "a"}}, false},
		{"In", sel("app", OpIn, "api", "web"), true},
		{"In no", sel("app", OpIn, "api"), false},
		{"In missing", sel("zone", OpIn, "a"), false},
		{"NotIn", sel("app", OpNotIn, "api"), true},
		{"NotIn no", sel("app", OpNotIn, "web"), false},
		{"NotIn missing", sel("zone", OpNotIn, "a"), true},
		{"Exists", sel("tier", OpExists), true},
		{"Exists no", sel("zone", OpExists), false},
		{"DoesNotExist", sel("zone", OpDoesNotExist), true},
		{"DoesNotExist no", sel("app", OpDoesNotExist), false},
		{"unknown operator", sel("app", "Equals", "web"), false},
		{"both", &LabelSelector{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: sel("tier", OpIn, "back").MatchExpressions}, false},
	}
	for _, tt := range tests {
		if got := tt.sel.Matches(labels); got != tt.want {
			t.Errorf("%s: Matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func sel(key, op string, values ...string) *LabelSelector {
	return &LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front"}
	for _, tt := range []struct {
		sel  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{}, false},
		{map[string]string{"app": "web"}, true},
		{map[string]string{"app": "web", "tier": "front"}, true},
		{map[string]string{"app": "web", "tier": "back"}, false},
		{map[string]string{"zone": ""}, false},
	} {
		if got := SelectorMatches(tt.sel, labels); got != tt.want {
			t.Errorf("SelectorMatches(%v) = %v, want %v", tt.sel, got, tt.want)
		}
	}
	if SelectorMatches(map[string]string{"app": "web"}, nil) {
		t.Error("matched nil labels")
	}
}
