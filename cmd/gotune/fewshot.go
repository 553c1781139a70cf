package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/train"
)

// The flags and set-up that "gotune meta-train" and "gotune eval
// --few-shot" share: the model and method whose trainable parameters
// adapt, the inner loop, and the task files.

// fewShotFlags are the shared flags.
type fewShotFlags struct {
	modelPath, method, device, template, tokenizer string
	innerOpt                                       string
	innerLR, maxGradNorm                           float64
	batchSize                                      int
	seed                                           uint64
	methods                                        *methodFlagSet
}

// define defines the shared flags and every method's flags (so --lora-r,
// --init-adapter, ... work as in gotune train).
func (f *fewShotFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.modelPath, "model", "", "`DIR` of the base model, in Hugging Face layout (required)")
	fs.StringVar(&f.method, "method", "lora", "parameter-efficient method whose trainable parameters adapt: "+adapterMethodNames())
	fs.StringVar(&f.innerOpt, "inner-opt", "adamw", "optimizer of the adaptation steps: adamw (fresh moments per task, betas 0.9/0.999) or sgd")
	fs.Float64Var(&f.innerLR, "inner-lr", 1e-2, "learning rate of the adaptation steps (constant)")
	fs.Float64Var(&f.maxGradNorm, "max-grad-norm", 1, "clip each adaptation step's global gradient norm to this value; 0 turns clipping off")
	fs.IntVar(&f.batchSize, "batch-size", 16, "most sequences per forward pass (a support or query set is one step however many passes it takes)")
	fs.Uint64Var(&f.seed, "seed", 1, "seed of the method's initialisation, the task draws and the support/query splits")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.StringVar(&f.template, "template", "auto", "chat template for instruction and chat data: auto (from the tokenizer's chat_template, else plain), or a name as in gotune train")
	fs.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer `PATH` (default: the model's)")
	f.methods = defineMethodFlags(fs)
}

// inner returns the inner-loop configuration for steps adaptation steps.
func (f *fewShotFlags) inner(steps int, stepsFlag string) (fewshot.InnerConfig, error) {
	opt, err := fewshot.ParseOptimizer(f.innerOpt)
	if err != nil {
		return fewshot.InnerConfig{}, &usageError{msg: "--inner-opt: " + err.Error()}
	}
	c := fewshot.InnerConfig{Steps: steps, LR: f.innerLR, Optimizer: opt, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: f.maxGradNorm}
	switch {
	case steps < 0:
		return c, &usageError{msg: fmt.Sprintf("--%s must not be negative, got %d", stepsFlag, steps)}
	case !(f.innerLR >= 0):
		return c, &usageError{msg: fmt.Sprintf("--inner-lr must not be negative, got %v", f.innerLR)}
	case !(f.maxGradNorm >= 0):
		return c, &usageError{msg: fmt.Sprintf("--max-grad-norm must not be negative, got %v", f.maxGradNorm)}
	case f.batchSize < 1:
		return c, &usageError{msg: fmt.Sprintf("--batch-size must be at least 1, got %d", f.batchSize)}
	}
	return c, nil
}

// adapterMethodNames lists the methods that train an adapter (not the
// model's own weights).
func adapterMethodNames() string {
	var names []string
	for _, n := range methodRegistry.Names() {
		if methodRegistry[n].TrainsAdapter() {
			names = append(names, n)
		}
	}
	return strings.Join(names, ", ")
}

// fewShotSetup is a loaded model with a method installed.
type fewShotSetup struct {
	be       engine.Backend
	m        model.Model
	saver    train.Saver
	params   []*engine.Param
	enc      fewshot.Encoding
	batching fewshot.Batching
	textOpts textdata.Options
}

// setup checks the method, opens the device, loads the model and
// tokenizer and installs the method (fresh, or from --init-adapter).
// Close the backend when done.
func (f *fewShotFlags) setup(log func(string)) (*fewShotSetup, error) {
	meth, ok := methodRegistry[f.method]
	if !ok || !meth.TrainsAdapter() {
		return nil, &usageError{msg: fmt.Sprintf("--method %q: few-shot adaptation trains an adapter; use one of %s", f.method, adapterMethodNames())}
	}
	if f.modelPath == "" {
		return nil, &usageError{msg: "--model is required"}
	}
	if !validDevice(f.device) {
		return nil, &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", f.device)}
	}
	tok, err := loadTokenizer(f.tokenizer, f.modelPath)
	if err != nil {
		return nil, err
	}
	tmpl, _, err := chooseTemplate(f.template, tok)
	if err != nil {
		return nil, err
	}
	be, err := openDevice(f.device, log)
	if err != nil {
		return nil, err
	}
	s := &fewShotSetup{be: be}
	// Meta-learning runs in float32: its inner and outer updates are
	// written against float32 parameters (--precision is not offered).
	if s.m, err = loadModel(f.modelPath, be, engine.PrecisionFP32); err != nil {
		be.Close()
		return nil, err
	}
	if err := checkVocab(tok, s.m); err != nil {
		be.Close()
		return nil, err
	}
	if s.saver, err = f.methods.apply(f.method, s.m, f.modelPath, f.seed); err != nil {
		be.Close()
		return nil, err
	}
	s.params = fewshot.Trainable(s.m.Params())
	cfg := s.m.Config()
	s.enc = fewshot.Encoding{Tokenizer: tok, Template: tmpl, VocabSize: cfg.VocabSize}
	pad := int32(0)
	if p := tok.PAD(); p >= 0 && p < cfg.VocabSize {
		pad = int32(p)
	}
	s.batching = fewshot.Batching{SeqLen: cfg.MaxPos, MicroBatch: f.batchSize, PadID: pad}
	s.textOpts = textdata.Options{Tokenizer: tok, Template: tmpl, SeqLen: cfg.MaxPos, VocabSize: cfg.VocabSize}
	return s, nil
}

// taskPaths lists the files of --tasks (comma-separated) and --tasks-dir
// (every regular file in it, sorted), naming the flag of a missing one.
func taskPaths(listFlag, list, dirFlag, dir string) ([]string, error) {
	var paths []string
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("--%s: %w", listFlag, err)
		}
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", dirFlag, err)
		}
		n := 0
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				paths = append(paths, filepath.Join(dir, e.Name()))
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("--%s %s: the folder holds no task files", dirFlag, dir)
		}
	}
	return paths, nil
}

// loadMetaTasks reads task files, checking each has at least need examples
// (what one support and query draw takes; shotsFlag names the option
// that sets the support size).
func loadMetaTasks(paths []string, opts textdata.Options, need int, needWhat string) ([]*fewshot.Task, error) {
	var out []*fewshot.Task
	for _, p := range paths {
		t, err := fewshot.LoadTask(p, opts)
		if err != nil {
			return nil, err
		}
		if len(t.Examples) < need {
			return nil, fmt.Errorf("%s has %d examples, fewer than %s", p, len(t.Examples), needWhat)
		}
		out = append(out, t)
	}
	return out, nil
}

// synthTasks draws n examples of each named synthetic task.
func synthTasks(flagName, names string, n int, seed uint64, enc fewshot.Encoding) ([]*fewshot.Task, error) {
	var out []*fewshot.Task
	for i, name := range strings.Split(names, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		st, err := synth.Lookup(name)
		if err != nil {
			return nil, &usageError{msg: "--" + flagName + ": " + strings.TrimPrefix(err.Error(), "synth: ")}
		}
		t, err := fewshot.SynthTask(st, n, seed+uint64(i), enc)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// trainParamsLine is the trainable-parameter summary of the set-up model.
func trainParamsLine(s *fewShotSetup) string { return train.ParamSummary(s.m.Params()) }

// scoredTasks loads the task files of paths (each with at least k + 1
// examples: k to adapt on, one to score) and draws n examples of each
// synthetic task named in synthNames; every task must have answers for
// exact match. filesFlag and synthFlag name the options in errors.
func (s *fewShotSetup) scoredTasks(filesFlag string, paths []string, k int, kFlag, synthFlag, synthNames string, n int, seed uint64) ([]*fewshot.Task, error) {
	list, err := loadMetaTasks(paths, s.textOpts, k+1, fmt.Sprintf("--%s %d + 1 to score", kFlag, k))
	if err != nil {
		return nil, err
	}
	st, err := synthTasks(synthFlag, synthNames, n, seed, s.enc)
	if err != nil {
		return nil, err
	}
	list = append(list, st...)
	for _, t := range list {
		if !t.Scorable() {
			return nil, fmt.Errorf("--%s: %s is not instruction or chat data, which exact match needs", filesFlag, t.Name)
		}
	}
	return list, nil
}
