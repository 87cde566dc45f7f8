package placement

import "testing"

func BenchmarkSaturated(b *testing.B) {
	nodes, replicas := cluster(1, 5000, 1_000_000)
	for i := range nodes {
		nodes[i].CPUMilli = 96000
		nodes[i].MemBytes = 128 << 30
	}
	b.ResetTimer()
	var res Result
	for b.Loop() {
		res = Assign(nodes, replicas, Options{})
	}
	b.ReportMetric(float64(len(res.Pending)), "pending")
}
