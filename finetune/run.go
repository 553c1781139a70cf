package finetune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/peft"
)

// Run fine-tunes o.Model with o.Method and saves the result (the model,
// or the adapter folder), metrics.jsonl, loss.png and the model card
// (README.md, summary.json) into o.Out: resumable from checkpoints
// (o.Resume), never overwriting a previous run unless told to, and
// checking the disk has room first. An interrupted run (ctx cancelled)
// still saves; its Result says Interrupted.
func Run(ctx context.Context, o JobOptions) (*Result, error) {
	o.withDefaults()
	if err := o.Check(); err != nil {
		return nil, err
	}
	method, err := o.Methods.Lookup(o.Method, o.Names)
	if err != nil {
		return nil, err
	}
	tcfg := o.Train
	tcfg.OutDir, tcfg.EvalEvery = o.Out, o.Data.EvalEveryConfig()
	if err := tcfg.Validate(); err != nil {
		return nil, FieldOptionError(err, TrainOption, o.Names)
	}
	if o.Parallel != nil {
		if err := o.Parallel.Validate(); err != nil {
			return nil, FieldOptionError(err, optionsOf("Parallel", nil), o.Names)
		}
	}
	if _, err := os.Stat(o.Data.Train); o.Data.Train != "" && err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("Data.Train"), err)
	}
	if same, err := SameDir(o.Model, o.Out); err == nil && same {
		return nil, fmt.Errorf("%s %s is the model directory: saving would overwrite the model being trained; choose another %s", o.name("Out"), o.Out, o.name("Out"))
	}
	lock, err := claimOutDir(&o)
	if err != nil {
		return nil, err
	}
	defer lock.Release()
	ckpt, ckptState, ckptAdapter, err := findResume(&o)
	if err != nil {
		return nil, err
	}

	hc, err := hfconfig.Load(o.Model)
	if err != nil {
		return nil, err
	}
	for _, line := range hc.Warnings() {
		fmt.Fprintln(o.Warn, "warning: "+line)
	}
	seqLen, err := o.seqLen(hc)
	if err != nil {
		return nil, err
	}

	// Data before weights: a bad line is reported without waiting for a
	// large checkpoint to load.
	td, err := OpenData(o.Data, o.Model, seqLen, hc.VocabSize, o.Log, o.Names)
	if err != nil {
		return nil, err
	}
	if o.EvalExactMatch > 0 && !conversational(td.Eval) {
		return nil, fmt.Errorf("%s: %s is %s data, which has no answers to match (instruction or chat data has)", o.name("EvalExactMatch"), o.Data.Eval, td.Eval.Format)
	}
	ds := td.Train
	padID := int32(0)
	if hc.PadTokenID != nil && *hc.PadTokenID >= 0 && *hc.PadTokenID < hc.VocabSize {
		padID = int32(*hc.PadTokenID)
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{
		BatchSize: o.BatchSize, SeqLen: seqLen, Shuffle: o.Shuffle, Seed: o.Seed, PadID: padID, Packing: o.Packing,
	})
	if err != nil {
		return nil, err
	}
	st := loader.Stats()
	fmt.Fprintf(o.Log, "data: %d sequences, %d tokens from %s; %d batches per epoch\n", ds.Len(), ds.Tokens(), o.Data.Describe(), loader.BatchesPerEpoch())
	fmt.Fprintln(o.Log, st.TruncationMessage())
	if o.Packing {
		fmt.Fprintln(o.Log, st.PackingMessage())
	}
	if st.Skipped > 0 {
		fmt.Fprintf(o.Warn, "warning: skipped %d of %d sequences with no token to train on (one token long, or every label after the first is -100)\n", st.Skipped, st.Sequences)
	}

	be := o.Backend
	// A resumed full or freeze run continues from the checkpoint's model;
	// an adapter method loads its adapter from the checkpoint in Apply
	// (InitAdapter, set by findResume) on top of the base model.
	weightsDir := o.Model
	if ckpt != "" && !ckptAdapter {
		weightsDir = ckpt
	}
	// The precision is resolved before loading: under bf16 the weights are
	// stored in bfloat16 as they are read (model.Options.Storage).
	tcfg.Precision, _ = engine.ParsePrecision(o.Precision, OnGPU(be))
	fmt.Fprintf(o.Log, "precision: %s\n", tcfg.Precision)
	lo := model.Options{Storage: tcfg.Precision.ActDType()}
	if !o.trainsBase() {
		// Quantized as each tensor is read: the device never holds the
		// float base (o.quantize refuses the methods that train it).
		lo.Quantize = o.Quantize
	}
	m, err := model.LoadWithOptions(weightsDir, be, lo)
	if err != nil {
		return nil, err
	}
	if err := o.quantize(m); err != nil {
		return nil, err
	}
	mo := o.MethodOptions
	mo.BaseModel = o.Model
	saver, err := method.Apply(m, &mo)
	if err != nil {
		return nil, err
	}
	m.SetGradCheckpoint(o.GradCheckpoint)
	m.SetDropoutSeed(o.Seed)
	if hc.HasDropout() {
		fmt.Fprintf(o.Log, "dropout in training (config.json): attention %g, sub-layer outputs %g, embeddings %g; masks drawn from %s %d\n",
			hc.AttentionDropout, hc.ResidDropout, hc.EmbdDropout, o.name("Seed"), o.Seed)
	}
	if ckpt != "" && saver == nil && ckptAdapter {
		return nil, fmt.Errorf("%s %s: the checkpoint holds an adapter, but %s %s trains the model's own weights", o.name("Resume"), ckpt, o.name("Method"), o.Method)
	}
	if ckpt != "" && saver != nil && !ckptAdapter {
		return nil, fmt.Errorf("%s %s: the checkpoint holds a whole model (no %s), but %s %s trains an adapter", o.name("Resume"), ckpt, peft.ConfigFile, o.name("Method"), o.Method)
	}
	tcfg.Settings = append(o.Record.Settings(seqLen), train.Setting{Name: "training data (tokenized)", Value: train.DataFingerprint(ds)})
	baseFP, err := model.Fingerprint(o.Model)
	if err != nil {
		return nil, err
	}
	tcfg.Settings = append(tcfg.Settings, train.Setting{Name: "base model (fingerprint of " + o.name("Model") + ")", Value: baseFP})
	savers, err := o.savers(m, saver, hc)
	if err != nil {
		return nil, err
	}
	evalFn, _, err := EvalLossFunc(m, td.Eval, o.BatchSize, seqLen, padID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("Data.Eval"), err)
	}
	tr, err := train.New(m, loader, tcfg, train.Options{Log: o.Log, Saver: savers.final, Eval: evalFn, CheckpointSaver: savers.ckpt, BestSaver: savers.best, Parallel: o.Parallel,
		Name: func(field string) string { return o.name(TrainOption(field)) }})
	if err != nil {
		return nil, FieldOptionError(err, TrainOption, o.Names)
	}
	defer tr.Close()
	if err := checkOutSpace(&o, tr, m, savers.fullWeights); err != nil {
		return nil, err
	}
	if ckpt != "" {
		info, err := tr.ResumeVerified(ckpt, ckptState)
		if err != nil {
			return nil, err
		}
		for _, w := range info.Warnings {
			fmt.Fprintf(o.Warn, "warning: %s: %s\n", o.name("Resume"), w)
		}
	}
	fmt.Fprintf(o.Log, "model: %s (%s) on %s\n", o.Model, hc.Arch, be.Name())
	fmt.Fprintln(o.Log, train.ParamSummary(m.Params()))
	fmt.Fprintf(o.Log, "training: method %s, %d steps of %d×%d sequences of ≤%d tokens, lr %g (%s, %d warmup)\n",
		o.Method, tr.TotalSteps(), tcfg.GradAccum, o.BatchSize, seqLen, tcfg.LR, tcfg.Schedule, tr.WarmupSteps())
	if err := o.Record.Started(seqLen); err != nil {
		return nil, err
	}

	res, err := tr.Run(ctx)
	if err != nil {
		return nil, err
	}
	out := &Result{Result: res, SeqLen: seqLen, TotalSteps: tr.TotalSteps(), Adapter: !savers.fullWeights}
	if o.Parallel != nil && o.Parallel.Comm.Rank() != 0 {
		return out, nil // rank 0 reports and saves
	}
	if n := len(res.CheckpointErrors); n > 0 {
		fmt.Fprintf(o.Warn, "warning: %d checkpoint(s) could not be written (the first: %v); the final result was saved\n", n, res.CheckpointErrors[0])
	}
	if n := len(res.History); n > 0 {
		last := res.History[n-1]
		peak := ""
		if res.PeakMemBytes > 0 {
			peak = ", peak memory " + engine.FormatMiB(res.PeakMemBytes)
		}
		fmt.Fprintf(o.Log, "done: %d steps in %s, final loss %.6f%s\n", res.Steps, res.Elapsed.Round(time.Millisecond), last.Loss, peak)
	}
	what := "the adapter"
	if savers.fullWeights {
		what = "the trained weights"
		if d := DescribeSaved(m, savers.save, o.Out); d != "" {
			what += " (" + d + ")"
		}
		// A full checkpoint is used on its own (generation and evaluation
		// look for the tokenizer beside the weights), so it gets the base
		// model's tokenizer files, as gotune merge and Hugging Face's
		// Trainer.save_model do.
		n, err := CopyTokenizerFiles(o.Model, o.Out)
		if err != nil {
			return nil, fmt.Errorf("saving the tokenizer files to %s: %w", o.Out, err)
		}
		if n > 0 {
			what += fmt.Sprintf(" (with %d tokenizer files)", n)
		}
	}
	outputs := train.MetricsFile
	if len(res.History) > 0 { // no plot is drawn when no step ran
		outputs += ", " + train.LossPlotFile
	}
	if o.EvalExactMatch > 0 && !res.Interrupted {
		if out.ExactMatch, err = trainExactMatch(ctx, m, td, &o); err != nil {
			return nil, err
		}
		em := out.ExactMatch
		fmt.Fprintf(o.Log, "eval exact match: %d/%d = %.1f%% (greedy)\n", em.Correct, em.Total, 100*em.Accuracy())
	}
	card := &trainCard{o: &o, hc: hc, m: m, be: be, ds: ds, res: out, precision: tcfg.Precision, resumed: ckpt != ""}
	if err := card.write(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(o.Out, ConfigFile)); err == nil {
		outputs += ", " + ConfigFile
	}
	outputs += ", " + runcardFiles
	fmt.Fprintf(o.Log, "saved %s, %s to %s\n", what, outputs, o.Out)
	if res.BestStep > 0 && o.Train.KeepBest {
		fmt.Fprintf(o.Log, "best eval_loss %.6f after step %d: saved to %s\n", res.BestEvalLoss, res.BestStep, filepath.Join(o.Out, train.BestDir))
	}
	return out, nil
}

// withDefaults fills what was left out.
func (o *JobOptions) withDefaults() {
	if o.Methods == nil {
		o.Methods = Methods()
	}
	if o.Backend == nil {
		o.Backend = cpu.New()
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Warn == nil {
		o.Warn = io.Discard
	}
	if o.Record == nil {
		o.Record = optionsRecorder{o}
	}
}

// seqLen returns the run's sequence length: SeqLen, or DefaultSeqLen
// capped at the model's positions when it is 0.
func (o *JobOptions) seqLen(hc *hfconfig.Config) (int, error) {
	if o.SeqLen == 0 {
		return min(DefaultSeqLen, hc.MaxPos), nil
	}
	if o.SeqLen > hc.MaxPos {
		if hc.LearnedPositions() {
			return 0, fmt.Errorf("%s %d is longer than the model's %d positions (n_positions in %s)", o.name("SeqLen"), o.SeqLen, hc.MaxPos, filepath.Join(o.Model, "config.json"))
		}
		fmt.Fprintf(o.Warn, "warning: %s %d is longer than the model's max_position_embeddings %d\n", o.name("SeqLen"), o.SeqLen, hc.MaxPos)
	}
	return o.SeqLen, nil
}

// findResume finds the Resume checkpoint before anything heavy (its
// files verified against their checksums), and refuses a different
// method at once. An adapter checkpoint becomes the method's InitAdapter.
func findResume(o *JobOptions) (ckpt string, st *train.TrainerState, adapter bool, err error) {
	if o.Resume == "" {
		return "", nil, false, nil
	}
	c, st, skipped, err := train.FindCheckpoint(o.Resume)
	if errors.Is(err, train.ErrNoCheckpoint) {
		return "", nil, false, fmt.Errorf("%s: %w (checkpoints are written with %s)", o.name("Resume"), err, o.name("Train.SaveEvery"))
	}
	if err != nil {
		return "", nil, false, fmt.Errorf("%s: %w", o.name("Resume"), err)
	}
	for _, s := range skipped {
		fmt.Fprintf(o.Warn, "warning: %s: skipping the incomplete checkpoint %s\n", o.name("Resume"), s)
	}
	for _, s := range st.Settings {
		if s.Name == o.name("Method") && s.Value != o.Method {
			return "", nil, false, fmt.Errorf("%s %s: the checkpoint was trained with %s %s, not %s", o.name("Resume"), c, o.name("Method"), s.Value, o.Method)
		}
	}
	if _, err := os.Stat(filepath.Join(c, peft.ConfigFile)); err == nil {
		adapter = true
		if o.InitAdapter != "" {
			fmt.Fprintf(o.Warn, "note: %s %s is ignored: the adapter comes from the checkpoint %s\n", o.name("InitAdapter"), o.InitAdapter, c)
		}
		o.InitAdapter = c
	}
	fmt.Fprintf(o.Log, "resuming from %s (step %d of %d)\n", c, st.Step, st.TotalSteps)
	return c, st, adapter, nil
}

// trainExactMatch scores greedy exact match of the trained model on the
// first EvalExactMatch records of the evaluation file.
func trainExactMatch(ctx context.Context, m model.Model, td *Data, o *JobOptions) (*generate.ExactMatchResult, error) {
	convs, _, err := readConversations(o.Data.Eval, td.Eval.Format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("EvalExactMatch"), err)
	}
	convs = convs[:min(o.EvalExactMatch, len(convs))]
	res, err := generate.ExactMatch(ctx, m, td.Tok, td.Tmpl, convs, exactMatchMaxNew, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("EvalExactMatch"), err)
	}
	return res, nil
}

// trainsBase reports whether the method trains the base weights.
func (o *JobOptions) trainsBase() bool { return o.Method == "full" || o.Method == "freeze" }

// quantize checks m's quantized base (quantized at load when Quantize
// asks for it, or stored by a bitsandbytes checkpoint) against the
// method, refusing methods that train the base weights, and reports it.
func (o *JobOptions) quantize(m model.Model) error {
	q := o.Quantize
	trainsBase := o.trainsBase()
	if q.Format == quant.None {
		if pq, ok := m.(interface{ QuantizedLayers() int }); ok && trainsBase && pq.QuantizedLayers() > 0 {
			return optionErrorf("Method", "%s %s trains the base weights, but the model's base is bitsandbytes-quantized (frozen; use lora or another adapter method)",
				o.name("Method"), o.Method)
		}
		return nil
	}
	if trainsBase {
		return optionErrorf("Quantize", "%s %s: %s %s trains the base weights; quantized bases are frozen (use lora or another adapter method)",
			o.name("Quantize"), q.Format, o.name("Method"), o.Method)
	}
	qm, ok := m.(interface{ QuantStats() model.QuantStats })
	if !ok {
		return fmt.Errorf("quantize %s: a %T cannot be quantized", q.Format, m)
	}
	logQuantized(o.Log, q, qm.QuantStats())
	return nil
}

// QuantizeBase quantizes m's frozen base projections (every one but
// lm_head) as bitsandbytes does and reports the bytes per parameter
// achieved to log.
func QuantizeBase(m model.Model, q quant.Options, log io.Writer) error {
	qm, ok := m.(interface {
		Quantize(quant.Options) (model.QuantStats, error)
	})
	if !ok {
		return fmt.Errorf("quantize %s: a %T cannot be quantized", q.Format, m)
	}
	st, err := qm.Quantize(q)
	if err != nil {
		return err
	}
	logQuantized(log, q, st)
	return nil
}

// logQuantized reports a quantized base's bytes per parameter to log.
func logQuantized(log io.Writer, q quant.Options, st model.QuantStats) {
	fmt.Fprintf(log, "quantized: %s (double quant %v), %d projections, %d parameters in %d bytes (%.4f bytes per parameter)\n",
		q.Format, q.DoubleQuant, st.Layers, st.Params, st.Bytes, st.BytesPerParam())
}
