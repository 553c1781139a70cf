package cpu_test

import (
	"fmt"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// BenchmarkAttention measures forward and backward causal attention on a
// LLaMA-like layer slice (8 query heads over 2 kv heads, head dim 64);
// GFLOP/s counts the useful (unmasked) multiply-adds of QKᵀ and PV.
func BenchmarkAttention(b *testing.B) {
	be := cpu.New()
	const batch, hq, hkv, d = 1, 8, 2, 64
	for _, t := range []int{256, 1024} {
		q := be.Alloc(engine.Float32, batch, t, hq, d)
		k := be.Alloc(engine.Float32, batch, t, hkv, d)
		v := be.Alloc(engine.Float32, batch, t, hkv, d)
		out := be.Alloc(engine.Float32, batch, t, hq, d)
		lse := be.Alloc(engine.Float32, batch, hq, t)
		for _, x := range []*engine.Tensor{q, k, v} {
			fillRand(cpu.Float32s(x))
		}
		flops := 2 * 2 * float64(batch*hq*d) * float64(t) * float64(t+1) / 2
		b.Run(fmt.Sprintf("forward_T%d", t), func(b *testing.B) {
			meter := startFlops(b)
			for range b.N {
				be.Attention(out, lse, q, k, v, engine.AttentionOptions{})
			}
			meter.report(flops)
		})
		be.Attention(out, lse, q, k, v, engine.AttentionOptions{})
		dq, dk, dv := be.Alloc(engine.Float32, batch, t, hq, d), be.Alloc(engine.Float32, batch, t, hkv, d), be.Alloc(engine.Float32, batch, t, hkv, d)
		b.Run(fmt.Sprintf("backward_T%d", t), func(b *testing.B) {
			meter := startFlops(b)
			for range b.N {
				be.AttentionBackward(dq, dk, dv, out, q, k, v, out, lse, engine.AttentionOptions{})
			}
			// Backward's useful work is 2x forward's (dQ, dK, dV, dP).
			meter.report(2 * flops)
		})
	}
}
