// Package benchtrain implements `gotune bench train`: the throughput
// (tokens/s), model-FLOPs utilisation and device memory of a few
// optimizer steps of LoRA and full fine-tuning on LLaMA-shaped models
// with random weights and random tokens.
//
// Each case runs on a backend of its own (opened, used, closed), so its
// memory figure is its own. scripts/bench_peft.py runs the same cases
// through PyTorch + transformers + PEFT from this package's JSON plan
// (--dry-run --json), and scripts/gpu-check.sh sets the two side by side.
package benchtrain

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/benchutil"
	"github.com/gotune/gotune/internal/devicepeaks"
	"github.com/gotune/gotune/methods/lora"
)

// Method is what a case trains.
type Method string

// The methods.
const (
	// Full trains every weight.
	Full Method = "full"
	// LoRA trains a rank-r adapter on every linear layer but lm_head
	// (PEFT's all-linear), the base frozen.
	LoRA Method = "lora"
)

// The --precision values.
const (
	PrecisionAuto = "auto"
	PrecisionFP32 = "fp32"
	PrecisionBF16 = "bf16"
)

// MemPeak names the memory measure of a backend that tracks its live
// tensors (engine.MemoryReporter).
const MemPeak = "peak: the largest storage of live tensors during any timed step (engine.MemoryReporter; " +
	"PyTorch's counterpart is torch.cuda.max_memory_allocated)"

// MemHeld names the memory measure of a backend that reports only what its
// caching allocator holds (cuda.Backend.MemoryInUse): the fallback.
const MemHeld = "held: bytes the backend's caching allocator holds from the driver (live tensors and cache), " +
	"the largest value after any step; the cache returns nothing mid-run, so this bounds the step's peak from above " +
	"(PyTorch's counterpart is torch.cuda.max_memory_reserved)"

// Options configure a run; the zero value of a field means its default.
type Options struct {
	// Device is auto, cpu, cuda or cuda:N.
	Device string
	// Presets name the models (see presets); each runs every method and
	// gradient-checkpointing setting.
	Presets []string
	// Methods are the methods to run (default LoRA and Full).
	Methods []Method
	// GradCheckpoint lists the settings to run (default: off).
	GradCheckpoint []bool
	// Precision is auto, fp32 or bf16.
	Precision string
	// Batch and Seq override the presets' batch and sequence length.
	Batch, Seq int
	// Quantize is none (default), nf4, fp4 or int8: LoRA on a base
	// quantized at load (QLoRA; nf4/fp4 with double quantization).
	Quantize string
	// LoRAR and LoRAAlpha are the adapter's rank and alpha (16 and 32).
	LoRAR     int
	LoRAAlpha float64
	// Steps are timed after Warmup untimed ones (Steps 0 means 3; the
	// CLI warms up one step unless told otherwise).
	Steps, Warmup int
	// Seed seeds weights and tokens.
	Seed uint64
	// PeakTFLOPS overrides the device's bf16 peak for utilisation.
	PeakTFLOPS float64
	// DryRun resolves and validates the cases without running them.
	DryRun bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Case is one benchmark configuration, resolved: what both gotune and
// scripts/bench_peft.py run.
type Case struct {
	Preset         string  `json:"preset"`
	Method         Method  `json:"method"`
	GradCheckpoint bool    `json:"grad_checkpoint"`
	Precision      string  `json:"precision"`
	Shape          Shape   `json:"shape"`
	Batch          int     `json:"batch"`
	Seq            int     `json:"seq"`
	LoRAR          int     `json:"lora_r,omitempty"`
	LoRAAlpha      float64 `json:"lora_alpha,omitempty"`
	LoRATargets    string  `json:"lora_targets,omitempty"`
	// Quantize is the base's quantization (QLoRA), empty for none; nf4
	// and fp4 use double quantization.
	Quantize string `json:"quantize,omitempty"`
	Steps    int    `json:"steps"`
	Warmup   int    `json:"warmup"`
	Seed     uint64 `json:"seed"`
	// TokensPerStep is Batch·Seq: every position is processed (the
	// scored targets are one fewer per sequence).
	TokensPerStep int `json:"tokens_per_step"`
	// Params and TrainableParams are the model's counts (the adapter's
	// included for LoRA), from the shape; a run checks them against the
	// model it built.
	Params          int64   `json:"params"`
	TrainableParams int64   `json:"trainable_params"`
	FLOPsPerToken   float64 `json:"flops_per_token"`
}

// Key names the case in tables and files, e.g. "0.5b lora gc=off fp32".
func (c Case) Key() string {
	gc := "off"
	if c.GradCheckpoint {
		gc = "on"
	}
	method := string(c.Method)
	if c.Quantize != "" {
		method = "q" + method + "-" + c.Quantize
	}
	return fmt.Sprintf("%s %s gc=%s %s", c.Preset, method, gc, c.Precision)
}

// Result is a case and what it measured.
type Result struct {
	Case
	// StepMs are the timed steps' wall times, each ending with a
	// Synchronize (the optimizer's work is inside it).
	StepMs       []float64 `json:"step_ms,omitempty"`
	MedianStepMs float64   `json:"median_step_ms,omitempty"`
	TokensPerS   float64   `json:"tokens_per_s,omitempty"`
	// TFLOPS is FLOPsPerToken·TokensPerS; MFU divides it by the device's
	// bf16 peak (0 when that is unknown).
	TFLOPS float64 `json:"tflops,omitempty"`
	MFU    float64 `json:"mfu,omitempty"`
	// QuantBytesPerParam is the quantized base's storage per weight
	// element (codes, absmax state and code books), for --quantize.
	QuantBytesPerParam float64 `json:"quant_bytes_per_param,omitempty"`
	// MemBytes is the device memory measure MemMeasure names; 0 with an
	// empty MemMeasure when the backend reports none.
	MemBytes   uint64 `json:"mem_bytes,omitempty"`
	MemMeasure string `json:"mem_measure,omitempty"`
	// FirstLoss and LastLoss are the first and last steps' losses (about
	// ln(vocab) with random weights).
	FirstLoss float64 `json:"first_loss,omitempty"`
	LastLoss  float64 `json:"last_loss,omitempty"`
	// Error is why the case did not finish.
	Error string `json:"error,omitempty"`
}

// Report is a whole run.
type Report struct {
	Device         string   `json:"device"`
	PeakBF16TFLOPS float64  `json:"peak_bf16_tflops,omitempty"`
	PeakSource     string   `json:"peak_source"`
	FLOPsFormula   string   `json:"flops_formula"`
	Timing         string   `json:"timing"`
	DryRun         bool     `json:"dry_run,omitempty"`
	Notes          []string `json:"notes,omitempty"`
	Results        []Result `json:"results"`
}

// withDefaults fills the zero fields.
func (o Options) withDefaults() Options {
	if o.Device == "" {
		o.Device = "auto"
	}
	if len(o.Presets) == 0 {
		o.Presets = []string{"0.5b", "1.5b"}
	}
	if len(o.Methods) == 0 {
		o.Methods = []Method{LoRA, Full}
	}
	if len(o.GradCheckpoint) == 0 {
		o.GradCheckpoint = []bool{false}
	}
	if o.Precision == "" {
		o.Precision = PrecisionAuto
	}
	if o.LoRAR == 0 {
		o.LoRAR = 16
	}
	if o.LoRAAlpha == 0 {
		o.LoRAAlpha = 2 * float64(o.LoRAR)
	}
	if o.Steps == 0 {
		o.Steps = 3
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	return o
}

// resolvePrecision turns --precision into the precision a case trains in:
// auto is bf16 where the run will use a GPU (--device cuda, cuda:N, gpu,
// or auto with a usable one) and fp32 on the CPU, as gotune train decides.
func resolvePrecision(p, device string) (string, error) {
	switch p {
	case PrecisionFP32, PrecisionBF16:
		return p, nil
	case PrecisionAuto:
		prec, err := engine.ParsePrecision(p, onGPU(device))
		return prec.String(), err
	}
	return "", fmt.Errorf("unknown --precision %q (want %s, %s or %s)", p, PrecisionAuto, PrecisionFP32, PrecisionBF16)
}

// onGPU reports whether --device resolves to the CUDA backend.
func onGPU(device string) bool {
	switch device {
	case "cpu":
		return false
	case "", "auto":
		ok, _ := cuda.Available()
		return ok
	}
	return true
}

// Plan resolves and validates the cases of o, without running them.
func Plan(o Options) ([]Case, error) {
	o = o.withDefaults()
	switch {
	case o.Batch < 0:
		return nil, fmt.Errorf("--batch must not be negative, got %d", o.Batch)
	case o.Seq < 0 || o.Seq == 1:
		return nil, fmt.Errorf("--seq must be at least 2, got %d", o.Seq)
	case o.Steps < 1:
		return nil, fmt.Errorf("--steps must be at least 1, got %d", o.Steps)
	case o.LoRAR < 1:
		return nil, fmt.Errorf("--lora-r must be at least 1, got %d", o.LoRAR)
	}
	prec, err := resolvePrecision(o.Precision, o.Device)
	if err != nil {
		return nil, err
	}
	var cases []Case
	for _, name := range o.Presets {
		p, err := findPreset(name)
		if err != nil {
			return nil, fmt.Errorf("--preset: %w", err)
		}
		if o.Batch > 0 {
			p.Batch = o.Batch
		}
		if o.Seq > 0 {
			p.Seq = o.Seq
			p.Sizes.MaxPos = max(p.Sizes.MaxPos, o.Seq)
		}
		for _, m := range o.Methods {
			if m != LoRA && m != Full {
				return nil, fmt.Errorf("--method: unknown method %q (want %s or %s)", m, LoRA, Full)
			}
			if m != LoRA && o.Quantize != "" {
				return nil, fmt.Errorf("--quantize %s: only --method %s trains on a quantized base", o.Quantize, LoRA)
			}
			for _, gc := range o.GradCheckpoint {
				cases = append(cases, newCase(p, m, gc, prec, o))
			}
		}
	}
	return cases, nil
}

// newCase fills a case's derived fields.
func newCase(p Preset, m Method, gc bool, prec string, o Options) Case {
	s := shapeOf(p.Sizes)
	c := Case{Preset: p.Name, Method: m, GradCheckpoint: gc, Precision: prec, Shape: s,
		Batch: p.Batch, Seq: p.Seq, Steps: o.Steps, Warmup: o.Warmup, Seed: o.Seed,
		TokensPerStep: p.Batch * p.Seq, Params: s.Params(), TrainableParams: s.Params()}
	if m == LoRA {
		c.LoRAR, c.LoRAAlpha, c.LoRATargets = o.LoRAR, o.LoRAAlpha, lora.AllLinear
		c.Params += s.LoRAParams(o.LoRAR)
		c.TrainableParams = s.LoRAParams(o.LoRAR)
		c.Quantize = o.Quantize
	}
	c.FLOPsPerToken = s.FLOPsPerToken(m, o.LoRAR, p.Seq)
	return c
}

// Run plans the cases of o and runs each on a fresh backend. A case that
// fails is recorded with its error and the others still run; the
// returned error then says how many failed.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = o.withDefaults()
	cases, err := Plan(o)
	if err != nil {
		return nil, err
	}
	rep := &Report{FLOPsFormula: FLOPsFormula, DryRun: o.DryRun,
		Timing: "wall clock around each optimizer step, ending with Synchronize; median of the timed steps after the warm-up ones"}
	if o.DryRun {
		rep.Device = "none (dry run)"
		rep.PeakSource = "none (dry run)"
		for _, c := range cases {
			rep.Results = append(rep.Results, Result{Case: c})
		}
		return rep, nil
	}
	failed := 0
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		fmt.Fprintf(o.Log, "[%d/%d] %s: B=%d T=%d, %d parameters (%d trainable)\n", i+1, len(cases), c.Key(), c.Batch, c.Seq, c.Params, c.TrainableParams)
		r := runCase(ctx, c, o, rep)
		if r.Error != "" {
			failed++
			fmt.Fprintf(o.Log, "  failed: %s\n", r.Error)
		} else {
			fmt.Fprintf(o.Log, "  %.1f ms/step, %.0f tokens/s\n", r.MedianStepMs, r.TokensPerS)
		}
		rep.Results = append(rep.Results, r)
	}
	if failed > 0 {
		return rep, fmt.Errorf("bench train: %d of %d cases failed (the first: %s)", failed, len(cases), firstError(rep.Results))
	}
	return rep, nil
}

func firstError(rs []Result) string {
	for _, r := range rs {
		if r.Error != "" {
			return r.Case.Key() + ": " + r.Error
		}
	}
	return ""
}

// runCase opens a backend, builds the model, trains and measures.
func runCase(ctx context.Context, c Case, o Options, rep *Report) (r Result) {
	r = Result{Case: c}
	fail := func(err error) Result {
		r.Error = strings.ReplaceAll(err.Error(), "\n", " ")
		return r
	}
	be, note, err := cuda.SelectBackend(o.Device)
	if err != nil {
		return fail(err)
	}
	defer be.Close()
	if rep.Device == "" {
		fmt.Fprintln(o.Log, note)
		describeDevice(rep, be, o)
	}
	tr, qs, err := build(c, be)
	if err != nil {
		return fail(err)
	}
	r.QuantBytesPerParam = qs.BytesPerParam()
	defer tr.Close()
	peak := uint64(0)
	for i := 0; i < c.Warmup+c.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		t0 := time.Now()
		s, err := tr.Step()
		if err == nil {
			err = be.Synchronize()
		}
		if err != nil {
			return fail(fmt.Errorf("step %d: %w", i+1, err))
		}
		ms := float64(time.Since(t0).Nanoseconds()) / 1e6
		if i == 0 {
			r.FirstLoss = s.Loss
		}
		r.LastLoss = s.Loss
		if i >= c.Warmup {
			r.StepMs = append(r.StepMs, ms)
		}
		if b, measure, ok := memoryOf(be); ok {
			peak, r.MemMeasure = max(peak, b), measure
		}
	}
	r.MemBytes = peak
	r.MedianStepMs = benchutil.Median(r.StepMs)
	r.TokensPerS = float64(c.TokensPerStep) / (r.MedianStepMs / 1e3)
	r.TFLOPS = c.FLOPsPerToken * r.TokensPerS / 1e12
	if rep.PeakBF16TFLOPS > 0 {
		r.MFU = r.TFLOPS / rep.PeakBF16TFLOPS
	}
	return r
}

// describeDevice fills the report's device and the peak utilisation is
// measured against.
func describeDevice(rep *Report, be engine.Backend, o Options) {
	rep.Device, rep.PeakSource = be.Name(), "none known for this device: MFU n/a (pass --peak-tflops)"
	if gpu, ok := be.(*cuda.Backend); ok {
		name := gpu.Context().Info().Name
		if strings.Contains(name, "emulator") {
			rep.Notes = append(rep.Notes, "the device is gotune's CPU emulator: these times measure the emulator, not a GPU")
		} else if p, ok := devicepeaks.Lookup(name); ok {
			rep.PeakBF16TFLOPS, rep.PeakSource = p.BF16TFLOPS, "datasheet bf16 dense ("+p.Match+")"
		}
	}
	if o.PeakTFLOPS > 0 {
		rep.PeakBF16TFLOPS, rep.PeakSource = o.PeakTFLOPS, "--peak-tflops"
	}
}

// build makes the model, the method, the data and the trainer of a case.
func build(c Case, be engine.Backend) (*train.Trainer, model.QuantStats, error) {
	var qs model.QuantStats
	s := c.Shape
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: s.Vocab, Hidden: s.Hidden, Layers: s.Layers,
		Heads: s.Heads, KVHeads: s.KVHeads, Intermediate: s.Intermediate, MaxPos: s.MaxPos})
	if err != nil {
		return nil, qs, err
	}
	m, err := model.New(cfg, be, c.Seed)
	if err != nil {
		return nil, qs, err
	}
	if c.Quantize != "" {
		if qs, err = quantizeBase(m, c.Quantize); err != nil {
			return nil, qs, err
		}
	}
	if c.Method == LoRA {
		if _, err := lora.Apply(m, lora.Config{R: c.LoRAR, Alpha: c.LoRAAlpha, Targets: []string{c.LoRATargets}, Seed: c.Seed}); err != nil {
			return nil, qs, err
		}
	}
	m.SetGradCheckpoint(c.GradCheckpoint)
	// A quantized base's weights are not parameters.
	if trainable, total := train.CountParams(m.Params()); trainable != c.TrainableParams || total+int64(qs.Params) != c.Params {
		return nil, qs, fmt.Errorf("the model has %d parameters (%d trainable), the plan says %d (%d): the shape arithmetic is wrong",
			total, trainable, c.Params, c.TrainableParams)
	}
	loader, err := data.NewLoader(randomTokens(c), data.LoaderConfig{BatchSize: c.Batch, SeqLen: c.Seq, PadToSeqLen: true})
	if err != nil {
		return nil, qs, err
	}
	// AdamW as torch's defaults, constant LR, clipping at 1: what
	// scripts/bench_peft.py runs too.
	prec, err := engine.ParsePrecision(c.Precision, false)
	if err != nil {
		return nil, qs, err
	}
	tr, err := train.New(m, loader, train.Config{Steps: c.Warmup + c.Steps, GradAccum: 1, LR: 1e-4, Schedule: train.Constant,
		Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, MaxGradNorm: 1, Precision: prec}, train.Options{})
	return tr, qs, err
}

// randomTokens returns one batch of Batch sequences of Seq uniform random
// tokens, every position labelled; the loader repeats it.
func randomTokens(c Case) *data.Dataset {
	rng := rand.New(rand.NewPCG(c.Seed, 0x746f6b))
	ds := &data.Dataset{Name: "random tokens", Format: "random"}
	for range c.Batch {
		ids := make([]int32, c.Seq)
		for i := range ids {
			ids[i] = int32(rng.IntN(c.Shape.Vocab))
		}
		ds.Examples = append(ds.Examples, data.Example{InputIDs: ids, Labels: slices.Clone(ids)})
	}
	return ds
}

// memoryOf reports the backend's device-memory figure and what it means:
// the peak of live tensors where the backend tracks them, else the bytes
// its allocator holds.
func memoryOf(be engine.Backend) (uint64, string, bool) {
	if r, ok := be.(engine.MemoryReporter); ok {
		return r.MemoryStats().Peak, MemPeak, true
	}
	if h, ok := be.(interface{ MemoryInUse() uint64 }); ok {
		return h.MemoryInUse(), MemHeld, true
	}
	return 0, "", false
}

// quantizeBase quantizes m's projections (all but lm_head) as
// gotune train --quantize does: format f, nf4/fp4 double quantized.
func quantizeBase(m model.Model, f string) (model.QuantStats, error) {
	format, err := quant.ParseFormat(f)
	if err != nil {
		return model.QuantStats{}, fmt.Errorf("--quantize: %w", err)
	}
	q, ok := m.(interface {
		Quantize(quant.Options) (model.QuantStats, error)
	})
	if !ok {
		return model.QuantStats{}, fmt.Errorf("--quantize: a %T cannot be quantized", m)
	}
	return q.Quantize(quant.Options{Format: format, DoubleQuant: format != quant.Int8})
}
