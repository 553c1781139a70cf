package backendtest

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// attnCases covers single tokens, GQA groupings, S > T (keys before the
// queries) and head dimensions around common vector widths.
func attnCases(h *harness) []attnCase {
	c := []attnCase{
		{1, 1, 1, 1, 1, 1},
		{1, 3, 3, 2, 1, 4},
		{2, 5, 5, 4, 2, 8},
		{1, 3, 7, 3, 1, 5},    // S > T, MQA
		{2, 17, 33, 6, 2, 16}, // S > T, GQA
		{1, 1, 9, 2, 2, 17},   // one query over a cache
	}
	if !h.short() {
		c = append(c, attnCase{2, 33, 33, 3, 3, 64}, attnCase{1, 65, 65, 8, 1, 32})
	}
	return c
}

// checkAttention covers Attention (out and lse NaN-filled) and
// AttentionBackward with accumulating and nil gradient outputs. Backward
// is fed the reference forward results so a forward error cannot hide
// or masquerade as a backward one.
func checkAttention(h *harness) {
	for _, c := range attnCases(h) {
		what := fmt.Sprintf("Attention B=%d T=%d S=%d Hq=%d Hkv=%d D=%d", c.B, c.T, c.S, c.Hq, c.Hkv, c.D)
		q, qv := h.randn("q", 1, c.B, c.T, c.Hq, c.D)
		k, kv := h.randn("k", 1, c.B, c.S, c.Hkv, c.D)
		v, vv := h.randn("v", 1, c.B, c.S, c.Hkv, c.D)
		out, lse := h.nan("out", c.B, c.T, c.Hq, c.D), h.nan("lse", c.B, c.Hq, c.T)
		h.b.Attention(out, lse, q, k, v)
		ro, rl := refAttention(c, qv, kv, vv)
		h.expect(what+" out", out, ro, h.o.tol())
		h.expect(what+" lse", lse, rl, h.o.tol())

		dout, dv := h.randn("dout", 1, c.B, c.T, c.Hq, c.D)
		so, sl := h.tensor("out (reference)", ro, c.B, c.T, c.Hq, c.D), h.tensor("lse (reference)", rl, c.B, c.Hq, c.T)
		rdq, rdk, rdv := refAttentionBackward(c, qv, kv, vv, dv)
		for _, g := range [][3]bool{{true, true, true}, {true, false, false}, {false, true, false}, {false, false, true}} {
			var dq, dk, dvt *engine.Tensor
			var dq0, dk0, dv0 []float64
			if g[0] {
				dq, dq0 = h.randn("dq", 1, c.B, c.T, c.Hq, c.D)
			}
			if g[1] {
				dk, dk0 = h.randn("dk", 1, c.B, c.S, c.Hkv, c.D)
			}
			if g[2] {
				dvt, dv0 = h.randn("dv", 1, c.B, c.S, c.Hkv, c.D)
			}
			h.b.AttentionBackward(dq, dk, dvt, dout, q, k, v, so, sl)
			bw := fmt.Sprintf("%s backward outputs %v", what, g)
			if dq != nil {
				h.expect(bw+" dq", dq, addTo(dq0, rdq), h.o.tol())
			}
			if dk != nil {
				h.expect(bw+" dk", dk, addTo(dk0, rdk), h.o.tol())
			}
			if dvt != nil {
				h.expect(bw+" dv", dvt, addTo(dv0, rdv), h.o.tol())
			}
		}
		h.b.AttentionBackward(nil, nil, nil, dout, q, k, v, so, sl)
	}
}
