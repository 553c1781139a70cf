package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/llama2c"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/bytetok"
	"github.com/gotune/gotune/internal/demo"
)

const storiesDir = "../../../shared/models/stories260K"

// gotuneIn runs a command in-process and returns its exit status,
// stdout and stderr.
func gotuneIn(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	status := run(context.Background(), args, &env{Stdout: &out, Stderr: &errb})
	return status, out.String(), errb.String()
}

// storiesGolden reads the README's golden greedy outputs, keyed by prompt.
func storiesGolden(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(storiesDir, "README.md"))
	if err != nil {
		t.Skipf("stories260K is not available at %s (%v); skipping", storiesDir, err)
	}
	out := map[string]string{}
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		prompt, ok := "", false
		switch l := lines[i]; {
		case l == "No prompt:":
			ok = true
		case strings.HasPrefix(l, `Prompt "`) && strings.HasSuffix(l, `":`):
			prompt, ok = strings.TrimSuffix(strings.TrimPrefix(l, `Prompt "`), `":`), true
		}
		if ok && strings.HasPrefix(lines[i+1], "> ") {
			out[prompt] = strings.TrimPrefix(lines[i+1], "> ")
		}
	}
	if len(out) != 2 {
		t.Fatalf("found %d golden outputs in the README, want 2", len(out))
	}
	return out
}

// TestGenerateStoriesGolden runs "gotune generate" on the real llama2.c
// checkpoint and tokenizer and requires the README's greedy outputs
// exactly. The number of new tokens is where the golden text ends, found
// by generating through the library first.
func TestGenerateStoriesGolden(t *testing.T) {
	want := storiesGolden(t)
	bin, tokPath := filepath.Join(storiesDir, "stories260K.bin"), filepath.Join(storiesDir, "tok512.bin")
	m, err := llama2c.Load(bin, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	for prompt, text := range want {
		ids, err := generate.PromptIDs(tok, prompt)
		if err != nil {
			t.Fatal(err)
		}
		res, err := generate.Generate(context.Background(), m, ids, generate.Options{MaxNewTokens: 100})
		if err != nil {
			t.Fatal(err)
		}
		n := -1
		for k := 0; k <= len(res.Tokens); k++ {
			if tok.Decode(generate.Ints(append(append([]int32(nil), ids...), res.Tokens[:k]...))) == text {
				n = k
				break
			}
		}
		if n < 0 {
			t.Fatalf("prompt %q: the library does not produce the golden text", prompt)
		}
		for _, tokFlag := range []string{tokPath, ""} { // "": found next to the checkpoint
			// The golden is llama2.c's float32 run: the CPU backend in fp32
			// (auto would pick bf16 on a GPU, or on the emulator make test
			// points GOTUNE_LIBCUDA at).
			args := []string{"generate", "--model", bin, "--prompt", prompt, "--max-new-tokens", strconv.Itoa(n), "--temperature", "0", "--device", "cpu"}
			if tokFlag != "" {
				args = append(args, "--tokenizer", tokFlag)
			}
			status, stdout, stderr := gotuneIn(args...)
			if status != 0 || stdout != text+"\n" {
				t.Errorf("gotune %s: status %d\n got %q\nwant %q\nstderr %s", strings.Join(args, " "), status, stdout, text+"\n", stderr)
			}
		}
	}
}

// tinyModelDir writes a random tiny LLaMA with the demo's byte tokenizer.
func tinyModelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: 259, Hidden: 16, Layers: 1, Heads: 2, Intermediate: 32, MaxPos: 96})
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, cpu.New(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := bytetok.Write(dir, demo.Tokenizer); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestDataSynth(t *testing.T) {
	dir := t.TempDir()
	tr, ev := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	status, stdout, stderr := gotuneIn("data", "synth", "--task", "add", "--n", "300", "--eval-n", "50", "--seed", "3", "--out", tr, "--eval-out", ev)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	if !strings.Contains(stdout, "wrote 300 add examples") || !strings.Contains(stdout, "wrote 50 add evaluation examples") {
		t.Errorf("stdout %q", stdout)
	}
	trainEx, err := synth.ReadFile(tr)
	if err != nil {
		t.Fatal(err)
	}
	evalEx, err := synth.ReadFile(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(trainEx) != 300 || len(evalEx) != 50 {
		t.Fatalf("%d and %d examples", len(trainEx), len(evalEx))
	}
	seen := map[string]bool{}
	for _, x := range trainEx {
		seen[x.Input] = true
	}
	for _, x := range evalEx {
		if seen[x.Input] {
			t.Errorf("evaluation input %q is also a training input", x.Input)
		}
		seen[x.Input] = true
	}
	// The same seed gives the same files.
	tr2 := filepath.Join(dir, "again.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "add", "--n", "300", "--seed", "3", "--out", tr2); status != 0 {
		t.Fatal(stderr)
	}
	a, _ := os.ReadFile(tr)
	b, _ := os.ReadFile(tr2)
	if !bytes.Equal(a, b) {
		t.Error("same seed, different training file")
	}
}

func TestTextCommandErrors(t *testing.T) {
	dir := t.TempDir()
	mdir := tinyModelDir(t)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"instruction": "a", "output": "b"}`+"\n"+`{"instruction": "a", "output": "b", "extra": 1}`+"\n"), 0o644)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"data"}, "missing subcommand"},
		{[]string{"data", "mix"}, `unknown subcommand "mix"`},
		{[]string{"data", "synth", "--task", "nope", "--out", filepath.Join(dir, "x")}, `--task: unknown task "nope"`},
		{[]string{"data", "synth", "--task", "add", "--out", filepath.Join(dir, "x"), "--eval-n", "3"}, "--eval-n needs --eval-out"},
		// add has 100·100 distinct inputs.
		{[]string{"data", "synth", "--task", "add", "--n", "10", "--eval-n", "10000", "--out", filepath.Join(dir, "x"), "--eval-out", filepath.Join(dir, "y")}, "could not find 10000 evaluation examples"},
		{[]string{"generate"}, "--model is required"},
		{[]string{"generate", "--model", mdir, "--temperature", "-1"}, "--temperature must be a non-negative number"},
		{[]string{"generate", "--model", mdir, "--template", "vicuna"}, `unknown chat template "vicuna"`},
		{[]string{"generate", "--model", mdir, "--template", "chatml"}, "chat template chatml writes <|im_start|>, which is not a token of this tokenizer"},
		{[]string{"generate", "--model", mdir, "--system", "x"}, "--system needs --template"},
		{[]string{"generate", "--model", filepath.Join(dir, "missing")}, "no tokenizer found with the model"},
		{[]string{"generate", "--model", mdir, "--adapter", filepath.Join(dir, "missing")}, "--adapter"},
		{[]string{"eval", "--model", mdir, "--data", bad}, bad + `:2: unknown field "extra"`},
		{[]string{"eval", "--model", mdir, "--data", bad, "--format", "chat"}, bad + `:1: unknown fields "instruction", "output"`},
		{[]string{"eval", "--model", mdir, "--data", filepath.Join(dir, "none.jsonl")}, "no such file"},
		{[]string{"data", "show", "--data", bad}, "--model or --tokenizer is required"},
	}
	for _, c := range cases {
		status, _, stderr := gotuneIn(c.args...)
		if status != exitError || !strings.Contains(stderr, c.want) {
			t.Errorf("gotune %s: status %d, stderr %q; want 1 and %q", strings.Join(c.args, " "), status, stderr, c.want)
		}
	}
}

// TestEvalAndShow runs eval and data show on instruction data with a tiny
// random model: the commands must report a finite loss and an exact-match
// count, and show the label mask.
func TestEvalAndShow(t *testing.T) {
	mdir := tinyModelDir(t)
	data := filepath.Join(t.TempDir(), "d.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "upper", "--n", "6", "--out", data); status != 0 {
		t.Fatal(stderr)
	}
	status, stdout, stderr := gotuneIn("eval", "--model", mdir, "--data", data, "--max-new-tokens", "4", "--show", "1")
	if status != 0 {
		t.Fatalf("eval: %s", stderr)
	}
	for _, want := range []string{"chat template plain", "data: 6 examples (instruction)", "loss: ", "exact match: 0/6 = 0.0%", "✗ " + data + ":1"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("eval output lacks %q:\n%s", want, stdout)
		}
	}
	status, stdout, stderr = gotuneIn("data", "show", "--data", data, "--model", mdir, "--n", "1")
	if status != 0 {
		t.Fatalf("data show: %s", stderr)
	}
	x, _ := synth.ReadFile(data)
	want := "<s>" + x[0].Instruction + "\n" + x[0].Input + "\n⟦" + x[0].Output + "</s>⟧"
	if !strings.Contains(stdout, want) {
		t.Errorf("data show:\n%s\nwant the line %q", stdout, want)
	}
}

// TestDemoRuns runs a very short demo end to end on the committed model.
func TestDemoRuns(t *testing.T) {
	if _, err := os.Stat(filepath.Join("../..", demo.Dir, "config.json")); err != nil {
		t.Skipf("the built-in model is not committed yet: %v", err)
	}
	for _, method := range []string{"full", defaultDemoMethod()} {
		out := t.TempDir()
		status, stdout, stderr := gotuneIn("demo", "--base", filepath.Join("../..", demo.Dir), "--method", method, "--n", "16", "--eval-n", "3", "--steps", "2", "--batch-size", "4", "--out", out)
		if status != 0 {
			t.Fatalf("demo --method %s: %s\n%s", method, stderr, stdout)
		}
		for _, want := range []string{"before fine-tuning: exact match", "after fine-tuning: exact match", "before →", "with --method " + method} {
			if !strings.Contains(stdout, want) {
				t.Errorf("demo --method %s output lacks %q:\n%s", method, want, stdout)
			}
		}
		if entries, err := os.ReadDir(out); err != nil || len(entries) < 3 {
			t.Errorf("demo --method %s --out wrote %d files (%v)", method, len(entries), err)
		}
	}
}

// TestOpenData checks the dataset flags gotune train uses: the tokenizer
// is loaded from the model only for text formats, the template note is
// printed for conversational data, and --eval-data errors are named.
func TestOpenData(t *testing.T) {
	mdir := tinyModelDir(t)
	noTok := t.TempDir()
	dir := t.TempDir()
	instr := filepath.Join(dir, "i.jsonl")
	os.WriteFile(instr, []byte(`{"instruction": "a", "output": "b"}`+"\n"), 0o644)
	pre := filepath.Join(dir, "p.jsonl")
	os.WriteFile(pre, []byte(`{"input_ids": [1, 2, 3]}`+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"instruction": "a", "output": 1}`+"\n"), 0o644)
	// Chat templates given as files: one that does not parse, one that
	// raises on this data, one that works.
	broken := filepath.Join(dir, "broken.jinja")
	os.WriteFile(broken, []byte("{% for m in messages %}\n{{ m.content }\n"), 0o644)
	raises := filepath.Join(dir, "raises.jinja")
	os.WriteFile(raises, []byte("{{ raise_exception('System role not supported') }}"), 0o644)
	good := filepath.Join(dir, "good.jinja")
	os.WriteFile(good, []byte("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"), 0o644)

	var log bytes.Buffer
	df := textDataFlags{format: "auto", template: "auto", evalData: instr}
	td, err := df.openData(instr, mdir, 64, 259, &log)
	if err != nil {
		t.Fatal(err)
	}
	if td.Tok == nil || td.Tmpl == nil || td.Tmpl.Name() != "plain" || td.Eval == nil || td.Train.Format != "instruction" {
		t.Errorf("instruction data: %+v", td)
	}
	if !strings.Contains(log.String(), "chat template plain") {
		t.Errorf("log %q lacks the template note", log.String())
	}
	if df.evalEveryConfig() <= 1000000 {
		t.Errorf("--eval-data without --eval-every: EvalEvery %d, want after the last step only", df.evalEveryConfig())
	}

	df = textDataFlags{format: "auto", template: "auto"}
	td, err = df.openData(pre, noTok, 64, 259, &log)
	if err != nil || td.Tok != nil || td.Train.Format != "pretokenized" || df.evalEveryConfig() != 0 {
		t.Errorf("pre-tokenized data without a tokenizer: %+v, %v", td, err)
	}

	for _, c := range []struct {
		df   textDataFlags
		data string
		want string
	}{
		{textDataFlags{format: "auto", template: "auto", evalEvery: 5}, instr, "--eval-every needs --eval-data"},
		{textDataFlags{format: "auto", template: "auto", evalData: bad}, instr, "--eval-data: " + bad + `:1: "output" must be a string, got a number`},
		{textDataFlags{format: "auto", template: "llama9"}, instr, `unknown chat template "llama9"`},
		{textDataFlags{format: "auto", template: "llama9"}, pre, `unknown chat template "llama9"`},
		{textDataFlags{format: "auto", template: "auto"}, instr + "x", "no such file"},
		{textDataFlags{format: "auto", template: broken}, instr, "chat template " + broken + ": line 2: {{ is never closed with }}"},
		{textDataFlags{format: "auto", template: raises}, instr, instr + ":1: chat template " + raises + ": the template raised an exception: System role not supported"},
		{textDataFlags{format: "auto", template: filepath.Join(dir, "none.jinja")}, instr, "none.jinja: no such file"},
	} {
		if _, err := c.df.openData(c.data, mdir, 64, 259, &log); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.df, err, c.want)
		}
	}
	df = textDataFlags{format: "auto", template: good}
	if td, err = df.openData(instr, mdir, 64, 259, &log); err != nil || td.Tmpl.Name() != good {
		t.Errorf("--template %s: %+v, %v", good, td, err)
	} else if ex := td.Train.Examples[0]; ex.Targets(len(ex.InputIDs)) != 1 {
		t.Errorf("--template %s: %d tokens trained on, want the reply's one byte", good, ex.Targets(len(ex.InputIDs)))
	}
	df = textDataFlags{format: "auto", template: "auto"}
	if _, err := df.openData(instr, noTok, 64, 259, &log); err == nil || !strings.Contains(err.Error(), "no tokenizer found with the model") {
		t.Errorf("instruction data without a tokenizer: %v", err)
	}
}

// TestFullCheckpointIsSelfContained follows the README: a full fine-tune's
// --out is then passed as --model to eval, which needs the tokenizer
// beside the weights, so train must copy the base model's tokenizer files.
func TestFullCheckpointIsSelfContained(t *testing.T) {
	mdir := tinyModelDir(t)
	data := filepath.Join(t.TempDir(), "d.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "upper", "--n", "4", "--out", data); status != 0 {
		t.Fatal(stderr)
	}
	for _, method := range []string{"full", "freeze"} {
		out := filepath.Join(t.TempDir(), "run")
		status, stdout, stderr := gotuneIn("train", "--model", mdir, "--data", data, "--method", method,
			"--freeze-trainable-layers", "1", "--steps", "1", "--batch-size", "2", "--device", "cpu", "--out", out)
		if status != 0 {
			t.Fatalf("train --method %s: %s\n%s", method, stderr, stdout)
		}
		for _, name := range []string{"config.json", "model.safetensors", "tokenizer.json"} {
			if _, err := os.Stat(filepath.Join(out, name)); err != nil {
				t.Errorf("train --method %s: %v", method, err)
			}
		}
		if status, stdout, stderr := gotuneIn("eval", "--model", out, "--data", data, "--max-new-tokens", "2", "--device", "cpu"); status != 0 || !strings.Contains(stdout, "loss: ") {
			t.Errorf("eval of the --method %s checkpoint: status %d\n%s%s", method, status, stdout, stderr)
		}
	}
}
