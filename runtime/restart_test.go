package runtime

import (
	"testing"

	"github.com/chorus-sh/chorus/api"
)

func TestRestartContainer(t *testing.T) {
	for _, c := range []struct {
		policy string
		code   int32
		want   bool
	}{
		{"", 0, true}, {"", 1, true},
		{api.RestartAlways, 0, true}, {api.RestartAlways, 137, true},
		{api.RestartOnFailure, 0, false}, {api.RestartOnFailure, 1, true}, {api.RestartOnFailure, 137, true},
		{api.RestartNever, 0, false}, {api.RestartNever, 2, false},
	} {
		if got := restartContainer(c.policy, c.code); got != c.want {
			t.Errorf("restartContainer(%q, %d) = %v, want %v", c.policy, c.code, got, c.want)
		}
	}
}
