package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirEntries lists the names in dir, to catch leftover temporary files.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		existing string // "" = no previous file
		write    func(w io.Writer) error
		perm     os.FileMode
		wantErr  error
		want     string // file content afterwards
	}{
		{
			name:  "new file",
			write: func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err },
			perm:  0o640, want: "hello",
		},
		{
			name: "replace existing", existing: "old contents",
			write: func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err },
			perm:  0o644, want: "new",
		},
		{
			name: "failing writer keeps old file", existing: "precious",
			write: func(w io.Writer) error {
				// Write enough to be sure something reached the temp file.
				if _, err := w.Write(make([]byte, 3<<20)); err != nil {
					return err
				}
				return boom
			},
			perm: 0o644, wantErr: boom, want: "precious",
		},
		{
			name:    "failing writer, no previous file",
			write:   func(w io.Writer) error { return boom },
			perm:    0o644,
			wantErr: boom,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "model.bin")
			if tc.existing != "" {
				if err := os.WriteFile(path, []byte(tc.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFileAtomic(path, tc.perm, tc.write)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("error = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.want == "" && !os.IsNotExist(err):
				t.Errorf("file exists after failed first write (err %v)", err)
			case tc.want != "" && string(got) != tc.want:
				t.Errorf("content = %.20q, want %q", got, tc.want)
			}
			wantNames := 0
			if tc.want != "" {
				wantNames = 1
			}
			if names := dirEntries(t, dir); len(names) != wantNames {
				t.Errorf("directory holds %v; want only the target file (no temp files)", names)
			}
			if tc.wantErr == nil {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != tc.perm {
					t.Errorf("mode = %v, want %v", st.Mode().Perm(), tc.perm)
				}
			}
		})
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "f.json")
	err := WriteFileAtomic(path, 0o644, func(w io.Writer) error { return nil })
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error = %v, want one naming %s", err, path)
	}
}

func TestWriteJSONAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.json")
	v := map[string]any{"b": []int{1, 2}, "a": "é<"}
	if err := WriteJSONAtomic(path, v); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": \"é\\u003c\",\n  \"b\": [\n    1,\n    2\n  ]\n}\n"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// A value that cannot be marshaled leaves the previous file alone.
	if err := WriteJSONAtomic(path, map[string]any{"c": make(chan int)}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error = %v, want a marshal error naming %s", err, path)
	}
	if again, _ := os.ReadFile(path); string(again) != want {
		t.Errorf("file changed after failed write: %q", again)
	}
	if names := dirEntries(t, dir); len(names) != 1 {
		t.Errorf("directory holds %v, want only x.json", names)
	}
}
