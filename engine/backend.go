package engine

// Act names an elementwise activation function.
type Act uint8

const (
	// ActIdentity is f(x) = x.
	ActIdentity Act = iota
	// ActReLU is max(x, 0).
	ActReLU
	// ActSiLU is x·sigmoid(x) (a.k.a. swish).
	ActSiLU
	// ActGELUTanh is the tanh approximation of GELU (Hugging Face "gelu_new",
	// PyTorch gelu(approximate="tanh")).
	ActGELUTanh
	// ActGELU is the exact erf GELU (PyTorch gelu()).
	ActGELU
	// ActTanh is tanh(x).
	ActTanh
	// ActSigmoid is 1/(1+exp(-x)).
	ActSigmoid
)

// RopeLayout says which elements of a head vector RoPE rotates together.
type RopeLayout uint8

const (
	// RopeHalf pairs element i with i+headDim/2 (Hugging Face rotate_half).
	RopeHalf RopeLayout = iota
	// RopeInterleaved pairs elements 2i and 2i+1 (llama2.c, Meta's original).
	RopeInterleaved
)

// AdamWParams are the hyper-parameters of one AdamW update, with
// torch.optim.AdamW semantics: decoupled weight decay p -= lr·wd·p first,
// then the bias-corrected Adam step with eps added to sqrt(v̂).
type AdamWParams struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32
	// Step is the 1-based optimizer step, used for bias correction.
	Step int
}

// Backend is the one interface every computation goes through. Model and
// method code call only these operations; the CPU backend implements them
// in pure Go and the CUDA backend with our kernels.
//
// Conventions, shared by every implementation:
//   - Tensors are row-major. "Matrix view" means [Rows(), Cols()].
//   - Operations may run asynchronously (on a GPU stream). Only Download,
//     DownloadInt32 and Synchronize wait. Host slices passed to Upload may
//     be reused as soon as Upload returns.
//   - Forward operations overwrite their outputs.
//   - Every *Backward operation ACCUMULATES (+=) into its gradient outputs,
//     so residual branches and gradient-accumulation micro-batches need no
//     extra adds. A nil gradient output means "not needed": it is skipped
//     (that is how frozen weights and the input of the lowest trainable
//     layer cost nothing).
//   - Outputs must not alias inputs unless an operation says it may.
//   - Shape errors are programming errors and panic with a message naming
//     the operation and the shapes; bad user input is rejected long before
//     it reaches a backend.
type Backend interface {
	// Name identifies the backend ("cpu", "cuda:0 NVIDIA H200", ...).
	Name() string
	// Close releases every resource the backend holds.
	Close() error

	// ---- memory ----

	// Alloc returns a new zero-filled tensor.
	Alloc(dtype DType, shape ...int) *Tensor
	// Free releases t's storage early (t must be the only view in use).
	// Backends with garbage-collected storage may treat it as a no-op.
	Free(t *Tensor)
	// Upload copies host float32 values into a Float32 or BFloat16 tensor
	// (rounding to nearest even for BFloat16). len(src) == dst.Len().
	Upload(dst *Tensor, src []float32)
	// UploadInt32 copies host int32 values into an Int32 tensor.
	UploadInt32(dst *Tensor, src []int32)
	// Download waits for pending work and returns src's values as float32.
	Download(src *Tensor) []float32
	// DownloadInt32 waits for pending work and returns an Int32 tensor's values.
	DownloadInt32(src *Tensor) []int32
	// Copy copies src into dst (same element count), converting between
	// Float32 and BFloat16 when their dtypes differ.
	Copy(dst, src *Tensor)
	// CopyBlock copies a rows×cols block between two tensors seen as flat
	// arrays: element (r, c) moves from src[srcOff + r*srcStride + c] to
	// dst[dstOff + r*dstStride + c], adding instead of overwriting when
	// accumulate is true. It concatenates, splits, and slices along any
	// axis (and, with accumulate, is its own backward). srcStride 0
	// broadcasts one source row to every destination row. Destination rows
	// must not overlap.
	CopyBlock(dst *Tensor, dstOff, dstStride int, src *Tensor, srcOff, srcStride int, rows, cols int, accumulate bool)
	// Fill sets every element of t to v.
	Fill(t *Tensor, v float32)
	// Synchronize waits for all queued work and reports the first error an
	// asynchronous operation hit since the last call.
	Synchronize() error

	// ---- linear algebra ----

	// Gemm computes c = alpha·op(a)·op(b) + beta·c on matrix views, where
	// op(a) is [M,K] (a is [M,K], or [K,M] with transA) and op(b) is [K,N]
	// (b is [K,N], or [N,K] with transB); c is [M,N]. With beta == 0, c's
	// old contents are ignored (even NaN).
	Gemm(c, a, b *Tensor, transA, transB bool, alpha, beta float32)
	// QuantGemm computes c = alpha·bf16(a)·op(bf16(W)) + beta·c, where W
	// [Rows, Cols] is the dequantized weight w (see QuantWeight), op(W)
	// is Wᵀ with transW (the forward product x·Wᵀ: a [M, Cols], c
	// [M, Rows]) and W without (the input gradient dy·W: a [M, Rows],
	// c [M, Cols]). Both operands are rounded to bfloat16, the compute
	// dtype (bitsandbytes' compute_dtype bf16), whatever a's dtype; the
	// products accumulate in float32 and c (either dtype) is written
	// once. No full-size copy of W is kept. With beta == 0, c's old
	// contents are ignored.
	QuantGemm(c, a *Tensor, w *QuantWeight, transW bool, alpha, beta float32)
	// AddBias adds bias[j] to x[r, j] for every row r (bias has Cols(x) elements).
	AddBias(x, bias *Tensor)
	// SumRows accumulates dst[j] += Σ_r x[r, j]: the gradient of AddBias.
	SumRows(dst, x *Tensor)

	// ---- elementwise ----

	// Add computes dst = a + b (dst may alias a or b).
	Add(dst, a, b *Tensor)
	// Mul computes dst = a ⊙ b (dst may alias a or b).
	Mul(dst, a, b *Tensor)
	// Axpy computes dst += alpha·x.
	Axpy(dst, x *Tensor, alpha float32)
	// Scale computes x *= alpha in place.
	Scale(x *Tensor, alpha float32)
	// Dropout computes out[i] = x[i]/(1 − p) where DropoutKeep(seed, i,
	// DropoutThreshold(p)) keeps element i (row-major index over the whole
	// tensor) and 0 elsewhere; p is in [0, 1) and out may alias x. Its
	// backward is the same call on the output's gradient.
	Dropout(out, x *Tensor, p float32, seed uint64)
	// MulCols computes dst[r, j] = x[r, j]·v[j] (v has Cols(x) elements;
	// dst may alias x).
	MulCols(dst, x, v *Tensor)
	// RowSumSquares computes dst[r] = Σ_j x[r, j]² (dst has Rows(x) elements).
	RowSumSquares(dst, x *Tensor)
	// SumSquares accumulates dst[0] += Σ x² over all elements of x
	// (dst is a one-element Float32 tensor): global gradient norms.
	SumSquares(dst, x *Tensor)

	// ---- activations ----

	// Activation computes out = act(x) (out may alias x).
	Activation(out, x *Tensor, act Act)
	// ActivationBackward accumulates dx += dout ⊙ act'(x).
	ActivationBackward(dx, dout, x *Tensor, act Act)
	// SwiGLU computes out = silu(gate) ⊙ up.
	SwiGLU(out, gate, up *Tensor)
	// SwiGLUBackward accumulates the gradients of SwiGLU into dgate and dup.
	SwiGLUBackward(dgate, dup, dout, gate, up *Tensor)
	// GeGLU computes out = gelu_tanh(gate) ⊙ up (Gemma's MLP, hidden
	// activation gelu_pytorch_tanh), in float32 and rounded once to out's
	// dtype, as SwiGLU.
	GeGLU(out, gate, up *Tensor)
	// GeGLUBackward accumulates the gradients of GeGLU into dgate and dup
	// (either may be nil).
	GeGLUBackward(dgate, dup, dout, gate, up *Tensor)

	// ---- embeddings ----

	// Embedding gathers out[i, :] = table[ids[i], :] (ids is Int32 with
	// Rows(out) elements; table is [V, D]).
	Embedding(out, table, ids *Tensor)
	// EmbeddingBackward scatter-adds dtable[ids[i], :] += dout[i, :].
	EmbeddingBackward(dtable, dout, ids *Tensor)

	// ---- normalisation ----

	// RMSNorm computes out = x / rms(x) ⊙ w row by row, rms(x) =
	// sqrt(mean(x²) + eps), and saves rstd[r] = 1/rms(x_r) for backward.
	RMSNorm(out, rstd, x, w *Tensor, eps float32)
	// RMSNormBackward accumulates dx and dw (either may be nil).
	RMSNormBackward(dx, dw, dout, x, w, rstd *Tensor)
	// LayerNorm computes out = (x-mean)·rstd ⊙ w + b row by row (b may be
	// nil), saving mean and rstd (Rows(x) elements each).
	LayerNorm(out, mean, rstd, x, w, b *Tensor, eps float32)
	// LayerNormBackward accumulates dx, dw, db (any may be nil).
	LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *Tensor)

	// ---- attention ----

	// RoPE rotates x in place. x is [B, T, H, D]; the token at sequence
	// index t has position posOffset+t, and its pair i is rotated by the
	// angle whose cosine and sine are cos[pos, i] and sin[pos, i]
	// (cos and sin are [maxPos, D/2], computed by the model so every RoPE
	// scaling variant is a host-side table). inverse rotates by the
	// negative angle: the backward pass.
	RoPE(x, cos, sin *Tensor, posOffset int, layout RopeLayout, inverse bool)
	// Attention computes causal scaled-dot-product attention with grouped
	// query heads. q and out are [B, T, Hq, D]; k and v are [B, S, Hkv, D]
	// with S >= T and Hq a multiple of Hkv (query head h reads kv head
	// h/(Hq/Hkv)). Query t may attend to keys s <= t + (S - T), so keys
	// before the queries (a KV cache, trainable prefixes) are visible to
	// every query. Scores are scaled by 1/sqrt(D). lse [B, Hq, T] receives
	// each row's log-sum-exp for the backward pass. opt selects the
	// variants (scale, soft-capping, sliding window, packed segments,
	// dropout; see AttentionOptions); its zero value is the plain case.
	//
	// Precision. Float32 q, k, v: float32 math, nothing rounded before out.
	// BFloat16 q, k, v (every head dim, every backend): lse is float32 from
	// unrounded scores, and the probabilities are rounded the way
	// FlashAttention rounds them but at points no tile schedule decides:
	// P = bf16(exp(scale·q·k − lse)), the normalised probabilities from the
	// row's final lse, and out = Σ P·v accumulated in float32 and rounded
	// once to out's dtype (two passes over the keys: statistics, then P·V).
	// With dropout, out = (Σ P·M·v)/(1 − p) with M the 0/1 keep mask
	// (bfloat16 P rounded before the mask, the 1/(1 − p) applied to the
	// float32 sum).
	Attention(out, lse, q, k, v *Tensor, opt AttentionOptions)
	// AttentionBackward accumulates dq, dk, dv (any may be nil) from dout,
	// recomputing probabilities from q, k and lse. out is the forward output
	// as stored: Δ = rowsum(dout ⊙ out) in float32. With BFloat16 q, k, v,
	// P recomputed from lse is rounded to bfloat16 for dv += Pᵀ·dout, and
	// dS = P ⊙ (dout·vᵀ − Δ), computed from the unrounded P, is rounded to
	// bfloat16 for dq += scale·dS·k and dk += scale·dSᵀ·q. With dropout,
	// dv += (P·M)ᵀ·dout/(1 − p) and dP is taken through the mask
	// (dP·M/(1 − p)); with soft-capping dS is multiplied by the cap's
	// derivative 1 − (capped/SoftCap)² before any rounding.
	AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *Tensor, opt AttentionOptions)

	// ---- loss and optimizer ----

	// CrossEntropy computes per-row softmax cross-entropy losses[i] =
	// logsumexp(logits[i]) - logits[i, labels[i]], with losses[i] = 0 where
	// labels[i] < 0 (ignored). If dlogits is non-nil it is OVERWRITTEN with
	// gradScale·(softmax(logits[i]) - onehot(labels[i])), zero on ignored
	// rows; dlogits may alias logits. logits is [N, V]; labels Int32 [N];
	// losses Float32 [N].
	//
	// softCap > 0 says the logits y are soft-capped, y = softCap·tanh(x/softCap)
	// (Gemma's final_logit_softcapping, applied by the caller), and dlogits
	// is then the gradient with respect to the uncapped x: each element is
	// multiplied by 1 − (y/softCap)². Fusing that factor here is what lets
	// dlogits overwrite the capped logits it needs. softCap 0: no cap.
	CrossEntropy(losses, dlogits, logits, labels *Tensor, gradScale, softCap float32)
	// AdamW updates param in place from grad with moment buffers m and v.
	AdamW(param, grad, m, v *Tensor, h AdamWParams)
}
