package benchtrain

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/gotune/gotune/internal/benchutil"
)

// RunCLI executes `gotune bench train` with args (the flags after
// "train"): the report goes to stdout as a table or JSON, progress to
// stderr.
func RunCLI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.NewFlagSet("train", "Times optimizer steps of LoRA and full fine-tuning of LLaMA-shaped models with\n"+
		"random weights: tokens/s, model-FLOPs utilisation and device memory.\n"+
		"scripts/bench_peft.py runs the same cases (from --dry-run --json) through PyTorch.")
	var o Options
	var presetList, methodList, gc string
	var asJSON bool
	fs.StringVar(&o.Device, "device", "auto", "auto (the GPU when usable, else the CPU), cpu, cuda or cuda:N")
	fs.StringVar(&presetList, "preset", "0.5b,1.5b", "comma-separated models: "+presetNames())
	fs.StringVar(&methodList, "method", "lora,full", "comma-separated methods: lora (rank --lora-r on every linear layer but lm_head), full")
	fs.StringVar(&gc, "grad-checkpoint", "both", "gradient checkpointing: off, on or both (each case once per setting)")
	fs.StringVar(&o.Precision, "precision", PrecisionAuto, "training precision: auto, fp32 or bf16")
	fs.IntVar(&o.Batch, "batch", 0, "sequences per step (0: the preset's)")
	fs.IntVar(&o.Seq, "seq", 0, "sequence length (0: the preset's)")
	fs.StringVar(&o.Quantize, "quantize", "", "QLoRA: quantize the base of the lora cases at load (nf4 or fp4 with double quantization, or int8), as gotune train --quantize does")
	fs.IntVar(&o.LoRAR, "lora-r", 16, "LoRA rank")
	fs.Float64Var(&o.LoRAAlpha, "lora-alpha", 32, "LoRA alpha")
	fs.IntVar(&o.Steps, "steps", 3, "timed optimizer steps per case")
	fs.IntVar(&o.Warmup, "warmup", 1, "untimed optimizer steps before them")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the weights and tokens")
	fs.Float64Var(&o.PeakTFLOPS, "peak-tflops", 0, "bf16 dense peak of the device in TFLOP/s for MFU (default: datasheet by device name)")
	fs.BoolVar(&o.DryRun, "dry-run", false, "print the resolved cases (shapes, parameters, tokens and FLOPs per step) without running them")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if help, err := benchutil.Parse(fs, args, stdout); help || err != nil {
		return err
	}
	if o.Steps < 1 {
		return fmt.Errorf("bench train: --steps must be at least 1, got %d", o.Steps)
	}
	if o.Warmup < 0 {
		return fmt.Errorf("bench train: --warmup must not be negative, got %d", o.Warmup)
	}
	o.Presets = splitList(presetList)
	for _, m := range splitList(methodList) {
		o.Methods = append(o.Methods, Method(m))
	}
	switch gc {
	case "off":
		o.GradCheckpoint = []bool{false}
	case "on":
		o.GradCheckpoint = []bool{true}
	case "both":
		o.GradCheckpoint = []bool{false, true}
	default:
		return fmt.Errorf("bench train: unknown --grad-checkpoint %q (want off, on or both)", gc)
	}
	o.Log = stderr
	rep, err := Run(ctx, o)
	if rep == nil {
		return fmt.Errorf("bench train: %w", err)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(rep); jerr != nil {
			return jerr
		}
	} else if perr := printTable(stdout, rep); perr != nil {
		return perr
	}
	return err
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// printTable writes the report for people.
func printTable(w io.Writer, rep *Report) error {
	peak := "n/a"
	if rep.PeakBF16TFLOPS > 0 {
		peak = fmt.Sprintf("%.0f TFLOP/s", rep.PeakBF16TFLOPS)
	}
	fmt.Fprintf(w, "device:  %s\npeak:    %s [%s]\ntiming:  %s\nFLOPs:   %s\n", rep.Device, peak, rep.PeakSource, rep.Timing, rep.FLOPsFormula)
	measure := ""
	for _, r := range rep.Results {
		if r.MemMeasure != "" {
			measure = r.MemMeasure
		}
	}
	if measure != "" {
		fmt.Fprintf(w, "memory:  %s\n", measure)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note:    %s\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tB×T\tparams\ttrainable\tGFLOP/token\tms/step\ttokens/s\tTFLOP/s\tMFU\tmemory GiB\tloss first→last\t")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%d×%d\t%s\t%s\t%.3g\t%s\t\n", r.Key(), r.Batch, r.Seq, millions(r.Params), millions(r.TrainableParams),
			r.FLOPsPerToken/1e9, measured(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		if r.QuantBytesPerParam > 0 {
			fmt.Fprintf(w, "%s: the quantized base takes %.4f bytes per parameter\n", r.Key(), r.QuantBytesPerParam)
		}
	}
	return nil
}

// measured formats a result's measurements (or its error, or dashes for
// a dry run) as the table's last columns.
func measured(r Result) string {
	switch {
	case r.Error != "":
		return "failed: " + r.Error
	case r.MedianStepMs == 0:
		return "-\t-\t-\t-\t-\t-"
	}
	mfu, mem := "n/a", "n/a"
	if r.MFU > 0 {
		mfu = fmt.Sprintf("%.1f%%", 100*r.MFU)
	}
	if r.MemMeasure != "" {
		mem = fmt.Sprintf("%.3g", float64(r.MemBytes)/(1<<30))
	}
	return fmt.Sprintf("%.1f\t%.0f\t%.2f\t%s\t%s\t%.3f→%.3f", r.MedianStepMs, r.TokensPerS, r.TFLOPS, mfu, mem, r.FirstLoss, r.LastLoss)
}

// millions writes a parameter count in millions.
func millions(n int64) string {
	if n < 1e6 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
