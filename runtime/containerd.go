package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	capability "github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// NormalizeImage turns a short image name ("example/web:1", "nginx") into
// the full reference containerd stores ("docker.io/example/web:1",
// "docker.io/library/nginx:latest").
func NormalizeImage(name string) (string, error) {
	ref, err := reference.ParseDockerRef(name)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", name, err)
	}
	return ref.String(), nil
}

// Containerd is the containerd driver of Runtime, with CNI networking.
type Containerd struct {
	client      *containerd.Client
	namespace   string
	snapshotter string
	net         *CNINetwork
	execSeq     atomic.Int64
	limits      ImageLimits // set by SetImageLimits before use; zero fields take the defaults
}

// NewContainerd connects to the containerd at address and uses namespace
// for everything this peer creates.
func NewContainerd(ctx context.Context, address, namespace string, net *CNINetwork) (*Containerd, error) {
	c, err := containerd.New(address, containerd.WithDefaultNamespace(namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", address, err)
	}
	if _, err := c.Version(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", address, err)
	}
	return &Containerd{client: c, namespace: namespace, snapshotter: "overlayfs", net: net}, nil
}

// Close closes the connection to containerd; containers keep running.
func (c *Containerd) Close() error { return c.client.Close() }

func (c *Containerd) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.namespace)
}

// HasImage implements Runtime.
func (c *Containerd) HasImage(ctx context.Context, ref string) (bool, error) {
	ctx = c.ctx(ctx)
	img, err := c.client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up image %s: %w", ref, err)
	}
	ok, err := img.IsUnpacked(ctx, c.snapshotter)
	if err != nil {
		return false, fmt.Errorf("check image %s: %w", ref, err)
	}
	if !ok {
		if err := img.Unpack(ctx, c.snapshotter); err != nil {
			return false, fmt.Errorf("unpack %s: %w", ref, err)
		}
	}
	return true, nil
}

// SetupNetwork implements Runtime.
func (c *Containerd) SetupNetwork(ctx context.Context, podID string) (PodNetwork, error) {
	return c.net.Setup(ctx, podID)
}

// TeardownNetwork implements Runtime.
func (c *Containerd) TeardownNetwork(ctx context.Context, podID string, nw PodNetwork) error {
	return c.net.Teardown(ctx, podID, nw)
}

// StartContainer implements Runtime.
func (c *Containerd) StartContainer(ctx context.Context, cfg ContainerConfig) error {
	ctx = c.ctx(ctx)
	ctr, err := c.client.LoadContainer(ctx, cfg.ID)
	if errdefs.IsNotFound(err) {
		ctr, err = c.create(ctx, cfg)
	}
	if err != nil {
		return err
	}
	if task, err := ctr.Task(ctx, nil); err == nil {
		st, err := task.Status(ctx)
		if err == nil && (st.Status == containerd.Running || st.Status == containerd.Paused) {
			return nil
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete old task of %s: %w", cfg.ID, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("load task of %s: %w", cfg.ID, err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o755); err != nil {
		return fmt.Errorf("create log dir: %w", err)
	}
	task, err := ctr.NewTask(ctx, cio.LogFile(cfg.LogPath))
	if errdefs.IsAlreadyExists(err) {
		// A task left half made when containerd died under it: containerd
		// will not load it, nor make another. Delete its record and retry.
		_, _ = c.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: cfg.ID})
		task, err = ctr.NewTask(ctx, cio.LogFile(cfg.LogPath))
	}
	if err != nil && c.removeStaleBundle(cfg.ID, err) {
		task, err = ctr.NewTask(ctx, cio.LogFile(cfg.LogPath))
	}
	if err != nil {
		return fmt.Errorf("create task of %s: %w", cfg.ID, err)
	}
	if err := task.Start(ctx); err != nil {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("start %s: %w", cfg.ID, err)
	}
	return nil
}

// staleBundle finds the bundle directory in containerd's error when a shim
// cannot start because the directory is there already.
var staleBundle = regexp.MustCompile(`mkdir (/\S+): file exists`)

// removeStaleBundle removes the bundle directory of container id that a
// shim which died while containerd was down left behind (containerd then
// refuses every new task of that container: "failed to start shim: mkdir
// ...: file exists"), when no shim of it is alive, and reports whether it
// did. containerd reports the case only in its message.
func (c *Containerd) removeStaleBundle(id string, err error) bool {
	m := staleBundle.FindStringSubmatch(err.Error())
	if m == nil {
		return false
	}
	dir := filepath.Clean(m[1])
	if filepath.Base(dir) != id || filepath.Base(filepath.Dir(dir)) != c.namespace {
		return false
	}
	if b, err := os.ReadFile(filepath.Join(dir, "shim.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			return false // its shim lives: not stale
		}
	}
	// The container's root file system may still be mounted there.
	_ = syscall.Unmount(filepath.Join(dir, "rootfs"), syscall.MNT_DETACH)
	if err := os.RemoveAll(dir); err != nil {
		slog.Default().Warn("remove a dead shim's bundle", "container", id, "dir", dir, "err", err)
		return false
	}
	slog.Default().Info("removed a dead shim's bundle", "container", id, "dir", dir)
	return true
}

func (c *Containerd) create(ctx context.Context, cfg ContainerConfig) (containerd.Container, error) {
	img, err := c.client.GetImage(ctx, cfg.Image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	ic, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("read config of image %s: %w", cfg.Image, err)
	}
	sec := cfg.Security
	who := fmt.Sprintf("pod: %s, container: %s", cfg.Labels[labelPod], cfg.Labels[labelContainer])
	if err := checkNonRoot(sec, ic.Config.User, who); err != nil {
		return nil, err
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithHostname(cfg.Hostname),
		oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetNSPath}),
		oci.WithEnv(cfg.Env),
	}
	if cfg.Command != nil || cfg.Args != nil {
		args, err := processArgs(ctx, img, cfg.Command, cfg.Args)
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithProcessArgs(args...))
	}
	if cfg.WorkDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkDir))
	}
	if len(cfg.Files) > 0 {
		var mounts []specs.Mount
		for _, dst := range sortedKeys(cfg.Files) {
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: cfg.Files[dst], Options: []string{"rbind", "ro"}})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	if len(cfg.Mounts) > 0 {
		var mounts []specs.Mount
		for _, m := range cfg.Mounts {
			o := []string{"rbind", "rprivate", "rw"}
			if m.ReadOnly {
				o[2] = "ro"
			}
			mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: o})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	if cfg.MemBytes > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(cfg.MemBytes)))
	}
	if cfg.CPUMilli > 0 {
		const period = 100000
		opts = append(opts, oci.WithCPUCFS(cfg.CPUMilli*period/1000, period))
	}
	opts = append(opts, securityOpts(sec, ic.Config.User)...)
	ctr, err := c.client.NewContainer(ctx, cfg.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(c.snapshotter),
		containerd.WithNewSnapshot(cfg.ID+"-rootfs", img),
		containerd.WithNewSpec(opts...),
		containerd.WithContainerLabels(cfg.Labels),
	)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	return ctr, nil
}

// securityOpts confines the container as sec says; it follows the options
// that set the user and mounts. imageUser is the image config's User.
func securityOpts(sec SecurityConfig, imageUser string) []oci.SpecOpts {
	var opts []oci.SpecOpts
	switch {
	case sec.RunAsUser != nil:
		user := strconv.FormatInt(*sec.RunAsUser, 10)
		if sec.RunAsGroup != nil {
			user += ":" + strconv.FormatInt(*sec.RunAsGroup, 10)
		}
		opts = append(opts, oci.WithUser(user), oci.WithAdditionalGIDs(strconv.FormatInt(*sec.RunAsUser, 10)))
	case sec.RunAsGroup != nil:
		user, _, _ := strings.Cut(imageUser, ":")
		if user == "" {
			user = "0"
		}
		opts = append(opts, oci.WithUser(user+":"+strconv.FormatInt(*sec.RunAsGroup, 10)), oci.WithAdditionalGIDs(user))
	}
	if len(sec.SupplementalGroups) > 0 {
		opts = append(opts, withAdditionalGIDs(sec.SupplementalGroups))
	}
	if sec.Privileged {
		// As the CRI plugin does for Kubernetes: every capability, the
		// host's devices, /sys and cgroups writable, no masked paths and
		// no seccomp filter.
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	if !sec.Privileged && (len(sec.CapAdd) > 0 || len(sec.CapDrop) > 0) {
		opts = append(opts, func(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
			var base []string
			if s.Process != nil && s.Process.Capabilities != nil {
				base = s.Process.Capabilities.Bounding
			}
			all, err := capability.Current()
			if err != nil {
				return fmt.Errorf("read capabilities: %w", err)
			}
			return oci.WithCapabilities(applyCaps(base, all, sec.CapAdd, sec.CapDrop))(ctx, client, c, s)
		})
	}
	if sec.AllowEscalation {
		opts = append(opts, oci.WithNewPrivileges)
	} else {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sec.ReadOnlyRootFS {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sec.SeccompUnconfined {
		opts = append(opts, oci.WithSeccompUnconfined)
	} else {
		// containerd's default profile, which follows the capabilities set
		// above: without CAP_SYS_ADMIN no mount, unshare, setns, clone of
		// namespaces (so no user namespace), bpf, keyctl...
		opts = append(opts, seccomp.WithDefaultProfile())
	}
	return opts
}

// withAdditionalGIDs adds gids to the process' additional groups.
func withAdditionalGIDs(gids []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, g := range gids {
			if !slices.Contains(s.Process.User.AdditionalGids, uint32(g)) {
				s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
			}
		}
		return nil
	}
}

// processArgs applies Kubernetes' rules: command replaces the image's
// entrypoint (and drops its cmd), args replace the image's cmd.
func processArgs(ctx context.Context, img containerd.Image, command, args []string) ([]string, error) {
	ic, err := img.Spec(ctx)
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	entry, cmd := ic.Config.Entrypoint, ic.Config.Cmd
	if command != nil {
		entry, cmd = command, nil
	}
	if args != nil {
		cmd = args
	}
	out := append(append([]string{}, entry...), cmd...)
	if len(out) == 0 {
		return nil, errors.New("no command: the image has no entrypoint and the container gives none")
	}
	return out, nil
}

// Wait implements Runtime.
func (c *Containerd) Wait(ctx context.Context, id string) (<-chan ExitStatus, error) {
	cctx := c.ctx(ctx)
	ctr, err := c.client.LoadContainer(cctx, id)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", id, err)
	}
	task, err := ctr.Task(cctx, nil)
	if err != nil {
		return nil, fmt.Errorf("load task of %s: %w", id, err)
	}
	ch, err := task.Wait(cctx)
	if err != nil {
		return nil, fmt.Errorf("wait for %s: %w", id, err)
	}
	out := make(chan ExitStatus, 1)
	go func() {
		defer close(out)
		select {
		case st, ok := <-ch:
			if !ok {
				return
			}
			code, at, err := st.Result()
			es := ExitStatus{Code: int32(code), Finished: at, Err: err}
			if code > 128 && code < 128+65 {
				es.Signal = int32(code - 128)
			}
			out <- es
		case <-ctx.Done():
		}
	}()
	return out, nil
}

// StopContainer implements Runtime.
func (c *Containerd) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	ctx = c.ctx(ctx)
	ctr, err := c.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	task, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load task of %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err == nil && st.Status != containerd.Stopped {
		ch, err := task.Wait(ctx)
		if err != nil {
			return fmt.Errorf("wait for %s: %w", id, err)
		}
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("signal %s: %w", id, err)
		}
		select {
		case <-ch:
		case <-time.After(grace):
			if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("kill %s: %w", id, err)
			}
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				return fmt.Errorf("kill %s: the process did not exit", id)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task of %s: %w", id, err)
	}
	return nil
}

// RemoveContainer implements Runtime.
func (c *Containerd) RemoveContainer(ctx context.Context, id string) error {
	if err := c.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	ctx = c.ctx(ctx)
	ctr, err := c.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", id, err)
	}
	return nil
}

// SetLabels implements Runtime.
func (c *Containerd) SetLabels(ctx context.Context, id string, labels map[string]string) error {
	ctx = c.ctx(ctx)
	ctr, err := c.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("load %s: %w", id, err)
	}
	if _, err := ctr.SetLabels(ctx, labels); err != nil {
		return fmt.Errorf("set labels of %s: %w", id, err)
	}
	return nil
}

// Exec implements Runtime.
func (c *Containerd) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	var out bytes.Buffer
	w := &lockedWriter{w: &out}
	code, err := c.ExecStream(ctx, id, cmd, nil, w, w)
	return code, w.bytes(), err
}

// ExecStream implements Runtime.
func (c *Containerd) ExecStream(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return c.exec(ctx, id, cmd, execIO{stdin: stdin, stdout: stdout, stderr: stderr})
}

// exec runs cmd in the running container id with the streams of eio, as
// ExecStream and ExecTTY describe.
func (c *Containerd) exec(ctx context.Context, id string, cmd []string, eio execIO) (int, error) {
	stdin, stdout, stderr := eio.stdin, eio.stdout, eio.stderr
	if len(cmd) == 0 {
		return -1, fmt.Errorf("exec in %s: no command", id)
	}
	cctx := c.ctx(ctx)
	ctr, err := c.client.LoadContainer(cctx, id)
	if err != nil {
		return -1, fmt.Errorf("load %s: %w", id, err)
	}
	spec, err := ctr.Spec(cctx)
	if err != nil {
		return -1, fmt.Errorf("read spec of %s: %w", id, err)
	}
	task, err := ctr.Task(cctx, nil)
	if err != nil {
		return -1, fmt.Errorf("%s is not running: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = cmd
	pspec.Terminal = eio.tty
	if eio.tty && eio.resize != nil {
		// The terminal is made with the client's size (kubectl sends it
		// as soon as the session is up): a program that reads its size at
		// once would otherwise see 0x0, the later resize arriving after (2 s
		// leaves room for a busy machine).
		if sz, ok := firstSize(ctx, eio.resize, 2*time.Second); ok {
			pspec.ConsoleSize = &specs.Box{Height: uint(sz.Height), Width: uint(sz.Width)}
		} else {
			// Its program sees 0x0 until the client's next resize.
			slog.Default().Warn("exec terminal made without the client's size: none came within 2 s", "container", id)
		}
	}
	var in *stdinCloser
	var inR io.Reader // a nil *stdinCloser in the interface would not read as "no stdin"
	if stdin != nil {
		in = &stdinCloser{r: stdin}
		inR = in
	}
	execID := "exec-" + strconv.FormatInt(c.execSeq.Add(1), 10)
	streams := []cio.Opt{cio.WithStreams(inR, stdout, stderr)}
	if eio.tty {
		streams = append(streams, cio.WithTerminal)
	}
	proc, err := task.Exec(cctx, execID, &pspec, cio.NewCreator(streams...))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	// Delete kills the process if it still runs, and waits for its output.
	defer proc.Delete(context.WithoutCancel(cctx), containerd.WithProcessKill) //nolint:errcheck
	// Waited for without ctx: a cancelled Wait also sends on ch, and taking
	// that for an exit would wait forever below for the output of a
	// process still running. Cancellation is the ctx.Done case.
	ch, err := proc.Wait(context.WithoutCancel(cctx))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, err)
	}
	if err := proc.Start(cctx); err != nil {
		return -1, fmt.Errorf("exec %v in %s: %w", cmd, id, err)
	}
	if in != nil {
		// The shim holds the process' stdin open until told to close it:
		// do so once stdin is drained (and not before the start).
		in.started(func() { _ = proc.CloseIO(context.WithoutCancel(cctx), containerd.WithStdinCloser) })
	}
	if eio.tty && eio.resize != nil {
		stop := resizeTerminal(cctx, proc, eio.resize)
		defer stop()
	}
	select {
	case st := <-ch:
		code, _, err := st.Result()
		if err != nil {
			return -1, fmt.Errorf("exec %v in %s: %w", cmd, id, err)
		}
		proc.IO().Wait()
		return int(code), nil
	case <-ctx.Done():
		_ = proc.Kill(context.WithoutCancel(cctx), syscall.SIGKILL)
		return -1, fmt.Errorf("exec %v in %s: %w", cmd, id, ctx.Err())
	}
}

// stdinCloser reads an exec's stdin and, at its end, closes the process'
// stdin in the shim: once the process has started, whichever comes last.
type stdinCloser struct {
	r io.Reader

	mu      sync.Mutex
	eof     bool
	closeIO func()
	once    sync.Once
}

func (s *stdinCloser) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.mu.Lock()
		s.eof = true
		f := s.closeIO
		s.mu.Unlock()
		if f != nil {
			s.once.Do(f)
		}
	}
	return n, err
}

func (s *stdinCloser) started(closeIO func()) {
	s.mu.Lock()
	s.closeIO = closeIO
	eof := s.eof
	s.mu.Unlock()
	if eof {
		s.once.Do(closeIO)
	}
}

// Containers implements Runtime.
func (c *Containerd) Containers(ctx context.Context) ([]ContainerRecord, error) {
	ctx = c.ctx(ctx)
	ctrs, err := c.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []ContainerRecord
	for _, ctr := range ctrs {
		info, err := ctr.Info(ctx)
		if err != nil {
			continue
		}
		rec := ContainerRecord{ID: ctr.ID(), Labels: info.Labels}
		if task, err := ctr.Task(ctx, nil); err == nil {
			if st, err := task.Status(ctx); err == nil && st.Status == containerd.Running {
				rec.Running = true
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
