package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestExpLeave2(t *testing.T) {
	for _, fam := range []string{"A", "B"} {
		worstDiff, worstDiffHeld := -1000, 0
		worst2 := -1000.0
		var sumE, sumH int
		hist := map[int]int{}
		for seed := uint64(0); seed < 20000; seed++ {
			rng := rand.New(rand.NewPCG(seed, 7))
			n := 2 + rng.IntN(150)
			per := []int{1, 2, 3, 5, 10, 20, 50, 100}[rng.IntN(8)]
			nodes := make([]Node, n)
			for i := range nodes {
				nodes[i] = Node{Name: fmt.Sprintf("n-%d-%d", seed, i), Labels: map[string]string{"zone": fmt.Sprint(i % 3), "disk": fmt.Sprint(rng.IntN(2))}}
			}
			var reps []Replica
			gs := max(1, n/10)
			for i := 0; i < n*per; i++ {
				r := Replica{Key: fmt.Sprintf("r-%d-%d", seed, i)}
				if fam != "A" {
					r.Group = fmt.Sprintf("g%d", i/(1+rng.IntN(gs)))
					if rng.IntN(3) == 0 {
						r.SpreadKey = "zone"
					}
				}
				if fam == "C" && rng.IntN(5) == 0 {
					r.NodeSelector = map[string]string{"disk": "1"}
				}
				reps = append(reps, r)
			}
			before := Assign(nodes, reps, Options{})
			i := rng.IntN(n)
			after := Assign(without(nodes, i), reps, Options{})
			m := len(moved(before, after))
			held := 0
			for _, x := range before.Assign {
				if x == nodes[i].Name {
					held++
				}
			}
			e := m - held
			sumE += e
			sumH += held
			if e-held > worstDiff {
				worstDiff, worstDiffHeld = e-held, held
			}
			// e <= a*held + b : find b needed for a=1
			if v := float64(e) - 0.5*float64(held) - 0.25*float64(per); v > worst2 {
				worst2 = v
			}
			hist[e]++
		}
		t.Logf("fam %s: mean extra/held=%.3f worst extra-held=%d (held %d) worst extra-0.5held=%.1f hist=%v", fam, float64(sumE)/float64(sumH), worstDiff, worstDiffHeld, worst2, hist)
	}
}
