package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"syscall"
	"time"
)

// lockedWriter makes a writer safe for the two goroutines that copy a
// process' stdout and stderr.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.w.Bytes()...)
}

// Daemon is a private containerd started and supervised by the agent, as
// k3s does: its root lives in the peer's data dir, its socket and state in
// a run dir derived from the data dir, so peers sharing a machine never
// share a containerd. It dies with the agent (parent-death signal); the
// containers live on in their shims and the next agent adopts them.
type Daemon struct {
	Address string // the gRPC socket
	root    string
	run     string
	log     *slog.Logger

	cancel context.CancelFunc
	done   chan struct{}
}

// RunDirFor returns the directory under /run holding a private containerd's
// socket and state for a data dir. It is short (unix socket paths are
// limited to 107 bytes) and stable across restarts.
func RunDirFor(dataDir string) string {
	abs, _ := filepath.Abs(dataDir)
	h := sha256.Sum256([]byte(abs))
	return filepath.Join("/run/chorus", hex.EncodeToString(h[:6]))
}

// StartDaemon starts containerd for dataDir, or reuses the one already
// answering on its socket, and returns once it answers. It restarts the
// daemon if it dies, until ctx is done; Stop ends it.
func StartDaemon(ctx context.Context, dataDir string, log *slog.Logger) (*Daemon, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd is not installed (apt-get install containerd runc): %w", err)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc is not installed (apt-get install runc): %w", err)
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{root: filepath.Join(abs, "containerd"), run: RunDirFor(abs), log: log, done: make(chan struct{})}
	d.Address = filepath.Join(d.run, "containerd.sock")
	for _, dir := range []string{d.root, d.run} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, d.root, filepath.Join(d.run, "state"), d.Address, d.Address+".ttrpc")
	cfgPath := filepath.Join(d.root, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", cfgPath, err)
	}
	logPath := filepath.Join(abs, "containerd.log")
	dctx, cancel := context.WithCancel(ctx)
	d.cancel = cancel
	ready := make(chan error, 1)
	go d.supervise(dctx, bin, cfgPath, logPath, ready)
	select {
	case err := <-ready:
		if err != nil {
			cancel()
			<-d.done
			return nil, err
		}
	case <-ctx.Done():
		cancel()
		<-d.done
		return nil, ctx.Err()
	}
	return d, nil
}

func (d *Daemon) answers() bool {
	c, err := net.DialTimeout("unix", d.Address, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (d *Daemon) supervise(ctx context.Context, bin, cfgPath, logPath string, ready chan<- error) {
	defer close(d.done)
	// The parent-death signal fires when the thread that started containerd
	// ends, not the process. Go ends threads that a goroutine left locked
	// (network namespace code does that), so containerd is started from a
	// thread this goroutine keeps for itself until it returns.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	first := true
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		if d.answers() {
			// A containerd from an earlier run of this peer is still up: use it,
			// and check on it from time to time.
			if first {
				d.log.Info("reusing running containerd", "address", d.Address)
				ready <- nil
				first = false
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		_ = os.Remove(d.Address)
		lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			if first {
				ready <- fmt.Errorf("open %s: %w", logPath, err)
				return
			}
			continue
		}
		cmd := exec.Command(bin, "--config", cfgPath)
		cmd.Stdout, cmd.Stderr = lf, lf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			lf.Close()
			if first {
				ready <- fmt.Errorf("start containerd: %w", err)
				return
			}
			continue
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		if first {
			deadline := time.Now().Add(30 * time.Second)
			for !d.answers() {
				select {
				case err := <-exited:
					lf.Close()
					ready <- fmt.Errorf("containerd exited at start (%v); see %s", err, logPath)
					return
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					<-exited
					lf.Close()
					ready <- fmt.Errorf("containerd did not answer on %s within 30s; see %s", d.Address, logPath)
					return
				}
			}
			d.log.Info("started private containerd", "address", d.Address, "pid", cmd.Process.Pid, "log", logPath)
			ready <- nil
			first = false
		}
		select {
		case err := <-exited:
			lf.Close()
			d.log.Warn("containerd exited; restarting it", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			lf.Close()
			return
		}
	}
}

// Stop ends the daemon (when this process started it); running containers
// stay in their shims.
func (d *Daemon) Stop() {
	d.cancel()
	<-d.done
}
