package demo

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRecipe(t *testing.T) {
	cfg, err := Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.VocabSize != 256+len(Tokenizer.Specials) {
		t.Errorf("vocab %d does not fit the tokenizer", cfg.VocabSize)
	}
	for _, name := range append(PretrainTasks, HeldOutTask) {
		if _, err := LookupTask(name); err != nil {
			t.Error(err)
		}
	}
	if slices.Contains(PretrainTasks, HeldOutTask) {
		t.Errorf("the held-out task %s is pretrained on", HeldOutTask)
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	if _, err := Find(dir); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("empty dir: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644)
	if got, err := Find(dir); err != nil || got != dir {
		t.Errorf("Find(%s) = %s, %v", dir, got, err)
	}
}
