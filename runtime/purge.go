package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

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
	nsDir := filepath.Join(dataDir, "network", "netns")
	if ents, err := os.ReadDir(nsDir); err == nil {
		for _, e := range ents {
			if err := netns.LoadNetNS(filepath.Join(nsDir, e.Name())).Remove(); err != nil {
				errs = append(errs, fmt.Errorf("remove network namespace %s: %w", e.Name(), err))
			}
		}
	}
	if bridge != "" {
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
