// Package fsutil holds small file-system helpers shared by gotune's writers.
//
// Every file a user keeps (checkpoints, configs, metrics summaries) is
// written atomically: a crash or a failing writer never leaves a truncated
// file where a good one used to be.
package fsutil

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFileAtomic writes a file at path so that readers see either the old
// contents or the complete new contents, never a mix or a truncation.
//
// It creates a temporary file in the same directory (rename is only atomic
// within one file system), hands a buffered writer to write, flushes, fsyncs
// and closes the temporary file, renames it over path and finally fsyncs the
// directory so the rename itself survives a power loss. On any failure the
// temporary file is removed and the old file, if any, is left untouched.
// The final file gets exactly permission perm (set explicitly, so the umask
// does not apply). The error names path.
func WriteFileAtomic(path string, perm os.FileMode, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close() // harmless if already closed
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = write(bw); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: sync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The data is in place; a failing directory sync only weakens the
	// durability guarantee, but report it so callers know.
	if d, derr := os.Open(dir); derr == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil && !isUnsupportedSync(serr) {
			return fmt.Errorf("writing %s: sync directory %s: %w", path, dir, serr)
		}
	}
	return nil
}

// isUnsupportedSync reports errors from file systems that cannot fsync a
// directory (some network and virtual file systems); those are not failures
// of the write.
func isUnsupportedSync(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP)
}

// WriteJSONAtomic writes v as indented JSON followed by a newline, atomically,
// with permission 0644.
func WriteJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	data = append(data, '\n')
	return WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}
