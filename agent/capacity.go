package agent

import (
	"bytes"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
)

// capacity reads the machine's CPUs and memory.
func capacity() map[string]string {
	c := map[string]string{"cpu": strconv.Itoa(numCPU()), "pods": "110"}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			f := strings.Fields(string(line))
			if len(f) >= 2 && f[0] == "MemTotal:" {
				c["memory"] = f[1] + "Ki"
			}
		}
	}
	return c
}

func numCPU() int { return goruntime.NumCPU() }
