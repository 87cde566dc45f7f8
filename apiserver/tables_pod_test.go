package apiserver

import (
	"encoding/json"
	"testing"
	"time"
)

// STATUS and READY of pods with init containers and sidecars, as kubectl's
// printPod prints them.
func TestPodStatusColumn(t *testing.T) {
	const spec = `"spec":{"initContainers":[{"name":"a"},{"name":"side","restartPolicy":"Always"},{"name":"b"}],"containers":[{"name":"app"}]}`
	for _, c := range []struct{ status, want, ready string }{
		{`{"phase":"Pending","initContainerStatuses":[{"name":"a","state":{"waiting":{"reason":"PodInitializing"}}}]}`, "Init:0/3", "0/2"},
		{`{"phase":"Pending","initContainerStatuses":[{"name":"a","state":{"terminated":{"exitCode":0,"reason":"Completed"}}},
			{"name":"side","started":true,"ready":true,"state":{"running":{}}},{"name":"b","state":{"running":{}}}]}`, "Init:2/3", "1/2"},
		{`{"phase":"Pending","initContainerStatuses":[{"name":"a","state":{"terminated":{"exitCode":1,"reason":"Error"}}}]}`, "Init:Error", "0/2"},
		{`{"phase":"Pending","initContainerStatuses":[{"name":"a","state":{"terminated":{"exitCode":3}}}]}`, "Init:ExitCode:3", "0/2"},
		{`{"phase":"Pending","initContainerStatuses":[{"name":"a","restartCount":2,"state":{"waiting":{"reason":"CrashLoopBackOff"}}}]}`, "Init:CrashLoopBackOff", "0/2"},
		{`{"phase":"Running","conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}],
			"initContainerStatuses":[{"name":"a","state":{"terminated":{"exitCode":0,"reason":"Completed"}}},
			{"name":"side","started":true,"ready":true,"state":{"running":{}}},{"name":"b","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}],
			"containerStatuses":[{"name":"app","ready":true,"state":{"running":{}}}]}`, "Running", "2/2"},
		{`{"phase":"Pending","conditions":[{"type":"Initialized","status":"True"}],
			"containerStatuses":[{"name":"app","state":{"waiting":{"reason":"ErrImageNeverPull"}}}]}`, "ErrImageNeverPull", "0/2"},
	} {
		var o map[string]any
		if err := json.Unmarshal([]byte(`{`+spec+`,"status":`+c.status+`}`), &o); err != nil {
			t.Fatal(err)
		}
		if got := podStatus(o, time.Now()); got != c.want {
			t.Errorf("status %s: STATUS %q, want %q", c.status, got, c.want)
		}
		if got := podReady(o, time.Now()); got != c.ready {
			t.Errorf("status %s: READY %q, want %q", c.status, got, c.ready)
		}
	}
}
