package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
)

// Request is one command from the driver. Cmd selects what runs and which
// other fields matter:
//   - "info": nothing; answers the backend name, GOMAXPROCS and Go version.
//   - "gemm": M, N, K, TransA, TransB, Iters. Runs Iters products
//     c[M,N] = op(a)·op(b) on operands kept from the previous gemm
//     command with the same shape (made, filled with N(0,1) values, on
//     first use).
//   - "train_init": the Llama sizes, Batch, Seq, Seed and the optimizer
//     settings. Builds a randomly initialised model and a trainer over a
//     fixed batch of random tokens, replacing any earlier one.
//   - "train": Steps full optimizer steps (forward, backward, gradient
//     norm and clipping, AdamW, zeroed gradients) of that trainer.
//   - "quit": ends the session.
type Request struct {
	Cmd string `json:"cmd"`

	M      int  `json:"m,omitempty"`
	N      int  `json:"n,omitempty"`
	K      int  `json:"k,omitempty"`
	TransA bool `json:"ta,omitempty"`
	TransB bool `json:"tb,omitempty"`
	Iters  int  `json:"iters,omitempty"`

	Vocab        int     `json:"vocab,omitempty"`
	Hidden       int     `json:"hidden,omitempty"`
	Layers       int     `json:"layers,omitempty"`
	Heads        int     `json:"heads,omitempty"`
	KVHeads      int     `json:"kv_heads,omitempty"`
	Intermediate int     `json:"intermediate,omitempty"`
	Batch        int     `json:"batch,omitempty"`
	Seq          int     `json:"seq,omitempty"`
	Seed         uint64  `json:"seed,omitempty"`
	LR           float64 `json:"lr,omitempty"`
	WeightDecay  float64 `json:"weight_decay,omitempty"`
	Beta1        float64 `json:"beta1,omitempty"`
	Beta2        float64 `json:"beta2,omitempty"`
	Eps          float64 `json:"eps,omitempty"`
	MaxGradNorm  float64 `json:"max_grad_norm,omitempty"`
	Steps        int     `json:"steps,omitempty"`
}

// Response answers one Request. OK false means Error says what was wrong
// with the request; the server keeps serving.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`

	// Seconds is the wall time of the timed work; CPUSeconds the process's
	// user+system CPU time over it (0 where the OS does not report it).
	// CPUSeconds/Seconds near GOMAXPROCS means the workers had the cores.
	Seconds    float64 `json:"seconds,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`

	// info
	Backend    string `json:"backend,omitempty"`
	GoMaxProcs int    `json:"gomaxprocs,omitempty"`
	GoVersion  string `json:"go_version,omitempty"`
	NumCPU     int    `json:"num_cpu,omitempty"`

	// train_init: the Hugging Face config.json of the model, so the
	// reference builds exactly the same shapes, and its parameter count.
	Config json.RawMessage `json:"config,omitempty"`
	Params int64           `json:"params,omitempty"`

	// train: counted tokens over the steps, the last step's mean loss and
	// gradient norm (a sanity check that real work was done).
	Tokens   int     `json:"tokens,omitempty"`
	Loss     float64 `json:"loss,omitempty"`
	GradNorm float64 `json:"grad_norm,omitempty"`
}

// maxElems bounds one gemm operand (1<<28 float32 = 1 GiB) so a typo in a
// request fails with a message instead of exhausting memory.
const maxElems = 1 << 28

// server holds the state commands share: the backend, the operands of the
// last gemm shape and the current trainer.
type server struct {
	be engine.Backend

	gemmKey             [5]int
	gemmA, gemmB, gemmC *engine.Tensor

	trainer *train.Trainer
}

func newServer() *server { return &server{be: cpu.New()} }

// serve answers requests from in until "quit" or end of input. It returns
// an error only when it cannot read a line or write an answer.
func (s *server) serve(in *bufio.Reader, out *bufio.Writer) error {
	enc := json.NewEncoder(out)
	for line := 1; ; line++ {
		text, err := in.ReadBytes('\n')
		if len(text) == 0 && errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading request line %d: %w", line, err)
		}
		var req Request
		var resp Response
		if jerr := json.Unmarshal(text, &req); jerr != nil {
			resp = Response{Error: fmt.Sprintf("request line %d is not a JSON request: %v", line, jerr)}
		} else {
			if req.Cmd == "quit" {
				return nil
			}
			resp = s.handle(req)
			if resp.Error != "" {
				resp.Error = fmt.Sprintf("request line %d (%s): %s", line, req.Cmd, resp.Error)
			}
		}
		if werr := enc.Encode(resp); werr != nil {
			return fmt.Errorf("writing answer to request line %d: %w", line, werr)
		}
		if werr := out.Flush(); werr != nil {
			return fmt.Errorf("writing answer to request line %d: %w", line, werr)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// handle runs one request.
func (s *server) handle(req Request) Response {
	switch req.Cmd {
	case "info":
		return Response{OK: true, Backend: s.be.Name(), GoMaxProcs: runtime.GOMAXPROCS(0),
			GoVersion: runtime.Version(), NumCPU: runtime.NumCPU()}
	case "gemm":
		return s.gemm(req)
	case "train_init":
		return s.trainInit(req)
	case "train":
		return s.train(req)
	default:
		return Response{Error: fmt.Sprintf("unknown command %q (want info, gemm, train_init, train or quit)", req.Cmd)}
	}
}

// gemm times req.Iters products at one shape and transposition.
func (s *server) gemm(req Request) Response {
	m, n, k := req.M, req.N, req.K
	if m <= 0 || n <= 0 || k <= 0 {
		return Response{Error: fmt.Sprintf("m, n and k must be positive, got %d×%d×%d", m, n, k)}
	}
	if m*k > maxElems || k*n > maxElems || m*n > maxElems {
		return Response{Error: fmt.Sprintf("shape %d×%d×%d has an operand over %d elements", m, n, k, maxElems)}
	}
	if req.Iters <= 0 {
		return Response{Error: fmt.Sprintf("iters must be positive, got %d", req.Iters)}
	}
	key := [5]int{m, n, k, b2i(req.TransA), b2i(req.TransB)}
	if s.gemmC == nil || key != s.gemmKey {
		s.freeGemm()
		s.gemmA = s.randomTensor(1, stored(m, k, req.TransA)...)
		s.gemmB = s.randomTensor(2, stored(k, n, req.TransB)...)
		s.gemmC = s.be.Alloc(engine.Float32, m, n)
		s.gemmKey = key
	}
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for range req.Iters {
		s.be.Gemm(s.gemmC, s.gemmA, s.gemmB, req.TransA, req.TransB, 1, 0)
	}
	if err := s.be.Synchronize(); err != nil {
		return Response{Error: fmt.Sprintf("backend: %v", err)}
	}
	return timed(t0, cpu0)
}

// stored returns the storage shape of an operand whose op() is rows×cols.
func stored(rows, cols int, trans bool) []int {
	if trans {
		return []int{cols, rows}
	}
	return []int{rows, cols}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *server) freeGemm() {
	for _, t := range []*engine.Tensor{s.gemmA, s.gemmB, s.gemmC} {
		if t != nil {
			s.be.Free(t)
		}
	}
	s.gemmA, s.gemmB, s.gemmC = nil, nil, nil
}

// randomTensor returns a Float32 tensor of N(0,1) values drawn from a
// generator seeded by seed: real data, never zeros, which can run faster.
func (s *server) randomTensor(seed uint64, shape ...int) *engine.Tensor {
	t := s.be.Alloc(engine.Float32, shape...)
	rng := rand.New(rand.NewPCG(seed, 0x62656e6368))
	host := make([]float32, t.Len())
	for i := range host {
		host[i] = float32(rng.NormFloat64())
	}
	s.be.Upload(t, host)
	return t
}

// trainInit builds a random Llama and a trainer over one fixed batch.
func (s *server) trainInit(req Request) Response {
	if req.Batch <= 0 || req.Seq < 2 {
		return Response{Error: fmt.Sprintf("batch must be positive and seq at least 2, got batch %d seq %d", req.Batch, req.Seq)}
	}
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: req.Vocab, Hidden: req.Hidden, Layers: req.Layers,
		Heads: req.Heads, KVHeads: req.KVHeads, Intermediate: req.Intermediate, MaxPos: max(req.Seq, 2048)})
	if err != nil {
		return Response{Error: fmt.Sprintf("model config: %v", err)}
	}
	cfgJSON, err := cfg.Marshal()
	if err != nil {
		return Response{Error: fmt.Sprintf("model config: %v", err)}
	}
	if s.trainer != nil {
		s.trainer.Close()
		s.trainer = nil
	}
	m, err := model.New(cfg, s.be, req.Seed)
	if err != nil {
		return Response{Error: fmt.Sprintf("building the model: %v", err)}
	}
	// Random tokens with every label counted: the worst (most work) case
	// of a fine-tuning batch, and the same count the reference scores.
	rng := rand.New(rand.NewPCG(req.Seed, 0x64617461))
	ds := &data.Dataset{Name: "benchcpu random tokens", Format: "pretokenized"}
	for range req.Batch {
		ids := make([]int32, req.Seq)
		for i := range ids {
			ids[i] = int32(rng.IntN(req.Vocab))
		}
		ds.Examples = append(ds.Examples, data.Example{InputIDs: ids, Labels: ids})
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: req.Batch, SeqLen: req.Seq})
	if err != nil {
		return Response{Error: fmt.Sprintf("batch: %v", err)}
	}
	tc := train.Config{Steps: 1 << 30, GradAccum: 1, LR: req.LR, Schedule: train.Constant,
		WeightDecay: req.WeightDecay, Beta1: req.Beta1, Beta2: req.Beta2, Eps: req.Eps, MaxGradNorm: req.MaxGradNorm}
	tr, err := train.New(m, loader, tc, train.Options{})
	if err != nil {
		return Response{Error: fmt.Sprintf("trainer: %v", err)}
	}
	s.trainer = tr
	_, total := train.CountParams(m.Params())
	return Response{OK: true, Config: cfgJSON, Params: total}
}

// train times req.Steps optimizer steps of the current trainer.
func (s *server) train(req Request) Response {
	if s.trainer == nil {
		return Response{Error: "no model: send train_init first"}
	}
	if req.Steps <= 0 {
		return Response{Error: fmt.Sprintf("steps must be positive, got %d", req.Steps)}
	}
	var last train.StepMetrics
	tokens := 0
	cpu0 := cpuSeconds()
	t0 := time.Now()
	for range req.Steps {
		st, err := s.trainer.Step()
		if err != nil {
			return Response{Error: err.Error()}
		}
		tokens += st.Tokens
		last = st
	}
	r := timed(t0, cpu0)
	r.Tokens, r.Loss, r.GradNorm = tokens, last.Loss, last.GradNorm
	return r
}

// timed returns a successful response with the wall and CPU time since t0
// and cpu0.
func timed(t0 time.Time, cpu0 float64) Response {
	r := Response{OK: true, Seconds: time.Since(t0).Seconds()}
	if cpu0 > 0 {
		r.CPUSeconds = cpuSeconds() - cpu0
	}
	return r
}
