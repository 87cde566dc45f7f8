package crdt_test

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/chorus-sh/chorus/crdt"
)

// Two peers apply, scale and exchange state by anti-entropy.
func Example() {
	t0 := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	now := func() time.Time { return t0 }
	clockA, clockB := crdt.NewClock("peer-a", now), crdt.NewClock("peer-b", now)
	a, b := crdt.New(), crdt.New()

	// Peer a applies a manifest.
	fields, err := crdt.Split([]byte(`{"apiVersion":"apps/v1","kind":"Deployment",
		"metadata":{"name":"web","namespace":"default"},
		"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}`))
	if err != nil {
		panic(err)
	}
	const key = "Deployment/default/web"
	a.Put(key, fields, clockA.Now())
	// Peer b, not having heard of it, scales it.
	b.PutFields(key, map[string]json.RawMessage{"spec.replicas": json.RawMessage("3")}, clockB.Now())

	// Anti-entropy: digests, then key hashes of the differing buckets, then
	// the registers of the differing keys, both ways.
	buckets := crdt.DiffDigest(a.Digest(), b.Digest())
	ka, kb := a.BucketKeys(buckets), b.BucketKeys(buckets)
	fromB := b.DeltaFor(crdt.DiffKeys(ka, kb))
	fromA := a.DeltaFor(crdt.DiffKeys(kb, ka))
	a.Merge(fromB)
	b.Merge(fromA)

	got, _ := a.Get(key)
	doc, _ := crdt.Join(key, got)
	fmt.Println(string(doc))
	fmt.Println("in sync:", a.Digest() == b.Digest())
	_, writer := a.Meta(key)
	fmt.Println("last writer:", writer)
	// Output:
	// {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":3,"template":{"spec":{"containers":[{"name":"web","image":"nginx"}]}}}}
	// in sync: true
	// last writer: peer-b
}
