package backendtest

import "fmt"

// gemmShapes are (m, n, k) triples: degenerate, ragged, and big enough to
// cross any reasonable blocking (k > 256, n > 2048 once).
func gemmShapes(h *harness) [][3]int {
	s := [][3]int{{1, 1, 1}, {1, 17, 3}, {3, 1, 17}, {17, 33, 1}, {5, 7, 65}, {33, 17, 65},
		{65, 33, 17}, {64, 64, 64}, {100, 67, 129}}
	if !h.short() {
		s = append(s, [3]int{130, 97, 300}, [3]int{211, 150, 40}, [3]int{19, 2100, 70})
	}
	return s
}

// gemmStored returns the stored [rows, cols] of an operand of logical
// shape [r, c], transposed or not.
func gemmStored(r, c int, trans bool) []int {
	if trans {
		return []int{c, r}
	}
	return []int{r, c}
}

// checkGemm covers every transpose combination with alpha/beta cases:
// beta = 0 over a NaN-filled C (old contents must be ignored), beta = 1
// (accumulate) and general scalars.
func checkGemm(h *harness) {
	type ab struct{ alpha, beta float64 }
	scalars := []ab{{1, 0}, {1, 1}, {-0.75, 0.5}, {0, 2}}
	for _, s := range gemmShapes(h) {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tr[0], tr[1]
			a, av := h.randn("a", 1, gemmStored(m, k, ta)...)
			b, bv := h.randn("b", 1, gemmStored(k, n, tb)...)
			prod := refGemm(m, n, k, av, ta, bv, tb)
			for _, sc := range scalars {
				var cv []float64
				c := h.nan("c", m, n)
				if sc.beta != 0 {
					c, cv = h.randn("c", 1, m, n)
				}
				h.b.Gemm(c, a, b, ta, tb, float32(sc.alpha), float32(sc.beta))
				want := make([]float64, m*n)
				for i := range want {
					want[i] = sc.alpha * prod[i]
					if sc.beta != 0 {
						want[i] += sc.beta * cv[i]
					}
				}
				h.expect(fmt.Sprintf("Gemm m=%d n=%d k=%d transA=%v transB=%v alpha=%g beta=%g", m, n, k, ta, tb, sc.alpha, sc.beta), c, want, h.o.tol())
			}
		}
	}
	// Matrix views of higher-rank tensors: a [2, 3, 4] is a 6x4 matrix.
	a, av := h.randn("a3", 1, 2, 3, 4)
	b, bv := h.randn("b3", 1, 5, 4)
	c := h.nan("c3", 2, 3, 5)
	h.b.Gemm(c, a, b, false, true, 1, 0)
	h.expect("Gemm on [2,3,4]·[5,4]ᵀ", c, refGemm(6, 5, 4, av, false, bv, true), h.o.tol())
	// Large-magnitude inputs must not overflow intermediate sums.
	big, bigv := h.randn("big", 1e18, 9, 33)
	one, onev := h.randn("one", 1, 33, 9)
	c = h.nan("cbig", 9, 9)
	h.b.Gemm(c, big, one, false, false, 1, 0)
	h.expect("Gemm with entries near 1e18", c, refGemm(9, 9, 33, bigv, false, onev, false), h.o.tol())
}

// checkGemmBackward checks the gradient of C = op(A)·op(B) computed the way
// models compute it — with two accumulating Gemm calls — against the
// reference gradient, for all four transpose combinations.
func checkGemmBackward(h *harness) {
	for _, s := range [][3]int{{3, 17, 5}, {33, 17, 65}, {65, 40, 33}} {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tr[0], tr[1]
			a, av := h.randn("a", 1, gemmStored(m, k, ta)...)
			b, bv := h.randn("b", 1, gemmStored(k, n, tb)...)
			dc, dcv := h.randn("dc", 1, m, n)
			da, da0 := h.randn("da", 1, gemmStored(m, k, ta)...)
			db, db0 := h.randn("db", 1, gemmStored(k, n, tb)...)
			// dA = dC·op(B)ᵀ, stored transposed when transA.
			if ta {
				h.b.Gemm(da, b, dc, tb, true, 1, 1)
			} else {
				h.b.Gemm(da, dc, b, false, !tb, 1, 1)
			}
			// dB = op(A)ᵀ·dC, stored transposed when transB.
			if tb {
				h.b.Gemm(db, dc, a, true, ta, 1, 1)
			} else {
				h.b.Gemm(db, a, dc, !ta, false, 1, 1)
			}
			rda, rdb := refGemmBackward(m, n, k, av, ta, bv, tb, dcv)
			what := fmt.Sprintf("Gemm backward m=%d n=%d k=%d transA=%v transB=%v", m, n, k, ta, tb)
			h.expect(what+" dA", da, addTo(da0, rda), h.o.tol())
			h.expect(what+" dB", db, addTo(db0, rdb), h.o.tol())
		}
	}
}
