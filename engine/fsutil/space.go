package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FreeBytes returns the bytes an unprivileged writer can still write on
// the file system holding dir.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// IsTemp reports whether name is a temporary file or folder of
// WriteFileAtomic or of a checkpoint being assembled: ".<name>.tmp-<random>".
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// RemoveTemps deletes the temporaries (IsTemp) a crashed or killed writer
// left directly in dir, and returns their names. Only gotune's writers
// create such names, and only the holder of dir's lock may call it.
func RemoveTemps(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if !IsTemp(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// MoveAside moves every entry of dir except keep (the lock file) into a
// new sibling folder dir.old-<n> (the first n not taken) and returns its
// path: a folder is emptied for a new run without deleting anything.
func MoveAside(dir string, keep ...string) (string, error) {
	clean := filepath.Clean(dir)
	var aside string
	for n := 1; ; n++ {
		aside = clean + ".old-" + strconv.Itoa(n)
		err := os.Mkdir(aside, 0o755)
		if err == nil {
			break
		}
		if !os.IsExist(err) {
			return "", fmt.Errorf("moving the contents of %s aside: %w", dir, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	skip := map[string]bool{}
	for _, k := range keep {
		skip[k] = true
	}
	for _, e := range entries {
		if skip[e.Name()] {
			continue
		}
		if err := os.Rename(filepath.Join(dir, e.Name()), filepath.Join(aside, e.Name())); err != nil {
			return aside, fmt.Errorf("moving the contents of %s aside to %s: %w", dir, aside, err)
		}
	}
	syncDir(dir)
	syncDir(filepath.Dir(clean))
	return aside, nil
}

// syncDir makes renames in dir durable where the file system can.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
