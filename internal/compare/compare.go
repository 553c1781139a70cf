// Package compare trains several fine-tuning methods on the same model,
// data and budget and measures each: trainable parameters, peak device
// memory, training throughput, final train and eval loss, exact-match
// accuracy and the eval-loss curve. It is the library behind "gotune
// compare"; the CLI only turns flags into a Config.
//
// Every method runs through the same path as "gotune train": a fresh copy
// of the base model, the method's Apply, train.New and Trainer.Run with
// the same train.Config, the eval loss computed by train.EvalLoss every
// EvalEvery steps (train.Options.Eval) and exact match scored by
// generate.ExactMatch, as "gotune eval" does.
package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
)

// Method is one fine-tuning method to compare.
type Method struct {
	// Name labels the method in the table, the JSON and the plot, and
	// names its subfolder of Config.Out.
	Name string
	// Apply prepares a freshly loaded model as "gotune train --method"
	// does: it marks what trains. Its Saver is not used (compare keeps
	// metrics, not weights).
	Apply func(m model.Model, seed uint64) (train.Saver, error)
	// LR, when positive, replaces Config.Train.LR for this method.
	LR float64
}

// ExactMatch is the held-out set exact match is scored on.
type ExactMatch struct {
	Tok    tokenizer.Tokenizer
	Tmpl   chat.Template
	Convs  []textdata.Conversation
	MaxNew int
}

// Config is a comparison: the methods and what they share.
type Config struct {
	// Methods run in this order.
	Methods []Method
	// Load returns a fresh copy of the base model on the device.
	Load func() (model.Model, error)
	// TrainData and EvalData are the datasets; EvalData may be nil (no
	// eval loss).
	TrainData, EvalData *data.Dataset
	// Loader configures the training batches (the eval batches use its
	// BatchSize, SeqLen and PadID in file order).
	Loader data.LoaderConfig
	// Train is the shared budget and optimiser. OutDir is set per method
	// (Out/<method>); EvalEvery is the eval-loss period (0: after the
	// last step only, when EvalData is set).
	Train train.Config
	// TrainName names Train's fields in the trainer's run-time hints
	// (train.Options.Name); nil: their Go names.
	TrainName func(field string) string
	// Seed seeds every method's initialisation.
	Seed uint64
	// GradCheckpoint turns on gradient checkpointing for every method.
	GradCheckpoint bool
	// Exact, if set, is scored after each method's training.
	Exact *ExactMatch
	// Out is the output folder: Out/<method>/metrics.jsonl and loss.png.
	Out string
	// Log receives the trainers' progress lines; nil discards them.
	Log io.Writer
}

// Point is one eval-loss measurement.
type Point struct {
	Step int     `json:"step"`
	Loss float64 `json:"eval_loss"`
}

// Result is one method's measurements.
type Result struct {
	Method string `json:"method"`
	// TrainableParams counts the elements of the trainable tensors.
	TrainableParams int64 `json:"trainable_params"`
	// TotalParams counts every parameter element, the method's included.
	TotalParams int64 `json:"total_params"`
	// PeakMemBytes is the most memory the device's tensors held in any
	// step (engine.MemoryReporter); 0 when the backend does not report.
	PeakMemBytes uint64 `json:"peak_mem_bytes"`
	// TokensPerS is the counted tokens of all steps over the steps' wall
	// time (evaluation excluded).
	TokensPerS float64 `json:"tokens_per_s"`
	// TrainLoss is the last step's loss; EvalLoss the last eval loss (nil
	// without eval data).
	TrainLoss float64  `json:"train_loss"`
	EvalLoss  *float64 `json:"eval_loss"`
	// ExactMatch is the accuracy on the eval conversations (nil when not
	// scored).
	ExactMatch *float64 `json:"exact_match"`
	// LR is the peak learning rate the method trained with.
	LR float64 `json:"lr"`
	// Steps is the number of optimizer steps run.
	Steps int `json:"steps"`
	// EvalCurve is the eval loss every EvalEvery steps.
	EvalCurve []Point `json:"eval_curve"`
}

// Check applies every method to a fresh model before anything trains, so
// that a method that does not fit the model fails at once, naming it.
func Check(cfg *Config) error {
	if len(cfg.Methods) == 0 {
		return errors.New("no methods to compare")
	}
	for _, meth := range cfg.Methods {
		m, err := cfg.Load()
		if err != nil {
			return err
		}
		if _, err := meth.Apply(m, cfg.Seed); err != nil {
			return fmt.Errorf("method %s: %w", meth.Name, err)
		}
		if trainable(m) == 0 {
			return fmt.Errorf("method %s: nothing in the model trains", meth.Name)
		}
		runtime.GC() // let the device reclaim the trial copy
	}
	return nil
}

// Run trains every method in turn and returns their measurements. Run
// Check first for early errors.
func Run(ctx context.Context, cfg *Config) ([]Result, error) {
	var out []Result
	for _, meth := range cfg.Methods {
		r, err := runOne(ctx, cfg, meth)
		if err != nil {
			return out, fmt.Errorf("method %s: %w", meth.Name, err)
		}
		out = append(out, *r)
		runtime.GC() // free the previous model before the next one's peak is measured
		runtime.GC()
	}
	return out, nil
}

// discard is a train.Saver that writes nothing.
type discard struct{}

func (discard) Save(string) error { return nil }

// runOne trains one method and measures it.
func runOne(ctx context.Context, cfg *Config, meth Method) (*Result, error) {
	m, err := cfg.Load()
	if err != nil {
		return nil, err
	}
	if _, err := meth.Apply(m, cfg.Seed); err != nil {
		return nil, err
	}
	m.SetGradCheckpoint(cfg.GradCheckpoint)
	m.SetDropoutSeed(cfg.Seed)
	tcfg := cfg.Train
	tcfg.OutDir = filepath.Join(cfg.Out, meth.Name)
	if meth.LR > 0 {
		tcfg.LR = meth.LR
	}
	curve := &[]Point{}
	opts := train.Options{Log: cfg.Log, Saver: discard{}, Name: cfg.TrainName}
	if cfg.EvalData != nil {
		if tcfg.EvalEvery <= 0 {
			tcfg.EvalEvery = afterLastStep
		}
		if opts.Eval, err = EvalLossEvery(m, cfg.EvalData, cfg.Loader, curve); err != nil {
			return nil, err
		}
	}
	loader, err := data.NewLoader(cfg.TrainData, cfg.Loader)
	if err != nil {
		return nil, err
	}
	res, err := train.RunToEnd(ctx, m, loader, tcfg, opts)
	if err != nil {
		return nil, err
	}
	r := &Result{Method: meth.Name, PeakMemBytes: res.PeakMemBytes, LR: tcfg.LR, Steps: res.Steps, EvalCurve: *curve}
	r.TrainableParams, r.TotalParams = trainable(m), total(m)
	r.TokensPerS, r.TrainLoss = throughput(res.History)
	if n := len(*curve); n > 0 {
		v := (*curve)[n-1].Loss
		r.EvalLoss = &v
	}
	if cfg.Exact != nil {
		em, err := generate.ExactMatch(ctx, m, cfg.Exact.Tok, cfg.Exact.Tmpl, cfg.Exact.Convs, cfg.Exact.MaxNew, nil)
		if err != nil {
			return nil, fmt.Errorf("exact match: %w", err)
		}
		acc := em.Accuracy()
		r.ExactMatch = &acc
	}
	return r, nil
}

// EvalLossEvery returns a trainer EvalFunc that computes the mean token
// loss of ds (batches of lc's size and length, in file order), reports it
// as "eval_loss" and appends it to curve. Shared helper: any loop that
// trains with train.Trainer and wants an eval-loss curve can use it.
func EvalLossEvery(m engine.CausalLM, ds *data.Dataset, lc data.LoaderConfig, curve *[]Point) (train.EvalFunc, error) {
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: lc.BatchSize, SeqLen: lc.SeqLen, PadID: lc.PadID})
	if err != nil {
		return nil, fmt.Errorf("eval data: %w", err)
	}
	return func(ctx context.Context, step int) (map[string]float64, error) {
		loss, _, err := train.EvalLoss(m, loader)
		if err != nil {
			return nil, err
		}
		*curve = append(*curve, Point{Step: step, Loss: loss})
		return map[string]float64{"eval_loss": loss}, nil
	}, nil
}

// throughput returns the run's tokens per second of step time and the
// last step's loss.
func throughput(h []train.StepMetrics) (tokPerS, last float64) {
	var tokens, secs float64
	for _, s := range h {
		if s.TokensPerS > 0 {
			tokens += float64(s.Tokens)
			secs += float64(s.Tokens) / s.TokensPerS
		}
	}
	if secs > 0 {
		tokPerS = tokens / secs
	}
	if n := len(h); n > 0 {
		last = h[n-1].Loss
	}
	return tokPerS, last
}

// trainable counts the elements of m's trainable parameters.
func trainable(m model.Model) int64 {
	var n int64
	for _, p := range m.Params() {
		if p.Trainable {
			n += int64(p.W.Len())
		}
	}
	return n
}

// total counts the elements of every parameter of m.
func total(m model.Model) int64 {
	var n int64
	for _, p := range m.Params() {
		n += int64(p.W.Len())
	}
	return n
}

// ParseMethods splits a comma-separated --methods list, rejecting empty
// and repeated names and names not in known (one error naming them all).
func ParseMethods(list string, known []string) ([]string, error) {
	var out, bad []string
	seen := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			return nil, fmt.Errorf("empty method name in %q", list)
		case seen[f]:
			return nil, fmt.Errorf("method %s is listed twice", f)
		}
		seen[f] = true
		found := false
		for _, k := range known {
			found = found || k == f
		}
		if !found {
			bad = append(bad, f)
		}
		out = append(out, f)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("unknown method %s (available: %s)", strings.Join(bad, ", "), strings.Join(known, ", "))
	}
	return out, nil
}
