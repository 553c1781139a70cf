package train

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
)

// The best model and early stopping. After each evaluation the trainer
// compares EvalLossMetric with the lowest so far: with Config.KeepBest a
// new lowest is saved into OutDir/best (assembled in a hidden folder and
// renamed into place, so a crash leaves the previous best whole), and
// with Config.EarlyStoppingPatience the run ends after that many
// evaluations in a row without one. The run's final output stays the
// last step's model, as checkpoints are; the best one is beside it.
const (
	// EvalLossMetric is the evaluation metric the best model is chosen
	// by (lower is better).
	EvalLossMetric = "eval_loss"
	// BestDir is the folder under OutDir that holds the best model.
	BestDir = "best"
)

// bestTracker follows the lowest eval loss of a run.
type bestTracker struct {
	loss  float64 // lowest EvalLossMetric so far; +Inf before any
	step  int     // step it was measured after; 0 before any
	since int     // evaluations since then
}

func newBestTracker() bestTracker { return bestTracker{loss: math.Inf(1)} }

// afterEval records step m's evaluation, saves a new best model when
// KeepBest asks for it, and reports whether early stopping ends the run.
func (t *Trainer) afterEval(m StepMetrics) (stop bool, err error) {
	loss, ok := m.Eval[EvalLossMetric]
	if !ok || math.IsNaN(loss) {
		return false, nil
	}
	if loss < t.best.loss {
		t.best = bestTracker{loss: loss, step: m.Step}
		if t.cfg.KeepBest && !t.opts.follower() {
			if err := t.saveBest(); err != nil {
				return false, fmt.Errorf("saving the best model after step %d: %w", m.Step, err)
			}
		}
		return false, nil
	}
	t.best.since++
	p := t.cfg.EarlyStoppingPatience
	return p > 0 && t.best.since >= p, nil
}

// saveBest replaces OutDir/best with the current model.
func (t *Trainer) saveBest() error {
	saver := t.opts.BestSaver
	if saver == nil {
		saver = t.opts.Saver
	}
	final := filepath.Join(t.cfg.OutDir, BestDir)
	tmp, err := os.MkdirTemp(t.cfg.OutDir, "."+BestDir+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := saver.Save(tmp); err != nil {
		return err
	}
	old := tmp + ".old"
	if err := os.Rename(final, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	syncDir(t.cfg.OutDir)
	return os.RemoveAll(old)
}
