package continual

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/train"
)

// Files WriteReport writes.
const (
	ReportFile  = "continual.json"
	HeatMapFile = "continual.png"
)

// report is continual.json; NaN values are written as null.
type report struct {
	Strategy       Strategy          `json:"strategy"`
	Tasks          []string          `json:"tasks"`
	StepsPerTask   int               `json:"steps_per_task"`
	Acc            [][]*float64      `json:"acc"`
	AvgAcc         *float64          `json:"avg_acc"`
	BWT            *float64          `json:"bwt"`
	Forgetting     *float64          `json:"forgetting"`
	EvalLoss       [][]*float64      `json:"eval_loss"`
	TrainLoss      []*float64        `json:"train_loss"`
	FirstTrainLoss []*float64        `json:"first_train_loss"`
	ElapsedS       float64           `json:"elapsed_s"`
	Settings       map[string]string `json:"settings,omitempty"`
}

func nullable(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func nullables(v []float64) []*float64 {
	out := make([]*float64, len(v))
	for i := range v {
		out[i] = nullable(v[i])
	}
	return out
}

func nullMatrix(m [][]float64) [][]*float64 {
	out := make([][]*float64, len(m))
	for i := range m {
		out[i] = nullables(m[i])
	}
	return out
}

// WriteReport writes dir/continual.json (the result and the given
// settings) and dir/continual.png (a heat map of the accuracy matrix, or
// of the evaluation losses when no task has answers), atomically.
func WriteReport(dir string, r *Result, settings map[string]string) error {
	rep := report{
		Strategy: r.Strategy, Tasks: r.Tasks, StepsPerTask: r.Steps,
		Acc: nullMatrix(r.Acc), AvgAcc: nullable(r.AvgAcc), BWT: nullable(r.BWT), Forgetting: nullable(r.Forgetting),
		EvalLoss: nullMatrix(r.EvalLoss), TrainLoss: nullables(r.TrainLoss), FirstTrainLoss: nullables(r.FirstLoss),
		ElapsedS: r.Elapsed.Seconds(), Settings: settings,
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, ReportFile), 0o644, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	}); err != nil {
		return err
	}
	return r.heatMap().Write(filepath.Join(dir, HeatMapFile))
}

// heatMap is the picture of the accuracy matrix: rows are the model
// after each task (Joint: after each Steps steps), columns the tasks.
func (r *Result) heatMap() *train.HeatMap {
	h := &train.HeatMap{
		Title:    fmt.Sprintf("exact match %% (%s)", r.Strategy),
		RowLabel: "after training", ColLabel: "evaluated on",
		Cols: r.Tasks, Values: r.Acc,
	}
	if math.IsNaN(r.AvgAcc) { // no task has answers: show losses, scaled to the largest
		h.Title = fmt.Sprintf("eval loss / max (%s)", r.Strategy)
		h.Values = scaledLosses(r.EvalLoss)
	}
	for i := range r.Acc {
		h.Rows = append(h.Rows, r.RowLabel(i))
	}
	return h
}

// RowLabel names row i of the matrices: the task just trained, or for
// Joint the steps trained so far.
func (r *Result) RowLabel(i int) string {
	if r.Strategy == StrategyJoint {
		return fmt.Sprintf("%d steps", (i+1)*r.Steps)
	}
	return r.Tasks[i]
}

// scaledLosses divides every loss by the largest one, into [0, 1].
func scaledLosses(m [][]float64) [][]float64 {
	top := 0.0
	for _, row := range m {
		for _, v := range row {
			top = math.Max(top, v)
		}
	}
	out := make([][]float64, len(m))
	for i, row := range m {
		out[i] = make([]float64, len(row))
		for j, v := range row {
			out[i][j] = v / top
		}
	}
	return out
}
