package prompt

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/fieldpaths"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEncoderFiniteDifferences checks the prompt encoders' backward
// (BPTT over both LSTM directions and every layer, the MLP head) against
// finite differences of Σ w⊙encoder(), for every tensor.
func TestEncoderFiniteDifferences(t *testing.T) {
	tests := []struct {
		typ            EncoderType
		P, D, H, layer int
	}{
		{EncoderMLP, 3, 5, 4, 0},
		{EncoderLSTM, 4, 5, 3, 1},
		{EncoderLSTM, 3, 5, 3, 2},
		{EncoderLSTM, 1, 4, 2, 2},
		{EncoderLSTM, 5, 3, 2, 3},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/P=%d/layers=%d", tc.typ, tc.P, tc.layer), func(t *testing.T) {
			be := cpu.New()
			enc := newEncoder(be, tc.typ, tc.P, tc.D, tc.H, tc.layer)
			for i, p := range enc.Params() {
				be.Copy(p.W, methodtest.Random(be, uint64(i+1), 0.6, p.W.Shape()...))
				model.SetTrainable(p, true)
			}
			w := methodtest.Random(be, 99, 1, tc.P, tc.D)
			f := func() float64 { return methodtest.Dot(be, w, enc.Forward(true)) }
			f()
			enc.Backward(w)
			for _, p := range enc.Params() {
				methodtest.FDCheck(t, p.Name, p.W, be.Download(p.G), f)
			}
		})
	}
}

// TestLSTMMatchesSteps checks the LSTM forward against a host
// recomputation of torch.nn.LSTM's equations, step by step, for both
// directions of one layer.
func TestLSTMMatchesSteps(t *testing.T) {
	const P, in, H = 4, 3, 2
	be := cpu.New()
	for _, reverse := range []bool{false, true} {
		d := newLSTMDir(be, "x.", 0, reverse, P, in, H)
		for i, p := range d.params() {
			be.Copy(p.W, methodtest.Random(be, uint64(i+7), 0.8, p.W.Shape()...))
		}
		x := methodtest.Random(be, 3, 1, P, in)
		d.forward(x)
		got := be.Download(d.h)
		wih, whh, bih, bhh, xs := be.Download(d.wih.W), be.Download(d.whh.W), be.Download(d.bih.W), be.Download(d.bhh.W), be.Download(x)
		want := make([]float32, P*H)
		h, c := make([]float64, H), make([]float64, H)
		for k := 0; k < P; k++ {
			tt := k
			if reverse {
				tt = P - 1 - k
			}
			g := make([]float64, 4*H)
			for r := range g {
				s := float64(bih[r]) + float64(bhh[r])
				for j := 0; j < in; j++ {
					s += float64(wih[r*in+j]) * float64(xs[tt*in+j])
				}
				for j := 0; j < H; j++ {
					s += float64(whh[r*H+j]) * h[j]
				}
				g[r] = s
			}
			for j := 0; j < H; j++ {
				i, f, gg, o := sigmoid(g[j]), sigmoid(g[H+j]), tanh(g[2*H+j]), sigmoid(g[3*H+j])
				c[j] = f*c[j] + i*gg
				h[j] = o * tanh(c[j])
				want[tt*H+j] = float32(h[j])
			}
		}
		if e := golden.RelErr(got, want); e > 1e-6 {
			t.Errorf("reverse=%v: outputs %v, want %v", reverse, got, want)
		}
	}
}

// TestEndToEndGradients checks the virtual tokens' gradients through a
// whole model against finite differences of the loss, with the first
// label scored against the last virtual token (the batch's row 0 has a
// counted first label).
func TestEndToEndGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, kind := range []string{"prompt", "mlp", "lstm"} {
			t.Run(arch+"/"+kind, func(t *testing.T) {
				m := methodtest.Tiny(t, arch, 3)
				var a *Adapter
				var err error
				if kind == "prompt" {
					a, err = ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 3, Seed: 4})
				} else {
					typ, _ := ParseEncoderType(kind)
					a, err = ApplyPTuning(m, PTuningConfig{NumVirtualTokens: 3, Encoder: typ, EncoderHidden: 6, Seed: 4})
				}
				if err != nil {
					t.Fatal(err)
				}
				hb := methodtest.Batch(2, 5, m.Config().VocabSize, 6)
				if hb.CountedFirst != 1 || train.Counted(m, hb) != hb.Counted+1 {
					t.Fatalf("the batch's first label is not counted (%d, %d)", hb.CountedFirst, train.Counted(m, hb))
				}
				methodtest.CheckModelGradients(t, m, hb, a.Params())
			})
		}
	}
}

// TestTextInit checks PEFT's TEXT initialisation: the text's token
// embeddings, repeated or cut to the number of virtual tokens.
func TestTextInit(t *testing.T) {
	for _, tc := range []struct {
		ids  []int32
		P    int
		want []int32
	}{
		{[]int32{5, 6}, 5, []int32{5, 6, 5, 6, 5}},
		{[]int32{1, 2, 3, 4}, 2, []int32{1, 2}},
		{[]int32{7}, 1, []int32{7}},
	} {
		m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
		a, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: tc.P, Init: InitText, InitText: "x", InitTokenIDs: tc.ids, TokenizerPath: "tok"})
		if err != nil {
			t.Fatal(err)
		}
		emb, _ := m.Param("model.embed_tokens.weight")
		table := m.Backend().Download(emb.W)
		D := m.Config().Hidden
		var want []float32
		for _, id := range tc.want {
			want = append(want, table[int(id)*D:(int(id)+1)*D]...)
		}
		if got := m.Backend().Download(a.Embeddings()); !slices.Equal(got, want) {
			t.Errorf("ids %v, P %d: virtual tokens are not the embeddings of %v", tc.ids, tc.P, tc.want)
		}
		pc := a.PeftConfig().(*TuningPeftConfig)
		if pc.PromptTuningInit != "TEXT" || *pc.PromptTuningInitText != "x" || *pc.TokenizerNameOrPath != "tok" {
			t.Errorf("config %+v", pc)
		}
	}
}

// TestTextInitGemma3 checks that TEXT takes the embeddings as Gemma 3's
// scaled embedding module returns them (PEFT's word_embeddings(ids)):
// the table's rows times sqrt(hidden); Gemma 2 scales later, with the
// virtual tokens, so its rows are copied as stored.
func TestTextInitGemma3(t *testing.T) {
	for _, tc := range []struct {
		set   string
		scale float64
	}{{"gemma3", math.Sqrt(32)}, {"gemma2", 1}} {
		m, err := model.Load(filepath.Join(methodtest.Root, "..", tc.set), cpu.New())
		require.NoError(t, err)
		a, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 2, Init: InitText, InitText: "x", InitTokenIDs: []int32{9, 4}})
		require.NoError(t, err)
		emb, _ := m.Param("model.embed_tokens.weight")
		table := m.Backend().Download(emb.W)
		D := m.Config().Hidden
		var want []float32
		for _, id := range []int{9, 4} {
			for _, v := range table[id*D : (id+1)*D] {
				want = append(want, float32(float64(v)*float64(float32(tc.scale))))
			}
		}
		assert.InDeltaSlice(t, want, m.Backend().Download(a.Embeddings()), 1e-6, tc.set)
	}
}

// TestConfigFilesMatchReference writes adapter_config.json for the golden
// sets' configurations and compares it byte for byte with the reference
// folders' (written by the Python generator from PEFT's dataclasses).
func TestConfigFilesMatchReference(t *testing.T) {
	for _, method := range []string{"prompt", "ptuning"} {
		for _, set := range methodtest.Sets(t, methodtest.Root, method) {
			t.Run(set.Meta.Name, func(t *testing.T) {
				m, err := model.Load(set.BaseDir(), cpu.New())
				if err != nil {
					t.Fatal(err)
				}
				var a *Adapter
				if method == "prompt" {
					c, err := ReadTuningConfig(set.AdapterDir(), m)
					if err != nil {
						t.Fatal(err)
					}
					a, err = ApplyPromptTuning(m, c)
					if err != nil {
						t.Fatal(err)
					}
				} else {
					c, err := ReadPTuningConfig(set.AdapterDir(), m)
					if err != nil {
						t.Fatal(err)
					}
					a, err = ApplyPTuning(m, c)
					if err != nil {
						t.Fatal(err)
					}
				}
				methodtest.CheckConfigFile(t, set, a.PeftConfig())
			})
		}
	}
}

// TestResumePTuning saves a trained P-Tuning adapter and loads it back
// for further training: the encoder's tensors come back exactly, and
// PEFT's prompt_embeddings is the encoder's output.
func TestResumePTuning(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchGPT2, 2)
	a, err := ApplyPTuning(m, PTuningConfig{NumVirtualTokens: 2, Encoder: EncoderLSTM, EncoderHidden: 4, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	out := m.Backend().Download(a.Embeddings())
	m2 := methodtest.Tiny(t, hfconfig.ArchGPT2, 2)
	b, err := Load(m2, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	methodtest.CheckRestored(t, a.Params(), b.Params())
	saved := methodtest.SavedTensor(t, dir, EmbeddingsName, 2, m.Config().Hidden)
	if !slices.Equal(saved, out) {
		t.Error("prompt_embeddings is not the encoder's output")
	}
}

// TestBadInputs checks the errors for invalid options and folders.
func TestBadInputs(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
	for _, tc := range []struct {
		cfg  TuningConfig
		want string
	}{
		{TuningConfig{NumVirtualTokens: 0}, "NumVirtualTokens must be positive, got 0"},
		{TuningConfig{NumVirtualTokens: 2, Init: InitText}, "InitTokenIDs is empty: initialisation from text needs a non-empty text"},
		{TuningConfig{NumVirtualTokens: 2, Init: "zeros"}, `Init "zeros": unknown prompt initialisation`},
		{TuningConfig{NumVirtualTokens: 1000}, "NumVirtualTokens 1000 is more than the model's 64 positions"},
	} {
		_, err := ApplyPromptTuning(m, tc.cfg)
		assert.ErrorContains(t, err, tc.want)
		fieldpaths.RequireFieldError(t, err, TuningConfig{})
	}
	for _, tc := range []struct {
		cfg  PTuningConfig
		want string
	}{
		{PTuningConfig{NumVirtualTokens: 0, Encoder: EncoderMLP}, "NumVirtualTokens must be positive, got 0"},
		{PTuningConfig{NumVirtualTokens: 2, Encoder: "GRU"}, `Encoder "GRU": unknown P-Tuning encoder`},
		{PTuningConfig{NumVirtualTokens: 2, Encoder: EncoderMLP, EncoderHidden: -1}, "EncoderHidden must not be negative"},
		{PTuningConfig{NumVirtualTokens: 2, Encoder: EncoderLSTM, EncoderLayers: -1}, "EncoderLayers must not be negative"},
		{PTuningConfig{NumVirtualTokens: 1000, Encoder: EncoderMLP}, "NumVirtualTokens 1000 is more than the model's 64 positions"},
	} {
		_, err := ApplyPTuning(m, tc.cfg)
		assert.ErrorContains(t, err, tc.want)
		fieldpaths.RequireFieldError(t, err, PTuningConfig{})
	}
	if _, err := ParseEncoderType("gru"); err == nil {
		t.Error("ParseEncoderType accepted gru")
	}
	if _, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 2, Init: InitText, InitTokenIDs: []int32{400}}); err == nil || !strings.Contains(err.Error(), "outside the model's vocabulary") {
		t.Errorf("token outside the vocabulary: %v", err)
	}
	for _, p := range m.Params() {
		if !p.Trainable {
			t.Fatalf("%s was frozen by a failed Apply", p.Name)
		}
	}
	if m.Prompt() != nil {
		t.Fatal("a failed Apply left a prompt installed")
	}
	a, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 2}); err == nil || !strings.Contains(err.Error(), "already has virtual tokens") {
		t.Errorf("second prompt: %v", err)
	}
	a.Remove()
	if m.Prompt() != nil {
		t.Error("Remove left the prompt installed")
	}
}

// TestLoadErrors checks broken adapter folders.
func TestLoadErrors(t *testing.T) {
	sets := methodtest.Sets(t, methodtest.Root, "ptuning")
	var mlpDir, lstmDir string
	for _, s := range sets {
		switch s.Meta.Name {
		case "ptuning-mlp":
			mlpDir = s.AdapterDir()
		case "ptuning-lstm":
			lstmDir = s.AdapterDir()
		}
	}
	src := mlpDir
	copyDir := func(t *testing.T, skip string) string {
		dir := t.TempDir()
		entries, _ := os.ReadDir(src)
		for _, e := range entries {
			if e.Name() == skip || !strings.HasPrefix(e.Name(), "adapter_") && e.Name() != EncoderFile {
				continue
			}
			b, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	load := func(dir string, frozen bool) error {
		m, err := model.Load(sets[0].BaseDir(), cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(m, dir, LoadOptions{Frozen: frozen})
		if err != nil && m.Prompt() != nil {
			t.Error("a failed Load left a prompt installed")
		}
		return err
	}
	t.Run("no encoder file", func(t *testing.T) {
		dir := copyDir(t, EncoderFile)
		if err := load(dir, false); err == nil || !strings.Contains(err.Error(), "prompt_encoder.safetensors, which gotune writes beside it, is missing") {
			t.Errorf("error %v", err)
		}
		if err := load(dir, true); err != nil {
			t.Errorf("inference load without the encoder: %v", err)
		}
	})
	t.Run("token_dim", func(t *testing.T) {
		dir := copyDir(t, "")
		methodtest.EditConfig(t, dir, `"token_dim": 32`, `"token_dim": 16`)
		if err := load(dir, true); err == nil || !strings.Contains(err.Error(), "token_dim is 16, but this model needs 32") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("virtual tokens", func(t *testing.T) {
		dir := copyDir(t, "")
		methodtest.EditConfig(t, dir, `"num_virtual_tokens": 3`, `"num_virtual_tokens": 4`)
		if err := load(dir, true); err == nil || !strings.Contains(err.Error(), `"prompt_embeddings" has shape [3 32], expected [4 32]`) {
			t.Errorf("error %v", err)
		}
		methodtest.EditConfig(t, dir, `"num_virtual_tokens": 4`, `"num_virtual_tokens": 0`)
		if err := load(dir, true); err == nil || !strings.Contains(err.Error(), "num_virtual_tokens must be positive, got 0") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("encoder type", func(t *testing.T) {
		src = lstmDir
		defer func() { src = mlpDir }()
		dir := copyDir(t, "")
		methodtest.EditConfig(t, dir, `"LSTM"`, `"MLP"`)
		if err := load(dir, false); err == nil || !strings.Contains(err.Error(), `"prompt_encoder.mlp_head.0.weight" has shape [24 24], expected [12 32]`) {
			t.Errorf("LSTM tensors read as an MLP encoder: %v", err)
		}
		methodtest.EditConfig(t, dir, `"MLP"`, `"GRU"`)
		if err := load(dir, false); err == nil || !strings.Contains(err.Error(), `unknown P-Tuning encoder "GRU"`) {
			t.Errorf("error %v", err)
		}
	})
	t.Run("other method", func(t *testing.T) {
		m, _ := model.Load(sets[0].BaseDir(), cpu.New())
		_, err := Load(m, filepath.Join(methodtest.Root, "lora"), LoadOptions{})
		if err == nil || !strings.Contains(err.Error(), `peft_type "LORA" is not prompt tuning or P-Tuning`) {
			t.Errorf("error %v", err)
		}
	})
}

// TestFrozenPTuningIsFixedPrompt checks that loading a P-Tuning folder
// for inference uses the saved encoder output as a frozen table, as PEFT
// does.
func TestFrozenPTuningIsFixedPrompt(t *testing.T) {
	set := methodtest.Sets(t, methodtest.Root, "ptuning")[0]
	m, err := model.Load(set.BaseDir(), cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	a, err := Load(m, set.AdapterDir(), LoadOptions{Frozen: true})
	if err != nil {
		t.Fatal(err)
	}
	want := methodtest.SavedTensor(t, set.AdapterDir(), EmbeddingsName, 3, 32)
	if len(a.Params()) != 1 || a.Params()[0].Trainable || !slices.Equal(m.Backend().Download(a.Embeddings()), want) {
		t.Error("not a frozen table holding prompt_embeddings")
	}
}

func sigmoid(x float64) float64 { return 1 / (1 + exp(-x)) }

func exp(x float64) float64  { return math.Exp(x) }
func tanh(x float64) float64 { return math.Tanh(x) }

// TestTrainerCountsFirstLabels checks that a training step with virtual
// tokens counts each scored first label in the step's tokens and mean
// loss, as PEFT's padded labels do, and that without a prompt they are
// not counted.
func TestTrainerCountsFirstLabels(t *testing.T) {
	for _, withPrompt := range []bool{false, true} {
		m := methodtest.Tiny(t, hfconfig.ArchLlama, 5)
		if withPrompt {
			if _, err := ApplyPromptTuning(m, TuningConfig{NumVirtualTokens: 2, Seed: 1}); err != nil {
				t.Fatal(err)
			}
		}
		ds := &data.Dataset{Name: "mem", Examples: []data.Example{
			{InputIDs: []int32{3, 4, 5, 6}, Labels: []int32{3, 4, -100, 6}},
			{InputIDs: []int32{7, 8, 9}, Labels: []int32{-100, 8, 9}},
		}}
		loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 4})
		if err != nil {
			t.Fatal(err)
		}
		want := 4 // shifted targets: 4, 6 and 8, 9
		if withPrompt {
			want++ // the first row's first label, 3
		}
		hb := loader.Batch(0, 0)
		lossSum, err := train.ForwardBatch(m, hb, false, 0)
		if err != nil {
			t.Fatal(err)
		}
		tr, err := train.New(m, loader, train.Config{Steps: 1, GradAccum: 1, LR: 1e-3, Schedule: train.Constant, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, train.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		if s.Tokens != want || math.Abs(s.Loss-lossSum/float64(want)) > 1e-6*s.Loss {
			t.Errorf("prompt %v: step counted %d tokens (want %d), loss %v (want %v)", withPrompt, s.Tokens, want, s.Loss, lossSum/float64(want))
		}
	}
}
