package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/pkg/netns"
)

// Purge removes everything a peer left on this machine: its containers (in
// namespace, on the containerd at address, or on its private containerd
// when address is empty), its pod network namespaces, its bridge, its
// private containerd and its data and run dirs. The agent must not be
// running. It is what `chorus reset` and the test harness use.
func Purge(ctx context.Context, dataDir, address, namespace, bridge string, log *slog.Logger) error {
	var errs []error
	var daemon *Daemon
	if address == "" {
		if _, err := os.Stat(filepath.Join(dataDir, "containerd")); err == nil {
			d, err := StartDaemon(ctx, dataDir, log)
			if err != nil {
				errs = append(errs, err)
			} else {
				daemon = d
				address = d.Address
			}
		}
	}
	if address != "" {
		if c, err := NewContainerd(ctx, address, namespace, nil); err != nil {
			errs = append(errs, err)
		} else {
			ctrs, err := c.Containers(ctx)
			if err != nil {
				errs = append(errs, err)
			}
			for _, ctr := range ctrs {
				if err := c.RemoveContainer(ctx, ctr.ID); err != nil {
					errs = append(errs, err)
				}
			}
			c.Close()
		}
	}
	if daemon != nil {
		daemon.Stop()
	}
	// Whatever is left of this peer: shims of its containerd (their command
	// line names its socket) and processes in its pods' network namespaces.
	KillPeerProcesses(dataDir)
	nsDir := filepath.Join(dataDir, "network", "netns")
	if ents, err := os.ReadDir(nsDir); err == nil {
		for _, e := range ents {
			if err := netns.LoadNetNS(filepath.Join(nsDir, e.Name())).Remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove network namespace %s: %w", e.Name(), err))
			}
		}
	}
	if bridge != "" {
		if err := removeMasquerade(bridge); err != nil {
			errs = append(errs, err)
		}
		if out, err := exec.CommandContext(ctx, "ip", "link", "del", bridge).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "Cannot find device") {
			errs = append(errs, fmt.Errorf("delete bridge %s: %s", bridge, strings.TrimSpace(string(out))))
		}
	}
	// Overlay mounts of a private containerd live under the data dir.
	if out, err := exec.CommandContext(ctx, "sh", "-c", "grep -F "+shellQuote(dataDir)+" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l").CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("unmount under %s: %s", dataDir, strings.TrimSpace(string(out))))
	}
	if err := os.RemoveAll(RunDirFor(dataDir)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// KillPeerProcesses SIGKILLs every process of the peer with this data dir:
// its private containerd and shims (their command lines name its socket)
// and the processes in its pods' network namespaces. Reset uses it for
// what no containerd knows any more; tests use it to kill a peer as a
// machine dies.
func KillPeerProcesses(dataDir string) {
	type nsID struct{ dev, ino uint64 }
	nsInodes := map[nsID]bool{}
	ents, _ := filepath.Glob(filepath.Join(dataDir, "network", "netns", "*"))
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Stat(e, &st) == nil {
			nsInodes[nsID{uint64(st.Dev), st.Ino}] = true
		}
	}
	runDir := RunDirFor(dataDir)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, proc := range procs {
		pid, err := strconv.Atoi(filepath.Base(proc))
		if err != nil || pid == os.Getpid() {
			continue
		}
		kill := false
		if cmdline, err := os.ReadFile(proc + "/cmdline"); err == nil && strings.Contains(string(cmdline), runDir) {
			kill = true
		}
		var st syscall.Stat_t
		if len(nsInodes) > 0 && syscall.Stat(proc+"/ns/net", &st) == nil && nsInodes[nsID{uint64(st.Dev), st.Ino}] {
			kill = true
		}
		if kill {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
