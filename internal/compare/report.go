package compare

import (
	"fmt"
	"image/color"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/train"
)

// afterLastStep is an eval period no run reaches: the trainer then
// evaluates after the last step only.
const afterLastStep = 1 << 30

// JSONFile and PlotFile are what WriteReport writes into Config.Out.
const (
	JSONFile = "compare.json"
	PlotFile = "compare.png"
)

// Report is compare.json.
type Report struct {
	// Steps, BatchSize, SeqLen and EvalEvery are the shared budget.
	Steps     int `json:"steps"`
	BatchSize int `json:"batch_size"`
	SeqLen    int `json:"seq_len"`
	EvalEvery int `json:"eval_every"`
	// Device is the backend's name.
	Device string `json:"device"`
	// Methods holds one entry per method, in run order.
	Methods []Result `json:"methods"`
}

// palette colours the methods' curves (Tableau 10, distinguishable for
// most colour-blind readers); it repeats past ten methods.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
	{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
	{188, 189, 34, 255}, {23, 190, 207, 255},
}

// WriteReport writes dir/compare.json and dir/compare.png (the methods'
// eval-loss curves overlaid; their train-loss curves when no method has
// an eval curve), atomically.
func WriteReport(dir string, rep *Report) error {
	if err := fsutil.WriteJSONAtomic(filepath.Join(dir, JSONFile), rep); err != nil {
		return err
	}
	var series []train.Series
	for i, r := range rep.Methods {
		s := train.Series{Name: r.Method, Color: palette[i%len(palette)]}
		for _, p := range r.EvalCurve {
			s.X = append(s.X, float64(p.Step))
			s.Y = append(s.Y, p.Loss)
		}
		if len(s.X) > 0 {
			series = append(series, s)
		}
	}
	if len(series) == 0 {
		return nil
	}
	return train.WriteLossPlot(filepath.Join(dir, PlotFile), "eval loss by method", series...)
}

// WriteTable prints the results as an aligned table.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\ttrainable\t%\tpeak mem\ttok/s\ttrain loss\teval loss\texact match\tlr\t")
	for _, r := range rs {
		pct := 0.0
		if r.TotalParams > 0 {
			pct = 100 * float64(r.TrainableParams) / float64(r.TotalParams)
		}
		mem := "n/a"
		if r.PeakMemBytes > 0 {
			mem = engine.FormatMiB(r.PeakMemBytes)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%s\t%.0f\t%.4f\t%s\t%s\t%g\t\n", r.Method, r.TrainableParams, pct, mem,
			r.TokensPerS, r.TrainLoss, optional(r.EvalLoss, "%.4f", 1), optional(r.ExactMatch, "%.1f%%", 100), r.LR)
	}
	return tw.Flush()
}

// optional formats *v scaled by k, or "n/a" when v is nil.
func optional(v *float64, format string, k float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v*k)
}
