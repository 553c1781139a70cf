package finetune

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
)

// claimOutDir creates Out, locks it for this run and makes sure it holds
// no other run: a folder with contents needs Resume (continue that run)
// or Overwrite (move them aside first). The lock is held until the job
// returns.
func claimOutDir(o *JobOptions) (*fsutil.Lock, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("Out"), err)
	}
	lock, err := fsutil.LockDir(o.Out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("Out"), err)
	}
	prev, err := train.PreviousRun(o.Out, ConfigFile)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("%s: %w", o.name("Out"), err)
	}
	switch {
	case len(prev) == 0 || o.Resume != "":
		return lock, nil
	case o.Overwrite:
		aside, err := fsutil.MoveAside(o.Out, fsutil.LockFile)
		if err != nil {
			lock.Release()
			return nil, fmt.Errorf("%s: %w", o.name("Overwrite"), err)
		}
		fmt.Fprintf(o.Warn, "note: %s: moved the previous contents of %s to %s\n", o.name("Overwrite"), o.Out, aside)
		return lock, nil
	}
	lock.Release()
	shown := prev
	if len(shown) > 4 {
		shown = append(slices.Clone(shown[:4]), fmt.Sprintf("and %d more", len(prev)-4))
	}
	return nil, fmt.Errorf("%s %s already holds files (%s): add %s %s to continue that run, or %s to move them aside first (nothing is deleted)",
		o.name("Out"), o.Out, strings.Join(shown, ", "), o.name("Resume"), o.Out, o.name("Overwrite"))
}

// checkOutSpace estimates what the run will write into Out (the result
// in its saved dtype, the checkpoints kept) and refuses to start when the
// disk cannot hold the result and one checkpoint; it warns when it cannot
// hold everything the run would keep.
func checkOutSpace(o *JobOptions, tr *train.Trainer, m model.Model, fullWeights bool) error {
	var all, trainable int64
	for _, p := range m.Params() {
		all += int64(p.W.Len())
	}
	for _, p := range tr.Trainable() {
		trainable += int64(p.W.Len())
	}
	final, ckptWeights := 4*trainable, 4*trainable // an adapter, float32
	if fullWeights {
		size, _ := safetensors.DTypeSize(o.Save.DType)
		final, ckptWeights = int64(size)*all, 4*all
	}
	warning, err := train.CheckDisk(o.Out, tr.DiskNeed(final, ckptWeights))
	if err != nil {
		return fmt.Errorf("%s: %w", o.name("Out"), err)
	}
	if warning != "" {
		fmt.Fprintf(o.Warn, "warning: %s: %s (lower %s)\n", o.name("Out"), warning, o.name("Train.SaveTotalLimit"))
	}
	return nil
}

// jobSavers are what saves a run's result, checkpoints and best model.
type jobSavers struct {
	final, ckpt, best train.Saver
	fullWeights       bool
	save              model.SaveOptions // resolved, for full weights
}

// savers returns the savers of a run whose method returned saver (nil:
// full weights, stored as o.Save says).
func (o *JobOptions) savers(m model.Model, saver train.Saver, hc *hfconfig.Config) (*jobSavers, error) {
	s := &jobSavers{final: saver, fullWeights: saver == nil}
	if s.fullWeights && o.Train.SaveEvery > 0 {
		// A full checkpoint is usable on its own, like the final save.
		s.ckpt = saverFunc(func(dir string) error {
			// Always float32, whatever Save says: these are the exact
			// weights a resumed run continues from.
			if err := m.SaveWithOptions(dir, model.SaveOptions{DType: "F32", MaxShardBytes: o.Save.MaxShardBytes}); err != nil {
				return err
			}
			_, err := CopyTokenizerFiles(o.Model, dir)
			return err
		})
	}
	if !s.fullWeights {
		if o.Explicit.Has("Save.DType", "Save.MaxShardBytes") {
			return nil, optionErrorf("Save", "%s and %s apply to full-weight checkpoints (%s full or freeze); %s %s saves an adapter folder",
				o.name("Save.DType"), o.name("Save.MaxShardBytes"), o.name("Method"), o.name("Method"), o.Method)
		}
		return s, nil
	}
	// Auto means the base model's torch_dtype, also when the weights were
	// resumed from a (float32) checkpoint.
	var err error
	if s.save, err = o.Save.Resolve(hc.TorchDtype); err != nil {
		return nil, &OptionError{Option: "Save", Msg: err.Error()}
	}
	o.Save = s.save
	s.final = fullSaver{m, s.save}
	// The best model is used on its own too: it gets the tokenizer.
	s.best = saverFunc(func(dir string) error {
		if err := s.final.Save(dir); err != nil {
			return err
		}
		_, err := CopyTokenizerFiles(o.Model, dir)
		return err
	})
	return s, nil
}

// saverFunc adapts a function to train.Saver.
type saverFunc func(dir string) error

func (f saverFunc) Save(dir string) error { return f(dir) }

// fullSaver saves the whole model with the chosen options (the trainer's
// Saver for full-weight methods).
type fullSaver struct {
	m    model.Model
	opts model.SaveOptions
}

func (s fullSaver) Save(dir string) error { return s.m.SaveWithOptions(dir, s.opts) }

// DescribeSaved says how the weights in dir were stored, e.g. "BF16" or
// "BF16 in 3 shards".
func DescribeSaved(m model.Model, opts model.SaveOptions, dir string) string {
	r, err := opts.Resolve(m.Config().TorchDtype)
	if err != nil {
		return ""
	}
	shards, _ := filepath.Glob(filepath.Join(dir, "model-*-of-*.safetensors"))
	if len(shards) > 1 {
		return fmt.Sprintf("%s in %d shards", r.DType, len(shards))
	}
	return r.DType
}

// TokenizerFiles are copied next to a merged or fully fine-tuned model
// when the base has them.
var TokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
	"vocab.json", "merges.txt", "added_tokens.json", "generation_config.json",
}

// CopyTokenizerFiles copies the base model's tokenizer files (those of
// TokenizerFiles it has) from folder from to folder to, atomically, and
// returns how many there were.
func CopyTokenizerFiles(from, to string) (int, error) {
	n := 0
	for _, name := range TokenizerFiles {
		src := filepath.Join(from, name)
		f, err := os.Open(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		err = fsutil.WriteFileAtomic(filepath.Join(to, name), 0o644, func(w io.Writer) error {
			_, err := io.Copy(w, f)
			return err
		})
		f.Close()
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// SameDir reports whether a and b name the same existing directory.
func SameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}
