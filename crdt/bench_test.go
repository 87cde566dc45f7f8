package crdt

import (
	"fmt"
	"testing"
)

// benchState returns a state of n deployments written by node at wall.
func benchState(n int, node string, wall int64) *State {
	s := New()
	for i := 0; i < n; i++ {
		s.Put(fmt.Sprintf("Deployment/ns%d/web-%d", i%10, i), deployment(i%5, fmt.Sprintf("web:%d", i)), Stamp{Wall: wall, Node: node})
	}
	return s
}

// BenchmarkMerge1000 merges two states of 1,000 objects that share keys
// and differ in every register.
func BenchmarkMerge1000(b *testing.B) {
	x, y := benchState(1000, "a", 1), benchState(1000, "b", 2)
	d := all(y)
	b.ReportAllocs()
	b.Run("MergeStates", func(b *testing.B) {
		for b.Loop() {
			MergeStates(x, y)
		}
	})
	b.Run("Delta", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			s := x.Clone()
			b.StartTimer()
			s.Merge(d)
		}
	})
}

// BenchmarkDigest1000 measures the digest of a state of 1,000 objects,
// as kept at every write and as computed from scratch.
func BenchmarkDigest1000(b *testing.B) {
	s := benchState(1000, "a", 1)
	b.Run("Digest", func(b *testing.B) {
		for b.Loop() {
			_ = s.Digest()
		}
	})
	b.Run("Rehash", func(b *testing.B) {
		for b.Loop() {
			var d Digest
			for k, o := range s.objs {
				for f, r := range o.regs {
					d[o.bucket] ^= regHash(k, f, r.Register)
				}
			}
		}
	})
	b.Run("BucketKeys8", func(b *testing.B) {
		for b.Loop() {
			s.BucketKeys([]int{0, 8, 16, 24, 32, 40, 48, 56})
		}
	})
}
