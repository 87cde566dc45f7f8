// Package apiserver serves the Kubernetes API from one peer's replica of the
// desired state, so that kubectl, helm, client-go programs and dashboards
// work against any chorus peer.
//
// It is written on k8s.io/apimachinery rather than by embedding
// k8s.io/apiserver (see docs/ARCHITECTURE.md): discovery (/api, /apis,
// /version), a small OpenAPI v3 document per group-version (enough for
// kubectl's server-side field validation and patch choice), list, get,
// watch, create, update, patch (JSON, merge, strategic merge, apply) and
// delete for every served resource, Table answers for `kubectl get`, and
// the scale and status subresources.
//
// Objects come from a Backend (the agent) as JSON documents in their
// Kubernetes shapes. A cache on this peer diffs successive listings and
// gives each change a resourceVersion: a decimal number that grows on this
// peer, whose last three digits name the peer, so a version handed out by
// another peer is recognised and answered with 410 Gone (clients relist).
// Writes go back to the Backend, which turns an update into writes of the
// changed fields only, so that concurrent edits of different fields through
// different peers all survive.
package apiserver
