package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// userHZ is the unit of /proc/stat's CPU times: the kernel reports them in
// USER_HZ ticks, 100 a second on every Linux architecture.
const userHZ = 100

// ReadNodeStats reads the machine's usage from procRoot (/proc): the CPU
// time spent not idle since boot and the memory working set, MemTotal less
// MemAvailable, as the kubelet reports its root cgroup. Peers that share a
// machine (tests, a demo) all report the same figures: the machine's.
func ReadNodeStats(procRoot string) (ContainerStats, error) {
	stat, err := os.ReadFile(filepath.Join(procRoot, "stat"))
	if err != nil {
		return ContainerStats{}, fmt.Errorf("read CPU times: %w", err)
	}
	cpu, err := parseProcStat(stat)
	if err != nil {
		return ContainerStats{}, err
	}
	mi, err := os.ReadFile(filepath.Join(procRoot, "meminfo"))
	if err != nil {
		return ContainerStats{}, fmt.Errorf("read memory figures: %w", err)
	}
	mem, err := parseMeminfo(mi)
	if err != nil {
		return ContainerStats{}, err
	}
	return ContainerStats{CPUNanos: cpu, WorkingSet: mem}, nil
}

// parseProcStat returns the CPU time, in nanoseconds, that /proc/stat's
// aggregate "cpu" line counts outside idle and iowait: user, nice, system,
// irq, softirq and steal (guest time is already inside user and nice).
func parseProcStat(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return 0, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 4 times", len(f)-1)
		}
		var busy uint64
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i >= 8 { // idle, iowait, guest, guest_nice
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/stat: cpu field %d: %w", i+1, err)
			}
			if busy+n < busy {
				return 0, errors.New("/proc/stat: cpu times overflow")
			}
			busy += n
		}
		const perTick = 1e9 / userHZ
		if busy > ^uint64(0)/perTick {
			return 0, errors.New("/proc/stat: cpu times overflow")
		}
		return busy * perTick, nil
	}
	return 0, errors.New("/proc/stat: no cpu line")
}

// parseMeminfo returns MemTotal less MemAvailable from /proc/meminfo, in
// bytes (0 if available exceeds total).
func parseMeminfo(b []byte) (uint64, error) {
	var total, avail uint64
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "MemTotal:" && f[0] != "MemAvailable:") {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/meminfo: %s %w", f[0], err)
		}
		if len(f) > 2 && f[2] != "kB" {
			return 0, fmt.Errorf("/proc/meminfo: %s in %q, want kB", f[0], f[2])
		}
		if n > ^uint64(0)/1024 {
			return 0, fmt.Errorf("/proc/meminfo: %s too large", f[0])
		}
		if f[0] == "MemTotal:" {
			total, haveTotal = n*1024, true
		} else {
			avail, haveAvail = n*1024, true
		}
	}
	if !haveTotal || !haveAvail {
		return 0, errors.New("/proc/meminfo: MemTotal or MemAvailable missing")
	}
	return workingSet(total, avail), nil
}
