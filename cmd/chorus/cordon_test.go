package main

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDrain: drain cordons the node with kubectl's merge patch, then waits
// until the Kubernetes API lists no pod on it.
func TestDrain(t *testing.T) {
	f := newFakeAgent(t)
	f.reply("PATCH /api/v1/nodes/n1", http.StatusOK, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	var lists atomic.Int32
	f.mux.HandleFunc("GET /api/v1/pods", func(w http.ResponseWriter, r *http.Request) {
		l := corev1.PodList{Items: []corev1.Pod{}}
		if lists.Add(1) == 1 {
			l.Items = append(l.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1",
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-h"}}}, Spec: corev1.PodSpec{NodeName: "n1"}})
		}
		// A stateful set's pod is bound to its peer: said once, not waited for.
		l.Items = append(l.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db-0",
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db"}}}, Spec: corev1.PodSpec{NodeName: "n1"}})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l)
	})
	r := f.run("drain", "n1")
	want := "node/n1 cordoned\npod/db-0 stays: a pod bound to its peer (a stateful set's, a job's or a bare pod) moves only when the peer leaves (chorus leave) or the pod is deleted\n" +
		"evicting pod default/web-1\npod/web-1 moved\nnode/n1 drained\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("%+v", r)
	}
	reqs := f.requests()
	if reqs[0].method != http.MethodPatch || reqs[0].contentType != "application/merge-patch+json" || string(reqs[0].body) != `{"spec":{"unschedulable":true}}` {
		t.Fatalf("cordon request %+v", reqs[0])
	}
	if reqs[1].query != "fieldSelector=spec.nodeName%3Dn1" {
		t.Fatalf("pods request %+v", reqs[1])
	}
	// A node that does not exist: the patch's 404, and nothing waited for.
	if r := f.run("drain", "n2"); r.code != 1 || r.stdout != "" {
		t.Fatalf("unknown node: %+v", r)
	}
}
