package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/peft"
)

// methodFlags turns a golden run's method_config into the method's flags
// (its keys are the flag names in snake_case), passing every option
// explicitly so that the run also checks that the flags agree with the
// --init-adapter folder.
func methodFlags(t *testing.T, s *golden.MethodSet) []string {
	t.Helper()
	var mc map[string]any
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range mc {
			if !yield(k) {
				return
			}
		}
	}) {
		name := "--" + strings.ReplaceAll(k, "_", "-")
		switch v := mc[k].(type) {
		case bool:
			args = append(args, fmt.Sprintf("%s=%v", name, v))
		case float64:
			args = append(args, name, strconv.FormatFloat(v, 'g', -1, 64))
		case string:
			args = append(args, name, v)
		default:
			t.Fatalf("method_config %s: unexpected value %v", k, v)
		}
	}
	return args
}

// methodTrainArgs is the "gotune train" command line of golden method
// run s on its base set: the run's hyper-parameters, the method's flags
// and, where the run has one, its initial adapter folder (--init-adapter).
func methodTrainArgs(t *testing.T, s *golden.MethodSet, base *golden.Set, flags func(*testing.T, *golden.MethodSet) []string, out string) []string {
	t.Helper()
	args := goldenTrainArgs(base, &s.Meta.Run, out)
	args[slices.Index(args, "--data")+1] = s.Path(s.Meta.Data)
	args[slices.Index(args, "--method")+1] = s.Meta.Run.Method
	args = append(args, flags(t, s)...)
	if dir := s.AdapterDir(); dir != "" {
		args = append(args, "--init-adapter", dir)
	}
	return args
}

// TestMethodsMatchGolden runs "gotune train --method lora|freeze" (the
// binary) on every golden LoRA and freeze run, starting LoRA from the
// run's PEFT adapter folder with --init-adapter, and checks (see
// runMethodGolden) the parameter summary line, metrics.jsonl, the saved
// result after 3 steps (the adapter folder, whose adapter_config.json
// must be PEFT's; or the full weights for freeze, frozen ones unchanged),
// and that "gotune eval --adapter" on the initial adapter reports
// PyTorch's loss.
func TestMethodsMatchGolden(t *testing.T) {
	runMethodGolden(t, []string{"lora", "freeze"}, methodFlags,
		func(t *testing.T, s *golden.MethodSet, base *golden.Set, out string, gradNorm float64) {
			if s.Meta.Run.Method == "lora" {
				checkSavedAdapter(t, s, out, gradNorm)
				checkEvalAdapter(t, s)
			} else {
				checkSavedFreeze(t, s, base, out, gradNorm)
			}
		})
}

// runMethodGolden runs "gotune train" (the binary) on every golden run of
// the given methods with the run's hyper-parameters, the method's flags
// (flags) and, where the run has one, its initial adapter folder
// (--init-adapter), and checks the parameter summary line (counts from
// meta.json) and metrics.jsonl against PyTorch's losses, gradient norms,
// learning rates and token counts; check then checks what the run saved
// in out (gradNorm is the first step's reference gradient norm).
func runMethodGolden(t *testing.T, methods []string, flags func(*testing.T, *golden.MethodSet) []string,
	check func(t *testing.T, s *golden.MethodSet, base *golden.Set, out string, gradNorm float64)) {
	t.Helper()
	sets, err := golden.LoadMethods(filepath.Join(goldenDir, golden.MethodsDir))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, s := range sets {
		method := s.Meta.Run.Method
		if !slices.Contains(methods, method) {
			continue
		}
		ran++
		t.Run(s.Meta.Name, func(t *testing.T) {
			base, err := golden.Load(s.BaseDir())
			if err != nil {
				t.Fatal(err)
			}
			r := &s.Meta.Run
			out := filepath.Join(t.TempDir(), "out")
			args := methodTrainArgs(t, s, base, flags, out)
			res := runGotune(t, args...)
			if res.code != 0 {
				t.Fatalf("exit %d\nargs: %v\nstdout:\n%s\nstderr:\n%s", res.code, args, res.stdout, res.stderr)
			}

			// trainable params: X || all params: Y || trainable%: Z
			trainable, all := 0, 0
			for _, p := range r.Trainable {
				trainable += prod(p.Shape)
			}
			for _, p := range base.Meta.Params {
				all += prod(p.Shape)
			}
			if method != "freeze" {
				all += trainable // adapters add their tensors to the model
			}
			want := fmt.Sprintf("trainable params: %s || all params: %s || trainable%%: %.4f",
				groupDigits(int64(trainable)), groupDigits(int64(all)), 100*float64(trainable)/float64(all))
			if !strings.Contains(res.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
			}

			ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range golden.CompareSteps(goldenSteps(ms), r, s.Tensor) {
				t.Error(msg)
			}
			norms, _ := s.Tensor("grad_norms")
			check(t, s, base, out, float64(norms[0]))
		})
	}
	if ran == 0 {
		t.Fatalf("no %s golden runs", strings.Join(methods, ", "))
	}
}

func prod(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// checkSavedAdapter compares the saved PEFT folder with the golden one:
// the trained tensors with PyTorch's after 3 steps, the configuration key
// for key (base_model_name_or_path apart, which names --model).
func checkSavedAdapter(t *testing.T, s *golden.MethodSet, out string, gradNorm float64) {
	t.Helper()
	w, err := peft.ReadWeights(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &s.Meta.Run
	for _, p := range r.Trainable {
		got, err := w.Take(p.Name, p.Shape...)
		if err != nil {
			t.Error(err)
			continue
		}
		want, _ := s.Tensor("after." + p.Name)
		grad, _ := s.Tensor("grad." + p.Name)
		if msg, _ := golden.CompareAfter(got, want, grad, gradNorm, r.LR, r.Steps); msg != "" {
			t.Errorf("saved %s: %s", p.Name, msg)
		}
	}
	if err := w.CheckAllUsed("the run's trainable tensors"); err != nil {
		t.Error(err)
	}
	checkSavedConfig(t, s, out)
}

// checkSavedConfig compares the saved adapter_config.json with the
// initial folder's key for key; base_model_name_or_path must name
// --model.
func checkSavedConfig(t *testing.T, s *golden.MethodSet, out string) {
	t.Helper()
	read := func(dir string) map[string]any {
		raw, err := os.ReadFile(filepath.Join(dir, peft.ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	got, want := read(out), read(s.AdapterDir())
	if got["base_model_name_or_path"] != s.BaseDir() {
		t.Errorf("base_model_name_or_path %v, want --model %s", got["base_model_name_or_path"], s.BaseDir())
	}
	delete(got, "base_model_name_or_path")
	delete(want, "base_model_name_or_path")
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if string(gj) != string(wj) {
		t.Errorf("saved adapter_config.json\n%s\nreference\n%s", gj, wj)
	}
}

// checkSavedFreeze reloads the saved full model: trained tensors match
// PyTorch's after 3 steps, every other tensor is the base's, unchanged.
func checkSavedFreeze(t *testing.T, s *golden.MethodSet, base *golden.Set, out string, gradNorm float64) {
	t.Helper()
	be := cpu.New()
	m, err := model.Load(out, be)
	if err != nil {
		t.Fatalf("reloading the saved model: %v", err)
	}
	orig, err := model.Load(base.Dir, be)
	if err != nil {
		t.Fatal(err)
	}
	r := &s.Meta.Run
	trained := map[string]bool{}
	for _, p := range r.Trainable {
		trained[p.Name] = true
	}
	for _, p := range m.BaseParams() {
		got := be.Download(p.W)
		if !trained[p.Name] {
			o, _ := orig.Param(p.Name)
			if !slices.Equal(got, be.Download(o.W)) {
				t.Errorf("frozen %s changed", p.Name)
			}
			continue
		}
		want, _ := s.Tensor("after." + p.Name)
		grad, _ := s.Tensor("grad." + p.Name)
		if msg, _ := golden.CompareAfter(got, want, grad, gradNorm, r.LR, r.Steps); msg != "" {
			t.Errorf("saved %s: %s", p.Name, msg)
		}
	}
}

// checkEvalAdapter runs "gotune eval --adapter" with the run's initial
// adapter and checks the loss it prints (4 decimals) against PyTorch's.
func checkEvalAdapter(t *testing.T, s *golden.MethodSet) {
	t.Helper()
	res := runGotune(t, "eval", "--model", s.BaseDir(), "--adapter", s.AdapterDir(), "--data", s.Path(s.Meta.Data), "--device", "cpu")
	if res.code != 0 {
		t.Fatalf("eval: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	loss, _ := s.Tensor("loss")
	if want := fmt.Sprintf("loss: %.4f ", loss[0]); !strings.Contains(res.stdout, want) {
		t.Errorf("eval --adapter: stdout lacks %q:\n%s", want, res.stdout)
	}
}
