package runtime

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"google.golang.org/protobuf/proto"
)

// ContainerStats implements Runtime: the task's cgroup statistics, as
// containerd's task service reports them (cgroup v1 or v2).
func (c *Containerd) ContainerStats(ctx context.Context, id string) (ContainerStats, error) {
	ctx = c.ctx(ctx)
	ctr, err := c.client.LoadContainer(ctx, id)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("load %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("load task of %s: %w", id, err)
	}
	m, err := task.Metrics(ctx)
	if err != nil {
		return ContainerStats{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	if m.GetData() == nil {
		return ContainerStats{}, fmt.Errorf("metrics of %s: no data", id)
	}
	st, err := decodeCgroupStats(m.GetData().GetTypeUrl(), m.GetData().GetValue())
	if err != nil {
		return ContainerStats{}, fmt.Errorf("metrics of %s: %w", id, err)
	}
	return st, nil
}

// Type names of the cgroup statistics containerd's task service answers
// (the protobuf packages of containerd/cgroups' stats).
const (
	cgroupV1Metrics = "io.containerd.cgroups.v1.Metrics"
	cgroupV2Metrics = "io.containerd.cgroups.v2.Metrics"
)

// decodeCgroupStats reads a task's metrics, the protobuf message named by
// typeURL (cgroup v1 or v2 statistics, "type.googleapis.com/" prefix or
// not), into ContainerStats. The working set is the cgroup's memory usage
// less its inactive file pages (never below zero), as cAdvisor computes it.
func decodeCgroupStats(typeURL string, value []byte) (ContainerStats, error) {
	name := typeURL[strings.LastIndexByte(typeURL, '/')+1:]
	switch name {
	case cgroupV1Metrics:
		var m v1.Metrics
		if err := proto.Unmarshal(value, &m); err != nil {
			return ContainerStats{}, fmt.Errorf("decode cgroup v1 statistics: %w", err)
		}
		return statsV1(&m), nil
	case cgroupV2Metrics:
		var m v2.Metrics
		if err := proto.Unmarshal(value, &m); err != nil {
			return ContainerStats{}, fmt.Errorf("decode cgroup v2 statistics: %w", err)
		}
		return statsV2(&m), nil
	case "":
		return ContainerStats{}, errors.New("statistics of no type")
	}
	return ContainerStats{}, fmt.Errorf("statistics of unknown type %q", name)
}

func statsV1(m *v1.Metrics) ContainerStats {
	var st ContainerStats
	st.CPUNanos = m.GetCPU().GetUsage().GetTotal()
	mem := m.GetMemory()
	st.WorkingSet = workingSet(mem.GetUsage().GetUsage(), mem.GetTotalInactiveFile())
	return st
}

func statsV2(m *v2.Metrics) ContainerStats {
	var st ContainerStats
	usec := m.GetCPU().GetUsageUsec()
	if usec > ^uint64(0)/1000 {
		usec = ^uint64(0) / 1000
	}
	st.CPUNanos = usec * 1000
	mem := m.GetMemory()
	st.WorkingSet = workingSet(mem.GetUsage(), mem.GetInactiveFile())
	return st
}

// workingSet is usage less inactive file pages, 0 when they exceed it.
func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile >= usage {
		return 0
	}
	return usage - inactiveFile
}
