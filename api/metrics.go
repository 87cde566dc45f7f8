package api

import (
	"strconv"
	"time"
)

// Quantity is a Kubernetes resource quantity as text ("250m", "128Mi",
// "1500000n"): the form the Kubernetes API carries it in. MilliCPU and
// Bytes read it with ParseCPU and ParseMemory.
type Quantity string

// CPUQuantity is a CPU rate in nanocores, written as metrics-server writes
// it ("12345678n").
func CPUQuantity(nanocores int64) Quantity {
	return Quantity(strconv.FormatInt(max(nanocores, 0), 10) + "n")
}

// MemoryQuantity is a number of bytes, in Ki when it is a whole number of
// them ("1024Ki"), as metrics-server writes it.
func MemoryQuantity(bytes int64) Quantity {
	bytes = max(bytes, 0)
	if bytes != 0 && bytes%1024 == 0 {
		return Quantity(strconv.FormatInt(bytes/1024, 10) + "Ki")
	}
	return Quantity(strconv.FormatInt(bytes, 10))
}

// MilliCPU reads q as CPU, in millicores (a fraction rounded up).
func (q Quantity) MilliCPU() (int64, error) { return ParseCPU(string(q)) }

// Bytes reads q as memory, in bytes (a fraction rounded up).
func (q Quantity) Bytes() (int64, error) { return ParseMemory(string(q)) }

// PodMetrics mirrors metrics.k8s.io/v1beta1 PodMetrics: the resource usage
// of a pod's running containers, measured over Window up to Timestamp by
// the peer that runs the pod. Window is a Go duration here (nanoseconds in
// JSON); the Kubernetes API writes it as text ("5s").
type PodMetrics struct {
	Metadata   ObjectMeta         `json:"metadata"` // namespace, name, labels
	Timestamp  time.Time          `json:"timestamp"`
	Window     time.Duration      `json:"window"`
	Containers []ContainerMetrics `json:"containers"`
}

// ContainerMetrics is one container's usage: "cpu" (a rate) and "memory"
// (the working set); the keys are ResourceCPU and ResourceMemory.
type ContainerMetrics struct {
	Name  string              `json:"name"`
	Usage map[string]Quantity `json:"usage"`
}

// NodeMetrics mirrors metrics.k8s.io/v1beta1 NodeMetrics: the usage of a
// whole peer ("cpu" and "memory") over Window up to Timestamp.
type NodeMetrics struct {
	Metadata  ObjectMeta          `json:"metadata"` // name, labels
	Timestamp time.Time           `json:"timestamp"`
	Window    time.Duration       `json:"window"`
	Usage     map[string]Quantity `json:"usage"`
}
