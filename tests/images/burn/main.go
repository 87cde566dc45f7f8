// Command burn is a test container image that uses CPU: it spins on $THREADS
// goroutines (default 1) for $SECONDS seconds (default 0: forever), printing
// a progress line every second, and exits 0 when done.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

func main() {
	threads, seconds := envInt("THREADS", 1), envInt("SECONDS", 0)
	fmt.Printf("burning on %d threads for %ds (0 = forever)\n", threads, seconds)

	var work atomic.Int64
	for range threads {
		go func() {
			x := uint64(1)
			for {
				for range 1_000_000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
				work.Add(int64(x&1) + 1) // depend on x so the loop is kept
			}
		}()
	}

	start := time.Now()
	tick := time.NewTicker(time.Second)
	for now := range tick.C {
		elapsed := int(now.Sub(start).Round(time.Second) / time.Second)
		fmt.Printf("burning: %ds elapsed, %d Mops\n", elapsed, work.Swap(0))
		if seconds > 0 && elapsed >= seconds {
			fmt.Println("done")
			return
		}
	}
}

func envInt(key string, def int) int {
	s := os.Getenv(key)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		fmt.Fprintf(os.Stderr, "bad %s %q\n", key, s)
		os.Exit(2)
	}
	return v
}
