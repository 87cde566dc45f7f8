package runtime

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// VolumeFile is one file of a configMap, secret, downwardAPI or projected
// volume.
type VolumeFile struct {
	Data []byte
	Mode os.FileMode
}

// dataDirName is the symlink through which every key of a volume is seen,
// as the kubelet names it.
const dataDirName = "..data"

// oldVersionGrace is how long a replaced version of a volume's files is
// kept for readers that resolved ..data to it just before the swap.
const oldVersionGrace = 30 * time.Second

// WriteAtomic makes dir hold exactly files (paths relative to dir), so
// that a reader never sees half an update, as the kubelet's atomic writer
// does: the files go to a new timestamped directory "..<time>", the
// symlink "..data" is swapped to it with one rename, and each top-level
// name is a symlink through "..data". The old directory is removed
// afterwards. It reports whether anything changed. Paths must be relative
// and must not hold "..", which validation guarantees; they are checked
// again here.
func WriteAtomic(dir string, files map[string]VolumeFile, now time.Time) (changed bool, err error) {
	for p := range files {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") || strings.Contains("/"+p+"/", "/../") {
			return false, fmt.Errorf("volume file %q: must be a relative path without '..'", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	dataLink := filepath.Join(dir, dataDirName)
	old, err := os.Readlink(dataLink)
	if err == nil && sameFiles(filepath.Join(dir, old), files) {
		return false, nil
	}
	tsDir, err := os.MkdirTemp(dir, now.UTC().Format("..2006_01_02_15_04_05.")) // ..<time>.<random>
	if err != nil {
		return false, err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return false, err
	}
	for _, p := range sortedFileKeys(files) {
		f := files[p]
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			os.RemoveAll(tsDir)
			return false, err
		}
		if err := os.WriteFile(full, f.Data, f.Mode.Perm()); err != nil {
			os.RemoveAll(tsDir)
			return false, err
		}
		if err := os.Chmod(full, f.Mode.Perm()); err != nil { // past the umask
			os.RemoveAll(tsDir)
			return false, err
		}
	}
	// The swap: a new symlink renamed over the old one.
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		os.RemoveAll(tsDir)
		return false, err
	}
	if err := os.Rename(tmpLink, dataLink); err != nil {
		os.RemoveAll(tsDir)
		return false, err
	}
	// Top-level names: a symlink each through ..data; names no longer
	// present are removed.
	top := map[string]bool{}
	for p := range files {
		first, _, _ := strings.Cut(p, "/")
		top[first] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		want := filepath.Join(dataDirName, name)
		if cur, err := os.Readlink(link); err == nil && cur == want {
			continue
		}
		tmp := link + ".tmp-link"
		_ = os.Remove(tmp)
		if err := os.Symlink(want, tmp); err != nil {
			return true, err
		}
		if err := os.Rename(tmp, link); err != nil {
			return true, err
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return true, err
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == dataDirName || name == filepath.Base(tsDir) || name == old:
		case strings.HasPrefix(name, ".."):
			// Older versions go once they have been replaced for a while:
			// a reader that resolved ..data to one of them a moment ago
			// still finds its files.
			if info, err := e.Info(); err == nil && info.ModTime().Before(now.Add(-oldVersionGrace)) {
				_ = os.RemoveAll(filepath.Join(dir, name))
			}
		case !top[name] && e.Type()&os.ModeSymlink != 0:
			_ = os.Remove(filepath.Join(dir, name))
		}
	}
	return true, nil
}

func sortedFileKeys(m map[string]VolumeFile) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sameFiles reports whether dir holds exactly files, with their modes.
func sameFiles(dir string, files map[string]VolumeFile) bool {
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		f, ok := files[rel]
		if !ok {
			return fmt.Errorf("extra")
		}
		info, err := d.Info()
		if err != nil || info.Mode().Perm() != f.Mode.Perm() {
			return fmt.Errorf("mode")
		}
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.Data) {
			return fmt.Errorf("data")
		}
		n++
		return nil
	})
	return err == nil && n == len(files)
}
