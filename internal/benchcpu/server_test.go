package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
)

// session feeds lines to a fresh server and returns its answers.
func session(t *testing.T, s *server, lines ...string) []Response {
	t.Helper()
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	if err := s.serve(bufio.NewReader(strings.NewReader(strings.Join(lines, "\n"))), w); err != nil {
		t.Fatalf("serve: %v", err)
	}
	var resps []Response
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r Response
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decoding answer %d: %v", len(resps)+1, err)
		}
		resps = append(resps, r)
	}
	return resps
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name    string
		req     string
		wantErr string // substring of the error; "" means success
	}{
		{"info", `{"cmd":"info"}`, ""},
		{"gemm NN", `{"cmd":"gemm","m":7,"n":5,"k":3,"iters":2}`, ""},
		{"gemm TN", `{"cmd":"gemm","m":7,"n":5,"k":3,"ta":true,"iters":1}`, ""},
		{"gemm NT", `{"cmd":"gemm","m":7,"n":5,"k":3,"tb":true,"iters":1}`, ""},
		{"gemm TT", `{"cmd":"gemm","m":7,"n":5,"k":3,"ta":true,"tb":true,"iters":1}`, ""},
		{"gemm zero dim", `{"cmd":"gemm","m":0,"n":5,"k":3,"iters":1}`, "must be positive"},
		{"gemm negative dim", `{"cmd":"gemm","m":4,"n":-5,"k":3,"iters":1}`, "must be positive"},
		{"gemm huge", `{"cmd":"gemm","m":100000,"n":100000,"k":3,"iters":1}`, "over"},
		{"gemm no iters", `{"cmd":"gemm","m":4,"n":5,"k":3}`, "iters must be positive"},
		{"train before init", `{"cmd":"train","steps":1}`, "send train_init first"},
		{"bad model", `{"cmd":"train_init","vocab":64,"hidden":30,"layers":1,"heads":4,"intermediate":40,"batch":2,"seq":8,"lr":1e-3,"beta1":0.9,"beta2":0.999,"eps":1e-8}`, "model config"},
		{"bad batch", `{"cmd":"train_init","vocab":64,"hidden":32,"layers":1,"heads":4,"intermediate":40,"batch":0,"seq":8}`, "batch must be positive"},
		{"bad optimizer", `{"cmd":"train_init","vocab":64,"hidden":32,"layers":1,"heads":4,"intermediate":40,"batch":2,"seq":8,"lr":1e-3,"beta1":0.9,"beta2":0.999}`, "trainer"},
		{"unknown", `{"cmd":"fly"}`, "unknown command"},
		{"not JSON", `gemm 1 2 3`, "not a JSON request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resps := session(t, newServer(), tc.req)
			if len(resps) != 1 {
				t.Fatalf("got %d answers, want 1", len(resps))
			}
			r := resps[0]
			if tc.wantErr == "" {
				if !r.OK || r.Error != "" {
					t.Fatalf("got error %q, want success", r.Error)
				}
				return
			}
			if r.OK || !strings.Contains(r.Error, tc.wantErr) {
				t.Fatalf("got ok=%v error %q, want an error containing %q", r.OK, r.Error, tc.wantErr)
			}
			if !strings.Contains(r.Error, "request line 1") {
				t.Errorf("error %q does not name the request line", r.Error)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	r := session(t, newServer(), `{"cmd":"info"}`)[0]
	if r.Backend != "cpu" || r.GoMaxProcs != runtime.GOMAXPROCS(0) || r.GoVersion != runtime.Version() {
		t.Fatalf("info = %+v", r)
	}
}

// TestSessionContinues checks that a bad request is answered and the
// session goes on, that "quit" ends it, and that a last line without a
// newline is still served.
func TestSessionContinues(t *testing.T) {
	resps := session(t, newServer(), `nonsense`, `{"cmd":"gemm","m":3,"n":3,"k":3,"iters":1}`, `{"cmd":"info"}`)
	if len(resps) != 3 || resps[0].OK || !resps[1].OK || !resps[2].OK {
		t.Fatalf("answers = %+v", resps)
	}
	if resps[1].Seconds <= 0 {
		t.Errorf("gemm took %v s, want a positive time", resps[1].Seconds)
	}
	resps = session(t, newServer(), `{"cmd":"info"}`, `{"cmd":"quit"}`, `{"cmd":"info"}`)
	if len(resps) != 1 {
		t.Fatalf("got %d answers around quit, want 1", len(resps))
	}
}

// TestGemmOperandsReused checks that repeated requests at one shape time the
// same operands and that a new shape gets new ones.
func TestGemmOperandsReused(t *testing.T) {
	s := newServer()
	req := Request{Cmd: "gemm", M: 4, N: 6, K: 5, TransA: true, Iters: 1}
	if r := s.handle(req); !r.OK {
		t.Fatal(r.Error)
	}
	if got := s.gemmA.Shape(); got[0] != 5 || got[1] != 4 {
		t.Fatalf("transposed a stored as %v, want [5 4]", got)
	}
	a := s.gemmA
	if r := s.handle(req); !r.OK || s.gemmA != a {
		t.Fatalf("same shape: ok=%v, operands replaced=%v", r.OK, s.gemmA != a)
	}
	req.TransA = false
	if r := s.handle(req); !r.OK || s.gemmA == a {
		t.Fatalf("new transposition: ok=%v, operands replaced=%v", r.OK, s.gemmA != a)
	}
	if got := s.gemmA.Shape(); got[0] != 4 || got[1] != 5 {
		t.Fatalf("a stored as %v, want [4 5]", got)
	}
}

func TestTrain(t *testing.T) {
	const V, D, L, I, B, T = 64, 32, 2, 40, 2, 8
	init := `{"cmd":"train_init","vocab":64,"hidden":32,"layers":2,"heads":4,"intermediate":40,"batch":2,"seq":8,"seed":3,` +
		`"lr":1e-3,"beta1":0.9,"beta2":0.999,"eps":1e-8,"weight_decay":0.01,"max_grad_norm":1}`
	resps := session(t, newServer(), init, `{"cmd":"train","steps":2}`, `{"cmd":"train","steps":1}`)
	if len(resps) != 3 {
		t.Fatalf("got %d answers, want 3", len(resps))
	}
	for i, r := range resps {
		if !r.OK {
			t.Fatalf("answer %d: %s", i+1, r.Error)
		}
	}
	// Untied Llama: embeddings and lm_head, per layer q,k,v,o (D×D), three
	// MLP matrices and two norms, and the final norm.
	if want := int64(2*V*D + L*(4*D*D+3*D*I+2*D) + D); resps[0].Params != want {
		t.Errorf("params = %d, want %d", resps[0].Params, want)
	}
	var cfg map[string]any
	if err := json.Unmarshal(resps[0].Config, &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg["hidden_size"] != float64(D) || cfg["vocab_size"] != float64(V) || cfg["num_hidden_layers"] != float64(L) {
		t.Errorf("config = %v", cfg)
	}
	// Every label counts except the last position of each row.
	if got, want := resps[1].Tokens, 2*B*(T-1); got != want {
		t.Errorf("tokens over 2 steps = %d, want %d", got, want)
	}
	// A freshly initialised model (weights of std 0.02) predicts nearly
	// uniformly, so its loss is close to ln V.
	if l := resps[1].Loss; math.Abs(l-math.Log(V)) > 0.5 {
		t.Errorf("loss = %v, want about ln %d = %.3f", l, V, math.Log(V))
	}
	if g := resps[2].GradNorm; !(g > 0) || math.IsInf(g, 0) {
		t.Errorf("gradient norm = %v, want positive and finite", g)
	}
	if resps[2].Seconds <= 0 {
		t.Errorf("train took %v s, want a positive time", resps[2].Seconds)
	}
}
