package agent

import (
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func TestMergeEvents(t *testing.T) {
	at := func(s int) *time.Time { v := time.Unix(int64(s), 0); return &v }
	pod := api.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-0"}
	evs := []api.Event{
		{InvolvedObject: pod, Reason: "FailedScheduling", Message: "0/3 nodes", Count: 2, LastTimestamp: at(20), Source: api.EventSource{Host: "a"}},
		{InvolvedObject: pod, Reason: "Started", Message: "Started container web", Count: 1, LastTimestamp: at(5)},
		{InvolvedObject: pod, Reason: "FailedScheduling", Message: "0/3 nodes", Count: 5, LastTimestamp: at(10), Source: api.EventSource{Host: "b"}},
		{InvolvedObject: pod, Reason: "Pulled", LastTimestamp: nil},
	}
	got := mergeEvents(evs)
	if len(got) != 2 || got[0].Reason != "Started" || got[1].Reason != "FailedScheduling" {
		t.Fatalf("merged: %+v", got)
	}
	if got[1].Count != 5 || got[1].Source.Host != "a" || !got[1].LastTimestamp.Equal(*at(20)) {
		t.Fatalf("the repeated event should keep its latest copy and the largest count: %+v", got[1])
	}
}
