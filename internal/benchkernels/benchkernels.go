// Package benchkernels implements `gotune bench kernels`: microbenchmarks
// of the fused matmul, LoRA and adapter operations at LLM layer shapes.
//
// On a GPU every operation is timed with device events (median over
// repeats after warm-up), reported as TFLOP/s and GB/s, and set against
// its floor: the larger of FLOPs / peak compute and bytes / memory
// bandwidth, with the peaks taken from a table by device name (or flags).
// cuBLAS's GEMM on the same shapes runs in the same process when a cuBLAS
// library can be loaded, and the headline is the ratio of gotune's fused
// LoRA forward to cuBLAS's plain base GEMM: how much the low-rank update
// costs on top of the layer it adapts.
//
// Without a GPU the same operations run on the CPU backend at smaller
// shapes, timed with the wall clock: honest numbers for this machine,
// without floors unless peaks are given by flags.
package benchkernels

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/internal/benchutil"
	"github.com/gotune/gotune/internal/devicepeaks"
)

// Result is one timed operation.
type Result struct {
	// Op is gemm, lora_fwd, lora_bwd, adapter_fwd, adapter_bwd, copy,
	// attn_fwd, attn_fwdbwd, attn_fwd_window or attn_fwdbwd_window.
	Op string `json:"op"`
	// Impl is "gotune" or "cublas".
	Impl  string `json:"impl"`
	DType string `json:"dtype"`
	// M is tokens; N and K the output and input widths (D for adapters);
	// R the rank (0 where none).
	M int `json:"m"`
	N int `json:"n"`
	K int `json:"k"`
	R int `json:"r"`
	// Batch, Seq, Heads, KVHeads, HeadDim and Window describe an
	// attention problem (attn_* operations, where M is Batch·Seq, N
	// Heads·HeadDim and K the keys a query sees at most: Seq, or Window
	// for the *_window operations): the shape scripts/bench_sdpa.py
	// times PyTorch on (causal shapes only).
	Batch   int `json:"batch,omitempty"`
	Seq     int `json:"seq,omitempty"`
	Heads   int `json:"heads,omitempty"`
	KVHeads int `json:"kv_heads,omitempty"`
	HeadDim int `json:"head_dim,omitempty"`
	Window  int `json:"window,omitempty"`
	// MedianMs, MinMs and MaxMs summarise the timed repeats.
	MedianMs float64 `json:"median_ms"`
	MinMs    float64 `json:"min_ms"`
	MaxMs    float64 `json:"max_ms"`
	Repeats  int     `json:"repeats"`
	// FLOPs and Bytes are the work and the least device-memory traffic
	// (each input read once, each output written once).
	FLOPs float64 `json:"flops"`
	Bytes float64 `json:"bytes"`
	// TFLOPS and GBs are FLOPs and Bytes over the median time.
	TFLOPS float64 `json:"tflops"`
	GBs    float64 `json:"gbs"`
	// FloorMs is max(FLOPs/peak, Bytes/bandwidth) (0 when the peaks are
	// unknown), Bound says which term is larger, and OfFloor is
	// FloorMs/MedianMs: the fraction of the floor reached.
	FloorMs float64 `json:"floor_ms,omitempty"`
	Bound   string  `json:"bound,omitempty"`
	OfFloor float64 `json:"of_floor,omitempty"`
}

// Ratio compares gotune's fused LoRA forward with cuBLAS's base GEMM.
type Ratio struct {
	M     int    `json:"m"`
	N     int    `json:"n"`
	K     int    `json:"k"`
	R     int    `json:"r"`
	DType string `json:"dtype"`
	// LoRAms is gotune's fused LoRA forward; BaseMs cuBLAS's X·Wᵀ alone.
	LoRAms float64 `json:"lora_ms"`
	BaseMs float64 `json:"cublas_base_ms"`
	// Ratio is LoRAms / BaseMs (1.0 would make LoRA free).
	Ratio float64 `json:"ratio"`
}

// Report is the whole benchmark run.
type Report struct {
	Device  string   `json:"device"`
	Backend string   `json:"backend"`
	Timing  string   `json:"timing"`
	Peaks   Peaks    `json:"peaks"`
	CuBLAS  string   `json:"cublas"`
	Notes   []string `json:"notes,omitempty"`
	Results []Result `json:"results"`
	Ratios  []Ratio  `json:"headline,omitempty"`
	// Fallbacks lists operations the CUDA backend ran on the host.
	Fallbacks string `json:"fallbacks,omitempty"`
}

// Peaks are the ceilings the floors are computed from.
type Peaks struct {
	// BF16TFLOPS is dense bfloat16 tensor-core throughput, F32TFLOPS
	// float32 (non-tensor) throughput, BandwidthGBs memory bandwidth.
	BF16TFLOPS   float64 `json:"bf16_tflops,omitempty"`
	F32TFLOPS    float64 `json:"f32_tflops,omitempty"`
	BandwidthGBs float64 `json:"bandwidth_gbs,omitempty"`
	// Source says where they came from (datasheet table, flags, driver).
	Source string `json:"source"`
}

type options struct {
	device          string
	json            bool
	repeats, warmup int
	peakBF16        float64
	peakF32         float64
	bandwidth       float64
	quick           bool
	seed            uint64
}

// Run executes `gotune bench kernels` with args (the flags after "kernels").
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.NewFlagSet("kernels", "Times gotune's fused matmul, LoRA, adapter and attention kernels at LLM layer\n"+
		"shapes (on the CPU backend at smaller shapes when no GPU is usable) and compares\n"+
		"them with their floors and, where cuBLAS loads, with cuBLAS.")
	var o options
	fs.StringVar(&o.device, "device", "auto", "auto (the GPU when usable, else the CPU), cpu or cuda")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of a table")
	fs.IntVar(&o.repeats, "repeats", 0, "timed repeats per operation (0: 20 on a GPU, 5 on the CPU)")
	fs.IntVar(&o.warmup, "warmup", -1, "untimed warm-up runs per operation (-1: 3 on a GPU, 1 on the CPU)")
	fs.Float64Var(&o.peakBF16, "peak-tflops", 0, "bfloat16 tensor-core peak in TFLOP/s (default: datasheet by device name)")
	fs.Float64Var(&o.peakF32, "peak-f32-tflops", 0, "float32 peak in TFLOP/s (default: datasheet by device name)")
	fs.Float64Var(&o.bandwidth, "bandwidth", 0, "memory bandwidth in GB/s (default: datasheet, else the driver's clocks)")
	fs.BoolVar(&o.quick, "quick", false, "fewer and smaller shapes (smoke test)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random inputs")
	if help, err := benchutil.Parse(fs, args, stdout); help || err != nil {
		return err
	}
	if o.repeats < 0 {
		return fmt.Errorf("bench kernels: --repeats %d must be >= 0", o.repeats)
	}
	be, note, err := cuda.SelectBackend(o.device)
	if err != nil {
		return fmt.Errorf("bench kernels: %w", err)
	}
	defer be.Close()
	fmt.Fprintln(stderr, note)
	rep, err := run(ctx, be, o, stderr)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printTable(stdout, rep)
}

// bench is one run's state.
type bench struct {
	be     engine.Backend
	gpu    *cuda.Backend // nil on the CPU
	blas   *cuda.BLAS
	o      options
	rng    *rand.Rand
	peaks  Peaks
	log    io.Writer
	timeMs func(fn func()) (float64, error)
}

func run(ctx context.Context, be engine.Backend, o options, log io.Writer) (*Report, error) {
	b := &bench{be: be, o: o, rng: rand.New(rand.NewPCG(o.seed, 7)), log: log}
	rep := &Report{Backend: be.Name()}
	gpu, _ := be.(*cuda.Backend)
	emulator := false
	if gpu != nil {
		b.gpu = gpu
		info := gpu.Context().Info()
		rep.Device = fmt.Sprintf("%s (compute capability %d.%d, %d SMs, %.0f GiB)", info.Name, info.Major, info.Minor, info.SMs, float64(info.TotalMem)/(1<<30))
		emulator = strings.Contains(info.Name, "emulator")
		rep.Timing = "CUDA events around each run on the backend's stream; median of the repeats after warm-up"
		b.timeMs = b.gpuTimer()
		if o.repeats == 0 {
			o.repeats = 20
		}
		if o.warmup < 0 {
			o.warmup = 3
		}
		b.peaks = gpuPeaks(info, o)
		if emulator {
			rep.Notes = append(rep.Notes, "the device is gotune's CPU emulator: these times measure the emulator, not a GPU")
			b.peaks = Peaks{Source: "none (emulator)"}
		}
		if blas, err := cuda.OpenBLAS(gpu.Context(), gpu.Stream()); err == nil {
			b.blas = blas
			defer blas.Close()
			rep.CuBLAS = blas.Path
		} else {
			rep.CuBLAS = "not loaded: " + err.Error()
		}
	} else {
		rep.Device = "CPU (pure-Go backend)"
		rep.Timing = "wall clock around each run (the CPU backend is synchronous); median of the repeats after warm-up"
		b.timeMs = b.cpuTimer()
		if o.repeats == 0 {
			o.repeats = 5
		}
		if o.warmup < 0 {
			o.warmup = 1
		}
		b.peaks = Peaks{BF16TFLOPS: o.peakBF16, F32TFLOPS: o.peakF32, BandwidthGBs: o.bandwidth, Source: "flags"}
		if o.peakF32 == 0 && o.bandwidth == 0 {
			b.peaks.Source = "none: pass --peak-f32-tflops and --bandwidth for floors"
		}
		rep.CuBLAS = "not applicable (no GPU)"
	}
	b.o = o
	rep.Peaks = b.peaks
	for _, c := range cases(gpu != nil && !emulator, emulator || o.quick) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.impl == "cublas" && b.blas == nil {
			continue
		}
		r, err := b.runCase(c)
		if err != nil {
			return nil, fmt.Errorf("bench kernels: %s %s %v M=%d N=%d K=%d r=%d: %w", c.impl, c.op, c.dtype, c.m, c.n, c.k, c.r, err)
		}
		fmt.Fprintf(log, "  %-7s %-11s %-4v M=%-6d N=%-6d K=%-6d r=%-3d %10.3f ms\n", r.Impl, r.Op, c.dtype, r.M, r.N, r.K, r.R, r.MedianMs)
		rep.Results = append(rep.Results, r)
	}
	rep.Ratios = headline(rep.Results)
	if gpu != nil {
		rep.Fallbacks = gpu.StatsSummary()
		if err := gpu.Synchronize(); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// gpuPeaks picks the ceilings: flags, else the datasheet table, else (for
// bandwidth only) the driver's memory clock and bus width.
func gpuPeaks(info cuda.DeviceInfo, o options) Peaks {
	p := Peaks{Source: "no datasheet entry for " + info.Name}
	if d, ok := devicepeaks.Lookup(info.Name); ok {
		p = Peaks{BF16TFLOPS: d.BF16TFLOPS, F32TFLOPS: d.F32TFLOPS, BandwidthGBs: d.BandwidthGBs, Source: "datasheet (" + d.Match + ")"}
	}
	if p.BandwidthGBs == 0 && info.MemClockKHz > 0 && info.BusWidth > 0 {
		p.BandwidthGBs = 2 * float64(info.MemClockKHz) * 1e3 * float64(info.BusWidth) / 8 / 1e9
		p.Source += "; bandwidth from the driver's memory clock and bus width"
	}
	if o.peakBF16 > 0 || o.peakF32 > 0 || o.bandwidth > 0 {
		p.Source += "; overridden by flags"
	}
	if o.peakBF16 > 0 {
		p.BF16TFLOPS = o.peakBF16
	}
	if o.peakF32 > 0 {
		p.F32TFLOPS = o.peakF32
	}
	if o.bandwidth > 0 {
		p.BandwidthGBs = o.bandwidth
	}
	return p
}

// gpuTimer times fn with two events on the backend's stream.
func (b *bench) gpuTimer() func(fn func()) (float64, error) {
	ctx := b.gpu.Context()
	return func(fn func()) (float64, error) {
		e0, err := ctx.NewEvent()
		if err != nil {
			return 0, err
		}
		defer e0.Destroy()
		e1, err := ctx.NewEvent()
		if err != nil {
			return 0, err
		}
		defer e1.Destroy()
		if err := e0.Record(b.gpu.Stream()); err != nil {
			return 0, err
		}
		fn()
		if err := e1.Record(b.gpu.Stream()); err != nil {
			return 0, err
		}
		if err := e1.Synchronize(); err != nil {
			return 0, err
		}
		if err := b.gpu.Err(); err != nil {
			return 0, err
		}
		ms, err := cuda.ElapsedMs(e0, e1)
		return float64(ms), err
	}
}

// cpuTimer times fn with the wall clock.
func (b *bench) cpuTimer() func(fn func()) (float64, error) {
	return func(fn func()) (float64, error) {
		t0 := time.Now()
		fn()
		err := b.be.Synchronize()
		return float64(time.Since(t0).Nanoseconds()) / 1e6, err
	}
}

// headline pairs each fused LoRA forward with cuBLAS's base GEMM of the
// same shape and dtype.
func headline(rs []Result) []Ratio {
	type key struct {
		m, n, k int
		dt      string
	}
	base := map[key]float64{}
	for _, r := range rs {
		if r.Impl == "cublas" && r.Op == "gemm" {
			base[key{r.M, r.N, r.K, r.DType}] = r.MedianMs
		}
	}
	var out []Ratio
	for _, r := range rs {
		if r.Impl != "gotune" || r.Op != "lora_fwd" {
			continue
		}
		if b, ok := base[key{r.M, r.N, r.K, r.DType}]; ok && b > 0 {
			out = append(out, Ratio{M: r.M, N: r.N, K: r.K, R: r.R, DType: r.DType, LoRAms: r.MedianMs, BaseMs: b, Ratio: r.MedianMs / b})
		}
	}
	return out
}

func printTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "device:  %s\nbackend: %s\ntiming:  %s\n", rep.Device, rep.Backend, rep.Timing)
	pk := "unknown"
	if rep.Peaks.BF16TFLOPS > 0 || rep.Peaks.F32TFLOPS > 0 || rep.Peaks.BandwidthGBs > 0 {
		pk = fmt.Sprintf("bf16 %.0f TFLOP/s, f32 %.1f TFLOP/s, %.0f GB/s", rep.Peaks.BF16TFLOPS, rep.Peaks.F32TFLOPS, rep.Peaks.BandwidthGBs)
	}
	fmt.Fprintf(w, "peaks:   %s [%s]\ncuBLAS:  %s\n", pk, rep.Peaks.Source, rep.CuBLAS)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note:    %s\n", n)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\timpl\tdtype\tM\tN\tK\tr\tmedian ms\tTFLOP/s\tGB/s\tfloor ms\tbound\tof floor\t")
	for _, r := range rep.Results {
		floor, bound, of := "-", "-", "-"
		if r.FloorMs > 0 {
			floor, bound, of = fmt.Sprintf("%.3f", r.FloorMs), r.Bound, fmt.Sprintf("%.0f%%", 100*r.OfFloor)
		}
		rs := "-"
		if r.R > 0 {
			rs = fmt.Sprint(r.R)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%.3f\t%.2f\t%.1f\t%s\t%s\t%s\t\n",
			r.Op, r.Impl, r.DType, r.M, r.N, r.K, rs, r.MedianMs, r.TFLOPS, r.GBs, floor, bound, of)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Ratios) > 0 {
		fmt.Fprintln(w, "\nheadline: gotune fused LoRA forward vs cuBLAS base GEMM (X·Wᵀ alone)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "dtype\tM\tN\tK\tr\tLoRA ms\tcuBLAS ms\tratio\t")
		for _, r := range rep.Ratios {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.2f×\t\n", r.DType, r.M, r.N, r.K, r.R, r.LoRAms, r.BaseMs, r.Ratio)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.Fallbacks != "" {
		fmt.Fprintf(w, "\nhost fallbacks during the run: %s\n", rep.Fallbacks)
	}
	return nil
}
