package train

import (
	"fmt"
	"os"
	"slices"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fsutil"
)

// PreviousRun lists what dir holds besides gotune's lock file,
// temporaries and an empty metrics.jsonl (sorted names), or nil when dir
// is missing or holds nothing else. leftovers are files a run writes
// before its first step (the resolved config): alone they mean a run that
// failed before training and are not listed; next to anything else they
// are. A new run into a folder that holds a previous run would mix its
// files with the old ones (metrics.jsonl cut to the new run, old
// checkpoints picked up by a later resume), so the caller must be told to
// resume or move it aside.
func PreviousRun(dir string, leftovers ...string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names, early []string
	for _, e := range entries {
		switch {
		case e.Name() == fsutil.LockFile || fsutil.IsTemp(e.Name()) || e.Name() == MetricsFile && emptyFile(dir, e):
			// an empty metrics.jsonl: a run that failed before its first step
		case slices.Contains(leftovers, e.Name()):
			early = append(early, e.Name())
		default:
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	names = append(names, early...)
	slices.Sort(names)
	return names, nil
}

func emptyFile(dir string, e os.DirEntry) bool {
	info, err := e.Info()
	return err == nil && info.Mode().IsRegular() && info.Size() == 0
}

// DiskNeed is what a run will write under Config.OutDir, in bytes.
type DiskNeed struct {
	// Final is the final save (the Saver's files).
	Final int64
	// Checkpoint is one checkpoint: its weights and the AdamW moments.
	Checkpoint int64
	// Checkpoints is the most checkpoints on disk at once: those kept
	// (SaveTotalLimit, or all) plus the one being written before the
	// oldest is removed.
	Checkpoints int
}

// Total is everything at once: the final save and the checkpoints kept.
func (d DiskNeed) Total() int64 { return d.Final + int64(d.Checkpoints)*d.Checkpoint }

// Minimum is what a run needs to end with its result saved: the final
// save plus one checkpoint (a failed checkpoint does not stop the run).
func (d DiskNeed) Minimum() int64 {
	if d.Checkpoints > 0 {
		return d.Final + d.Checkpoint
	}
	return d.Final
}

// DiskNeed estimates what Run will write, given the bytes of the final
// save and of a checkpoint's weights (the caller's Savers decide their
// formats); the trainer adds the AdamW moments (two float32 values per
// trainable value) and counts the checkpoints SaveEvery and
// SaveTotalLimit keep.
func (t *Trainer) DiskNeed(finalBytes, checkpointWeightBytes int64) DiskNeed {
	d := DiskNeed{Final: finalBytes}
	if t.cfg.SaveEvery == 0 {
		return d
	}
	var moments int64
	for _, p := range t.params {
		moments += 2 * 4 * int64(p.W.Len())
	}
	d.Checkpoint = checkpointWeightBytes + moments
	written := (t.total - t.step) / t.cfg.SaveEvery
	if t.cfg.SaveTotalLimit > 0 {
		written = min(written, t.cfg.SaveTotalLimit+1)
	}
	d.Checkpoints = written
	return d
}

// CheckDisk compares need with the free space of dir: an error when the
// run could not even save its result (and one checkpoint), a warning
// (non-empty) when everything it would keep does not fit (the caller
// names the setting that keeps fewer checkpoints).
func CheckDisk(dir string, need DiskNeed) (warning string, err error) {
	free, err := fsutil.FreeBytes(dir)
	if err != nil {
		return "", nil // unknown: nothing to say
	}
	if uint64(need.Minimum()) > free {
		return "", fmt.Errorf("%s has %s free but the run needs at least %s (the result %s%s); free some space or choose another folder",
			dir, engine.FormatMiB(free), engine.FormatMiB(uint64(need.Minimum())), engine.FormatMiB(uint64(need.Final)), oneCheckpoint(need))
	}
	if uint64(need.Total()) > free {
		return fmt.Sprintf("%s has %s free but the run would keep %s (the result and %d checkpoints of %s); later checkpoints may fail",
			dir, engine.FormatMiB(free), engine.FormatMiB(uint64(need.Total())), need.Checkpoints, engine.FormatMiB(uint64(need.Checkpoint))), nil
	}
	return "", nil
}

func oneCheckpoint(need DiskNeed) string {
	if need.Checkpoints == 0 {
		return ""
	}
	return " and one checkpoint of " + engine.FormatMiB(uint64(need.Checkpoint))
}
