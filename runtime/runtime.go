// Package runtime runs the pods a peer owns on this machine. It holds the
// Runtime interface (images, pod networks, containers), its containerd
// driver with CNI pod networking, a supervisor for a private containerd, and
// the PodManager: the kubelet-like loop that keeps each pod's containers
// running with restart back-off, liveness and readiness probes, logs on disk
// and a Kubernetes-shaped status.
package runtime

import (
	"context"
	"io"
	"time"
)

// Image is an image held by the runtime.
type Image struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"` // bytes of content (compressed layers, config, manifests)
	// Unpacked is the size of the image's layers once unpacked (0: not
	// measured, an image stored before chorus measured it).
	Unpacked int64 `json:"unpacked,omitempty"`
	// Loaded is the version of the load that brought this content under
	// this name (opaque to the runtime; see ImageManifest.Loaded).
	Loaded string `json:"loaded,omitempty"`
}

// PodNetwork is a pod's network namespace and address.
type PodNetwork struct {
	NetNSPath string `json:"netnsPath"`
	IP        string `json:"ip"`
}

// ContainerConfig is everything needed to start one container of a pod.
type ContainerConfig struct {
	ID        string            // runtime container id, stable across restarts
	Image     string            // normalized image reference
	Command   []string          // replaces the image's entrypoint when set
	Args      []string          // replaces the image's cmd when set (or when Command is set)
	Env       []string          // KEY=VALUE, appended to the image's env
	WorkDir   string            //
	Hostname  string            // the pod name
	NetNSPath string            // the pod's network namespace
	LogPath   string            // stdout and stderr go here (appended)
	Labels    map[string]string // stored on the container; used to adopt it after a restart
	Files     map[string]string // container path -> host file, bind-mounted read-only (e.g. /etc/resolv.conf)
	Mounts    []Mount           // the container's volume mounts
	CPUMilli  int64             // CPU limit in millicores, 0 for none
	MemBytes  int64             // memory limit in bytes, 0 for none
	Security  SecurityConfig    // user, capabilities, seccomp...; the zero value is the default
}

// ExitStatus is how a container's process ended.
type ExitStatus struct {
	Code     int32
	Signal   int32 // set when the process was killed by a signal (Code is 128+Signal)
	Finished time.Time
	Err      error // set when the runtime lost track of the process
}

// ContainerRecord is a container found in the runtime, for adoption.
type ContainerRecord struct {
	ID      string
	Labels  map[string]string
	Running bool
	Started time.Time
}

// Runtime is what the PodManager needs from a container runtime. The
// containerd driver implements it; unit tests of the PodManager mock it.
type Runtime interface {
	// ImportImage loads an OCI or docker archive and returns the images in it.
	ImportImage(ctx context.Context, r io.Reader) ([]Image, error)
	// Images lists the images held.
	Images(ctx context.Context) ([]Image, error)
	// HasImage reports whether ref (normalized) is held and unpacked.
	HasImage(ctx context.Context, ref string) (bool, error)

	// SetupNetwork creates the pod's network namespace and attaches it to the
	// peer's bridge.
	SetupNetwork(ctx context.Context, podID string) (PodNetwork, error)
	// TeardownNetwork detaches and removes the network namespace; it is
	// idempotent.
	TeardownNetwork(ctx context.Context, podID string, nw PodNetwork) error

	// StartContainer creates the container if needed and starts a new task
	// (process) for it; a previous stopped task is replaced.
	StartContainer(ctx context.Context, cfg ContainerConfig) error
	// Wait returns a channel that yields once when the container's current
	// process exits.
	Wait(ctx context.Context, id string) (<-chan ExitStatus, error)
	// StopContainer stops the container's process: SIGTERM, then SIGKILL after
	// grace. It is idempotent.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer stops and deletes the container; it is idempotent.
	RemoveContainer(ctx context.Context, id string) error
	// SetLabels updates labels stored on the container.
	SetLabels(ctx context.Context, id string, labels map[string]string) error
	// Exec runs cmd inside the running container and returns its exit code
	// and combined output.
	Exec(ctx context.Context, id string, cmd []string) (int, []byte, error)
	// ExecStream runs cmd inside the running container with stdin (nil for
	// none: the process reads end of file) and writes its output to stdout
	// and stderr as it comes, from two goroutines: one writer given for both
	// must be safe for concurrent use. It returns the exit code once the
	// process has exited and its output is written. When ctx ends first the
	// process is killed. A Read of stdin in progress when it returns is left
	// to the caller to end (close what stdin reads from).
	ExecStream(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// Containers lists the containers this runtime holds for this peer.
	Containers(ctx context.Context) ([]ContainerRecord, error)
	// ContainerStats reads the resource usage of the container's running
	// process from its cgroup.
	ContainerStats(ctx context.Context, id string) (ContainerStats, error)
}

// ContainerStats is a container's resource usage at one moment, as its
// cgroup counts it.
type ContainerStats struct {
	// CPUNanos is the CPU time used since the container's process started
	// (cumulative), in nanoseconds.
	CPUNanos uint64
	// WorkingSet is the memory in use that the kernel could not readily
	// reclaim: usage minus inactive file pages, in bytes, as the kubelet
	// and cAdvisor compute it.
	WorkingSet uint64
}
