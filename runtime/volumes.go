package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/chorus-sh/chorus/api"
)

// Mount is a host directory or file bind-mounted into a container.
type Mount struct {
	Source      string // host path
	Destination string // path in the container
	ReadOnly    bool
}

// VolumeError is a volume that cannot be set up yet (a ConfigMap or Secret
// that does not exist, a key missing from one): Kubernetes' FailedMount.
// The pod's containers wait in ContainerCreating and it is retried.
type VolumeError struct{ Volume, Msg string }

func (e *VolumeError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %s", e.Volume, e.Msg)
}

// secretVolumeSize bounds the tmpfs of a secret or memory-backed volume
// when the pod gives no sizeLimit.
const secretVolumeSize = 64 << 20

func modeOr(m *int32, def *int32) os.FileMode {
	if m != nil {
		return os.FileMode(*m) & 0o777
	}
	if def != nil {
		return os.FileMode(*def) & 0o777
	}
	return api.DefaultVolumeMode
}

// keyFiles makes files of values: every key, or only items.
func keyFiles(out map[string]VolumeFile, vals map[string][]byte, items []api.KeyToPath, defMode *int32, what string, optional bool) error {
	if len(items) == 0 {
		for k, v := range vals {
			out[k] = VolumeFile{Data: v, Mode: modeOr(nil, defMode)}
		}
		return nil
	}
	for _, it := range items {
		v, ok := vals[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s references non-existent key: %s", what, it.Key)
		}
		out[it.Path] = VolumeFile{Data: v, Mode: modeOr(it.Mode, defMode)}
	}
	return nil
}

func downwardFiles(out map[string]VolumeFile, p *api.Pod, pc PodContext, items []api.DownwardAPIVolumeFile, defMode *int32) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = FieldValue(p, pc, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = ResourceValue(p, nil, pc, it.ResourceFieldRef)
		}
		if err != nil {
			return err
		}
		out[it.Path] = VolumeFile{Data: []byte(v), Mode: modeOr(it.Mode, defMode)}
	}
	return nil
}

// VolumeContents returns the files of a configMap, secret, downwardAPI or
// projected volume of pod p; nil for another kind. A source that does not
// exist, or a key missing from it, is an error unless optional. Pure.
func VolumeContents(p *api.Pod, vol *api.Volume, pc PodContext, src ConfigSource) (map[string]VolumeFile, error) {
	ns := p.Metadata.Namespace
	out := map[string]VolumeFile{}
	configMap := func(name string, items []api.KeyToPath, opt *bool, defMode *int32) error {
		cm, ok := src.ConfigMap(ns, name)
		if !ok {
			if isOptional(opt) {
				return nil
			}
			return fmt.Errorf("configmap %q not found", name)
		}
		return keyFiles(out, cm.Values(), items, defMode, "configmap "+name, isOptional(opt))
	}
	secret := func(name string, items []api.KeyToPath, opt *bool, defMode *int32) error {
		s, ok := src.Secret(ns, name)
		if !ok {
			if isOptional(opt) {
				return nil
			}
			return fmt.Errorf("secret %q not found", name)
		}
		return keyFiles(out, s.Values(), items, defMode, "secret "+name, isOptional(opt))
	}
	var err error
	switch {
	case vol.ConfigMap != nil:
		c := vol.ConfigMap
		err = configMap(c.Name, c.Items, c.Optional, c.DefaultMode)
	case vol.Secret != nil:
		c := vol.Secret
		err = secret(c.SecretName, c.Items, c.Optional, c.DefaultMode)
	case vol.DownwardAPI != nil:
		err = downwardFiles(out, p, pc, vol.DownwardAPI.Items, vol.DownwardAPI.DefaultMode)
	case vol.Projected != nil:
		def := vol.Projected.DefaultMode
		for _, s := range vol.Projected.Sources {
			switch {
			case s.ConfigMap != nil:
				err = configMap(s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, def)
			case s.Secret != nil:
				err = secret(s.Secret.Name, s.Secret.Items, s.Secret.Optional, def)
			case s.DownwardAPI != nil:
				err = downwardFiles(out, p, pc, s.DownwardAPI.Items, def)
			}
			if err != nil {
				break
			}
		}
	default:
		return nil, nil
	}
	if err != nil {
		return nil, &VolumeError{Volume: vol.Name, Msg: err.Error()}
	}
	return out, nil
}

// onTmpfs reports whether a volume lives in memory: a memory emptyDir, or
// a volume that may hold Secrets.
func onTmpfs(vol *api.Volume) (bool, int64) {
	switch {
	case vol.EmptyDir != nil && vol.EmptyDir.Medium == api.MediumMemory:
		if vol.EmptyDir.SizeLimit != "" {
			if b, err := api.ParseMemory(vol.EmptyDir.SizeLimit); err == nil && b > 0 {
				return true, b
			}
		}
		return true, secretVolumeSize
	case vol.Secret != nil:
		return true, secretVolumeSize
	case vol.Projected != nil:
		for _, s := range vol.Projected.Sources {
			if s.Secret != nil {
				return true, secretVolumeSize
			}
		}
	}
	return false, 0
}

// isMountPoint reports whether dir is the root of a mount (its device
// differs from its parent's).
func isMountPoint(dir string) bool {
	var st, pst syscall.Stat_t
	if syscall.Stat(dir, &st) != nil || syscall.Stat(filepath.Dir(dir), &pst) != nil {
		return false
	}
	return st.Dev != pst.Dev
}

// volumeRoot is where a pod's volumes live on this peer: a 0700 directory,
// so that no other user of the machine reads them.
func (m *PodManager) volumeRoot(key string) string {
	return filepath.Join(m.opts.StateDir, "volumes", strings.ReplaceAll(key, "/", "_"))
}

// setupVolumes makes every volume of the pod ready: directories for
// emptyDirs, a tmpfs for memory emptyDirs and for volumes holding Secrets,
// and the current files of configMap, secret, downwardAPI and projected
// volumes (WriteAtomic: unchanged files are not rewritten). It runs before
// every container start and periodically, so changes of ConfigMaps and
// Secrets reach the files.
func (w *podWorker) setupVolumes(pc PodContext) error {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	if len(pod.Spec.Volumes) == 0 {
		return nil
	}
	root := w.m.volumeRoot(w.key)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return err
	}
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if vol.HostPath != nil {
			if err := w.hostPath(vol); err != nil {
				return err
			}
			continue
		}
		if vol.PersistentVolumeClaim != nil {
			dir, err := w.claimDir(&pod, vol)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("volume %q: %w", vol.Name, err)
			}
			if err := os.Chmod(dir, 0o777); err != nil { // as local-path: any user of the pod writes it
				return err
			}
			continue
		}
		dir := filepath.Join(root, vol.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if mem, size := onTmpfs(vol); mem && !isMountPoint(dir) {
			opts := fmt.Sprintf("mode=0755,size=%d", size)
			if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
				// Not root, or no mount rights: the 0700 root still keeps
				// other users out.
				w.m.opts.Log.Warn("volume not on tmpfs", "pod", w.key, "volume", vol.Name, "err", err)
			}
		}
		if vol.EmptyDir != nil {
			if err := os.Chmod(dir, 0o777); err != nil { // as Kubernetes: any user of the pod writes it
				return err
			}
			continue
		}
		if w.m.opts.Config == nil {
			return &VolumeError{Volume: vol.Name, Msg: "this peer serves no ConfigMaps or Secrets"}
		}
		files, err := VolumeContents(&pod, vol, pc, w.m.opts.Config)
		if err != nil {
			return err
		}
		if _, err := WriteAtomic(dir, files, time.Now()); err != nil {
			return fmt.Errorf("volume %q: %w", vol.Name, err)
		}
	}
	return nil
}

// mounts returns the bind mounts of container c. configMap, secret,
// downwardAPI and projected volumes are always read-only, as in
// Kubernetes. A subPath is resolved once, on the host, and must stay in
// its volume (a symlink a container made in an emptyDir must not reach
// the host); in an emptyDir a missing subPath is made a directory.
func (w *podWorker) mounts(c *api.Container) ([]Mount, error) {
	w.mu.Lock()
	vols := w.pod.Spec.Volumes
	w.mu.Unlock()
	root := w.m.volumeRoot(w.key)
	var out []Mount
	for _, vm := range c.VolumeMounts {
		var vol *api.Volume
		for i := range vols {
			if vols[i].Name == vm.Name {
				vol = &vols[i]
			}
		}
		if vol == nil {
			return nil, &ConfigError{Msg: fmt.Sprintf("volumeMount %q: no such volume", vm.Name)}
		}
		dir := filepath.Join(root, vol.Name)
		if vol.HostPath != nil {
			if err := w.hostPath(vol); err != nil {
				return nil, err
			}
			out = append(out, Mount{Source: filepath.Join(vol.HostPath.Path, vm.SubPath), Destination: vm.MountPath, ReadOnly: vm.ReadOnly})
			continue
		}
		if vol.PersistentVolumeClaim != nil {
			w.mu.Lock()
			pod := w.pod
			w.mu.Unlock()
			var err error
			if dir, err = w.claimDir(&pod, vol); err != nil {
				return nil, err
			}
		}
		src := dir
		if vm.SubPath != "" {
			src = filepath.Join(dir, vm.SubPath)
			if vol.EmptyDir != nil || vol.PersistentVolumeClaim != nil {
				if _, err := os.Lstat(src); errors.Is(err, os.ErrNotExist) {
					if err := os.MkdirAll(src, 0o777); err != nil {
						return nil, err
					}
				}
			}
			real, err := filepath.EvalSymlinks(src)
			if err != nil {
				return nil, &ConfigError{Msg: fmt.Sprintf("subPath %q of volume %q: %v", vm.SubPath, vm.Name, err)}
			}
			realDir, err := filepath.EvalSymlinks(dir)
			if err != nil {
				return nil, err
			}
			if real != realDir && !strings.HasPrefix(real, realDir+string(filepath.Separator)) {
				return nil, &ConfigError{Msg: fmt.Sprintf("subPath %q of volume %q leads out of the volume", vm.SubPath, vm.Name)}
			}
			src = real
		}
		writable := vol.EmptyDir != nil || vol.PersistentVolumeClaim != nil && !vol.PersistentVolumeClaim.ReadOnly
		ro := vm.ReadOnly || !writable
		out = append(out, Mount{Source: src, Destination: vm.MountPath, ReadOnly: ro})
	}
	return out, nil
}

// teardownVolumes unmounts the pod's tmpfs volumes and removes its
// volume directory.
func (m *PodManager) teardownVolumes(key string) error {
	root := m.volumeRoot(key)
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if isMountPoint(dir) {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", dir, err)
			}
		}
	}
	return os.RemoveAll(root)
}

// ClaimDir is where the data of a PersistentVolumeClaim lives on the peer
// it is bound to, under the pod manager's state directory: one directory
// per claim (namespace, name and uid, so a claim made again under the same
// name starts empty).
func ClaimDir(stateDir string, c *api.PersistentVolumeClaim) string {
	return filepath.Join(stateDir, "claims", c.Metadata.Namespace+"_"+c.Metadata.Name+"_"+c.Metadata.UID)
}

// claimDir returns the directory of the claim vol mounts, which must be
// bound to this peer.
func (w *podWorker) claimDir(pod *api.Pod, vol *api.Volume) (string, error) {
	name := vol.PersistentVolumeClaim.ClaimName
	if w.m.opts.Config == nil {
		return "", &VolumeError{Volume: vol.Name, Msg: "this peer serves no PersistentVolumeClaims"}
	}
	c, ok := w.m.opts.Config.Claim(pod.Metadata.Namespace, name)
	if !ok {
		return "", &VolumeError{Volume: vol.Name, Msg: fmt.Sprintf("persistentvolumeclaim %q not found", name)}
	}
	if node := c.Metadata.Annotations[api.AnnotationSelectedNode]; node != w.m.opts.Node {
		return "", &VolumeError{Volume: vol.Name, Msg: fmt.Sprintf("persistentvolumeclaim %q is bound to peer %q, not this one", name, node)}
	}
	return ClaimDir(w.m.opts.StateDir, c), nil
}

// PruneClaims removes the claim directories of this peer that keep does
// not want (their claims were deleted), unless a pod here mounts them.
// It returns the directories removed.
func (m *PodManager) PruneClaims(keep func(dir string) bool) ([]string, error) {
	root := filepath.Join(m.opts.StateDir, "claims")
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// A pod here that mounts a claim keeps its directories, whatever
	// their uid: the claim may be deleted while the pod runs (Kubernetes'
	// pvc-protection holds such a claim back).
	var inUse []string
	for _, p := range m.Pods() {
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				inUse = append(inUse, p.Metadata.Namespace+"_"+v.PersistentVolumeClaim.ClaimName+"_")
			}
		}
	}
	var removed []string
	for _, e := range ents {
		dir := filepath.Join(root, e.Name())
		if keep(dir) || slices.ContainsFunc(inUse, func(prefix string) bool { return strings.HasPrefix(e.Name(), prefix) }) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return removed, fmt.Errorf("remove claim data %s: %w", dir, err)
		}
		removed = append(removed, dir)
	}
	return removed, nil
}

// hostPath checks (and, for the ...OrCreate types, makes) the path of a
// hostPath volume, which this peer must allow.
func (w *podWorker) hostPath(vol *api.Volume) error {
	h := vol.HostPath
	if !api.HostPathAllowed(h.Path, w.m.opts.AllowedHostPaths) {
		return &VolumeError{Volume: vol.Name, Msg: fmt.Sprintf("hostPath %q is not allowed on this peer (its agent's --allow-host-path)", h.Path)}
	}
	typ := ""
	if h.Type != nil {
		typ = *h.Type
	}
	st, err := os.Stat(h.Path)
	switch {
	case typ == "DirectoryOrCreate" && errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(h.Path, 0o755); err != nil {
			return &VolumeError{Volume: vol.Name, Msg: err.Error()}
		}
		return nil
	case typ == "FileOrCreate" && errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
			return &VolumeError{Volume: vol.Name, Msg: err.Error()}
		}
		f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return &VolumeError{Volume: vol.Name, Msg: err.Error()}
		}
		return f.Close()
	case err != nil:
		return &VolumeError{Volume: vol.Name, Msg: fmt.Sprintf("hostPath %q: %v", h.Path, err)}
	}
	want := map[string]func(os.FileMode) bool{
		"Directory":         os.FileMode.IsDir,
		"DirectoryOrCreate": os.FileMode.IsDir,
		"File":              os.FileMode.IsRegular,
		"FileOrCreate":      os.FileMode.IsRegular,
		"Socket":            func(m os.FileMode) bool { return m&os.ModeSocket != 0 },
		"CharDevice":        func(m os.FileMode) bool { return m&os.ModeCharDevice != 0 },
		"BlockDevice":       func(m os.FileMode) bool { return m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0 },
	}
	if ok, known := want[typ]; known && !ok(st.Mode()) {
		return &VolumeError{Volume: vol.Name, Msg: fmt.Sprintf("hostPath %q is not a %s", h.Path, typ)}
	}
	return nil
}

// overLimit returns why the pod must be evicted when one of its disk
// emptyDirs holds more than its sizeLimit (a memory one is a tmpfs of that
// size), as the kubelet words it; "" otherwise.
func (w *podWorker) overLimit() string {
	w.mu.Lock()
	vols := w.pod.Spec.Volumes
	w.mu.Unlock()
	root := w.m.volumeRoot(w.key)
	for _, vol := range vols {
		e := vol.EmptyDir
		if e == nil || e.Medium == api.MediumMemory || e.SizeLimit == "" {
			continue
		}
		limit, err := api.ParseMemory(e.SizeLimit)
		if err != nil || limit <= 0 {
			continue
		}
		if used := dirSize(filepath.Join(root, vol.Name)); used > limit {
			return fmt.Sprintf("Usage of EmptyDir volume %q exceeds the limit %q.", vol.Name, e.SizeLimit)
		}
	}
	return ""
}

// dirSize is the bytes the files under dir take on disk.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
