package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestExpLeave(t *testing.T) {
	for _, n := range []int{3, 5, 10, 20, 50, 100, 200} {
		for _, per := range []int{1, 2, 5, 10, 30, 100} {
			for _, grp := range []int{0, 3, 10} {
				var sumMoved, sumHeld, worst, worstHeld int
				var worstRatio float64
				trials := 0
				for seed := uint64(0); seed < 5; seed++ {
					rng := rand.New(rand.NewPCG(seed, uint64(n*1000+per)))
					nodes := make([]Node, n)
					for i := range nodes {
						nodes[i] = Node{Name: fmt.Sprintf("n-%d-%d", seed, i), Labels: map[string]string{"zone": fmt.Sprint(i % 3)}}
					}
					var reps []Replica
					for i := 0; i < n*per; i++ {
						r := Replica{Key: fmt.Sprintf("r-%d-%d", seed, i)}
						if grp > 0 {
							r.Group = fmt.Sprintf("g%d", i/grp)
						}
						reps = append(reps, r)
					}
					before := Assign(nodes, reps, Options{})
					for k := 0; k < min(n, 10); k++ {
						i := rng.IntN(n)
						after := Assign(without(nodes, i), reps, Options{})
						m := len(moved(before, after))
						held := 0
						for _, x := range before.Assign {
							if x == nodes[i].Name {
								held++
							}
						}
						sumMoved += m
						sumHeld += held
						if m-held > worst {
							worst = m - held
							worstHeld = held
						}
						if held > 0 && float64(m-held)/float64(held) > worstRatio {
							worstRatio = float64(m-held) / float64(held)
						}
						trials++
					}
				}
				t.Logf("N=%3d R/N=%3d grp=%2d  mean extra/held=%.3f  worst extra=%d (held %d) worst ratio=%.2f  extra/R=%.4f",
					n, per, grp, float64(sumMoved-sumHeld)/float64(sumHeld), worst, worstHeld, worstRatio, float64(sumMoved-sumHeld)/float64(trials*n*per))
			}
		}
	}
}
