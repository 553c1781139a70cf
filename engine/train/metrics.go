package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gotune/gotune/engine/fsutil"
)

// MetricsFile and LossPlotFile are the names Run writes under OutDir.
const (
	MetricsFile  = "metrics.jsonl"
	LossPlotFile = "loss.png"
)

func lossPlotPath(dir string) string { return filepath.Join(dir, LossPlotFile) }

// MarshalJSON writes the step's fields followed by its eval metrics
// (sorted by name), all numbers at full float64 precision. Non-finite
// eval values, which JSON cannot hold, are written as null.
func (m StepMetrics) MarshalJSON() ([]byte, error) {
	type plain StepMetrics // without the method, to avoid recursion
	b, err := json.Marshal(plain(m))
	if err != nil {
		return nil, err
	}
	if len(m.Eval) == 0 {
		return b, nil
	}
	keys := make([]string, 0, len(m.Eval))
	for k := range m.Eval {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		v := m.Eval[k]
		vb := []byte("null")
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			vb, _ = json.Marshal(v)
		}
		buf.WriteByte(',')
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(vb)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// metricsWriter appends one JSON line per step to OutDir/metrics.jsonl.
// Each line goes to the OS as it is written, so a crash loses at most
// the step in progress and `tail -f` shows progress live. The file is
// created afresh (truncated) at the start of a run, and appended to when
// a run resumes.
type metricsWriter struct {
	f    *os.File
	path string
}

// openMetricsWriter opens dir/metrics.jsonl for a run starting after
// step `done`: a fresh run (done 0) truncates it; a resumed run keeps
// the lines of steps up to done and drops later ones (the stopped run
// got further than its checkpoint) and lines cut short by a crash,
// rewriting the file atomically only when something is dropped.
func openMetricsWriter(dir string, done int) (*metricsWriter, error) {
	path := filepath.Join(dir, MetricsFile)
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if done == 0 {
		flags |= os.O_TRUNC
	} else if err := trimMetrics(path, done); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return &metricsWriter{f: f, path: path}, nil
}

// trimMetrics drops the lines of path whose step is after done, or that
// do not parse.
func trimMetrics(path string, done int) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	var kept bytes.Buffer
	dropped := false
	for _, line := range bytes.SplitAfter(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m struct {
			Step *int `json:"step"`
		}
		if !bytes.HasSuffix(line, []byte("\n")) || json.Unmarshal(line, &m) != nil || m.Step == nil || *m.Step > done {
			dropped = true
			continue
		}
		kept.Write(line)
	}
	if !dropped {
		return nil
	}
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(kept.Bytes())
		return err
	})
}

func (w *metricsWriter) Write(m StepMetrics) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("metrics for step %d: %w", m.Step, err)
	}
	if _, err := w.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing %s: %w", w.path, err)
	}
	return nil
}

// Close closes the file; calling it again is a no-op.
func (w *metricsWriter) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if err != nil {
		return fmt.Errorf("closing %s: %w", w.path, err)
	}
	return nil
}

// ReadMetrics reads a metrics.jsonl file back (for tests and tools).
func ReadMetrics(path string) ([]StepMetrics, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []StepMetrics
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m StepMetrics
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, i+1, err)
		}
		var all map[string]any
		if err := json.Unmarshal([]byte(line), &all); err == nil {
			for k, v := range all {
				if f, ok := v.(float64); ok && strings.HasPrefix(k, "eval_") {
					if m.Eval == nil {
						m.Eval = map[string]float64{}
					}
					m.Eval[k] = f
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// historySeries turns the run's history into the loss plot's series:
// the training loss, and the eval loss when there is one.
func historySeries(h []StepMetrics) []Series {
	tr := Series{Name: "train", Color: TrainColor}
	ev := Series{Name: "eval", Color: EvalColor}
	for _, m := range h {
		tr.X = append(tr.X, float64(m.Step))
		tr.Y = append(tr.Y, m.Loss)
		if v, ok := m.Eval["eval_loss"]; ok {
			ev.X = append(ev.X, float64(m.Step))
			ev.Y = append(ev.Y, v)
		}
	}
	if len(ev.X) == 0 {
		return []Series{tr}
	}
	return []Series{tr, ev}
}

// progress prints one line every `every` steps (and at the first and last).
type progress struct {
	w     io.Writer
	every int
	total int
	first int // steps done before this process (a resumed run)
}

func (p *progress) report(m StepMetrics, elapsed time.Duration) {
	if p.every <= 0 || (m.Step%p.every != 0 && m.Step != p.first+1 && m.Step != p.total) {
		return
	}
	// The ETA extrapolates from this process's steps (elapsed is its time).
	eta := time.Duration(0)
	if n := m.Step - p.first; n > 0 {
		eta = time.Duration(float64(elapsed) / float64(n) * float64(p.total-m.Step))
	}
	var sb strings.Builder
	width := len(fmt.Sprint(p.total))
	fmt.Fprintf(&sb, "step %*d/%d  loss %.4f  lr %.3g  grad_norm %.3f  tok/s %.0f  elapsed %s  eta %s",
		width, m.Step, p.total, m.Loss, m.LR, m.GradNorm, m.TokensPerS, fmtDuration(elapsed), fmtDuration(eta))
	keys := make([]string, 0, len(m.Eval))
	for k := range m.Eval {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&sb, "  %s %.4f", k, m.Eval[k])
	}
	fmt.Fprintln(p.w, sb.String())
}

// fmtDuration prints a duration compactly at a precision that suits it:
// "850ms", "12.3s", "4m05s", "2h03m".
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}
