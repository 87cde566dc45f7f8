package crdt

import (
	"fmt"
	"path/filepath"
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

// BenchmarkLocalWrite is one local write to a state of n objects, as the
// store makes it: the state cloned, one object changed in the clone, and
// the change made durable, either by rewriting the whole snapshot (Save,
// how every write was saved before the journal) or by appending the delta
// to the journal's log, each with its fsync.
func BenchmarkLocalWrite(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, how := range []string{"snapshot", "journal"} {
			b.Run(fmt.Sprintf("objects=%d/%s", n, how), func(b *testing.B) {
				path := filepath.Join(b.TempDir(), "state")
				j, _, err := OpenJournal(path)
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				s := benchState(n, "a", 1)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					i++
					next := s.Clone()
					d := next.Put(fmt.Sprintf("Deployment/ns%d/web-%d", i%10, i%n), deployment(i%5, "web:2"), Stamp{Wall: int64(i + 1), Node: "a"})
					if how == "snapshot" {
						err = next.Save(path)
					} else {
						err = j.Append(d, true)
					}
					if err != nil {
						b.Fatal(err)
					}
					s = next
				}
			})
		}
	}
}
