package train

import (
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
)

// bigram is a tiny CausalLM built only from backend operations:
// logits[i] = table[ids[i]] + bias. It lets the trainer be tested without
// the real models, against the float64 reference below.
type bigram struct {
	be          engine.Backend
	V           int
	table, bias *engine.Param
	saves       []string
	// fakeLoss replaces the loss sum of the n-th ForwardBackward call
	// (1-based), to test divergence handling.
	fakeLoss map[int]float64
	calls    int
}

func newBigram(be engine.Backend, V int, table, bias []float32) *bigram {
	m := &bigram{be: be, V: V}
	m.table = &engine.Param{Name: "table", W: be.Alloc(engine.Float32, V, V), Trainable: true, Decay: true}
	m.bias = &engine.Param{Name: "bias", W: be.Alloc(engine.Float32, V), Trainable: true}
	be.Upload(m.table.W, table)
	be.Upload(m.bias.W, bias)
	return m
}

func (m *bigram) Backend() engine.Backend { return m.be }
func (m *bigram) Params() []*engine.Param { return []*engine.Param{m.table, m.bias} }
func (m *bigram) Save(dir string) error   { m.saves = append(m.saves, dir); return nil }
func (m *bigram) weights() ([]float32, []float32) {
	return m.be.Download(m.table.W), m.be.Download(m.bias.W)
}

func (m *bigram) ForwardBackward(b *engine.Batch, backward bool, gradScale float32) (float64, error) {
	n := b.B * b.T
	logits := m.be.Alloc(engine.Float32, n, m.V)
	losses := m.be.Alloc(engine.Float32, n)
	m.be.Embedding(logits, m.table.W, b.InputIDs)
	m.be.AddBias(logits, m.bias.W)
	var dlogits *engine.Tensor
	if backward {
		dlogits = logits
	}
	m.be.CrossEntropy(losses, dlogits, logits, b.Targets, gradScale, 0)
	sum := 0.0
	for _, l := range m.be.Download(losses) {
		sum += float64(l)
	}
	if backward {
		if m.table.Trainable {
			m.be.EmbeddingBackward(m.table.G, dlogits, b.InputIDs)
		}
		if m.bias.Trainable {
			m.be.SumRows(m.bias.G, dlogits)
		}
	}
	m.calls++
	if v, ok := m.fakeLoss[m.calls]; ok {
		return v, nil
	}
	return sum, nil
}

// refRun is an independent float64 implementation of the trainer's
// semantics for the bigram model: HF loss averaging over a step's
// micro-batches, torch clip_grad_norm_, torch AdamW, HF schedules.
type refRun struct {
	losses, norms, lrs []float64
	table, bias        []float64
}

func reference(V int, table0, bias0 []float32, steps [][]data.Batch, cfg Config, total int, biasTrainable bool) refRun {
	table := f64(table0)
	bias := f64(bias0)
	mT, vT := make([]float64, len(table)), make([]float64, len(table))
	mB, vB := make([]float64, len(bias)), make([]float64, len(bias))
	var r refRun
	for k, micro := range steps {
		gT := make([]float64, len(table))
		gB := make([]float64, len(bias))
		tokens := 0
		for _, b := range micro {
			tokens += b.Counted
		}
		sum := 0.0
		for _, b := range micro {
			for i := 0; i < b.B*b.T; i++ {
				y := b.Targets[i]
				if y < 0 {
					continue
				}
				row := table[int(b.InputIDs[i])*V : (int(b.InputIDs[i])+1)*V]
				mx := math.Inf(-1)
				for j := range row {
					mx = math.Max(mx, row[j]+bias[j])
				}
				z := 0.0
				for j := range row {
					z += math.Exp(row[j] + bias[j] - mx)
				}
				sum += mx + math.Log(z) - (row[y] + bias[y])
				for j := range row {
					g := math.Exp(row[j]+bias[j]-mx) / z
					if j == int(y) {
						g--
					}
					g /= float64(tokens)
					gT[int(b.InputIDs[i])*V+j] += g
					gB[j] += g
				}
			}
		}
		if !biasTrainable {
			clear(gB)
		}
		r.losses = append(r.losses, sum/float64(tokens))
		sq := 0.0
		for _, g := range append(append([]float64(nil), gT...), gB...) {
			sq += g * g
		}
		norm := math.Sqrt(sq)
		r.norms = append(r.norms, norm)
		if cfg.MaxGradNorm > 0 {
			if c := cfg.MaxGradNorm / (norm + 1e-6); c < 1 {
				for i := range gT {
					gT[i] *= c
				}
				for i := range gB {
					gB[i] *= c
				}
			}
		}
		lr := cfg.LR * cfg.Schedule.Multiplier(k, cfg.WarmupSteps, total)
		r.lrs = append(r.lrs, lr)
		adamw(table, gT, mT, vT, lr, cfg.WeightDecay, cfg, k+1)
		if biasTrainable {
			adamw(bias, gB, mB, vB, lr, 0, cfg, k+1)
		}
	}
	r.table, r.bias = table, bias
	return r
}

func adamw(p, g, m, v []float64, lr, wd float64, cfg Config, step int) {
	bc1 := 1 - math.Pow(cfg.Beta1, float64(step))
	bc2 := 1 - math.Pow(cfg.Beta2, float64(step))
	for i := range p {
		p[i] *= 1 - lr*wd
		m[i] = cfg.Beta1*m[i] + (1-cfg.Beta1)*g[i]
		v[i] = cfg.Beta2*v[i] + (1-cfg.Beta2)*g[i]*g[i]
		p[i] -= lr / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + cfg.Eps)
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// relErr is ‖a − b‖ / ‖b‖ (absolute when b is zero).
func relErr(a []float32, b []float64) float64 {
	num, den := 0.0, 0.0
	for i := range b {
		d := float64(a[i]) - b[i]
		num += d * d
		den += b[i] * b[i]
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}
