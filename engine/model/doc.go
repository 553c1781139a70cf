// Package model implements gotune's causal language models with explicit
// forward and backward passes: the LLaMA family (LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM and the families package arch
// derives from it: Qwen3, OLMo-2, Granite, Phi-3, GLM, GLM-4) and GPT-2
// (GPT2LMHeadModel), plus Hugging Face checkpoint loading and saving. All arithmetic goes through
// engine.Backend; the package never touches tensor elements itself.
//
// # Building a model
//
// Load reads a Hugging Face folder (config.json + model.safetensors or a
// sharded index), New makes a seeded random model from a config, and
// FromWeights builds one from named host arrays (the llama2.c loader uses
// it with the interleaved RoPE layout). All return a Model: an
// engine.CausalLM plus the extension points below, KV-cached inference
// (NewKVCache, Logits) and Save.
//
// Both architectures are one implementation, Transformer, assembled from
// modules registered under their Hugging Face paths
// ("model.layers.0.self_attn.q_proj", "transformer.h.1.attn.c_attn", ...):
// every projection is a Linear (Dense by default: nn.Linear's [out, in]
// weight, or GPT-2's Conv1D [in, out] kept as stored), norms are RMSNorm or
// LayerNorm, embeddings are Embedding.
//
// # Extension points for fine-tuning methods
//
//   - ReplaceLinear swaps any projection by name for another Linear
//     (LoRA, DoRA wrap the original).
//   - SetHook installs a SublayerHook on the attention or MLP output of a
//     layer, before the residual add (Houlsby, Pfeiffer, parallel adapters).
//   - SetPrompt prepends virtual-token embeddings (prompt tuning, P-Tuning).
//     Virtual positions are not scored, except that, as in PEFT (which pads
//     the labels with -100 in front), the last virtual token's logits are
//     scored against each sequence's first label when the batch carries
//     engine.Batch.FirstLabels (the trainer passes them whenever
//     ScoresFirstLabels is true, i.e. while a prompt is installed).
//   - SetPrefix adds trainable key/value prefixes to some or all layers
//     (prefix tuning, P-Tuning v2). As transformers does with PEFT's
//     past_key_values, the prefix keys are not rotated by RoPE and the real
//     tokens take positions P..P+T-1 (so GPT-2 reads wpe from P on).
//   - SetTrainable freezes or unfreezes a parameter; frozen parameters
//     have no gradient buffer.
//
// # One training step
//
// The trainer uploads a batch (input ids and shifted targets, Int32
// [B·T]) and calls ForwardBackward(batch, true, 1/counted):
//
//  1. Plan. The lowest backward "stage" with anything trainable is found
//     (-1 embeddings and virtual tokens; 2l and 2l+1 the attention and MLP
//     halves of layer l; 2L the final norm and LM head). Activation
//     buffers for this (B, T, plan) are allocated once and reused by every
//     later step: layers at or above the lowest trainable one keep their
//     own; the layers below share two scratch sets, so frozen lower layers
//     keep nothing. With SetGradCheckpoint(true), trainable layers keep
//     only their input and share one set of the other buffers; backward
//     recomputes each layer's forward (replaying RandomForward modules'
//     random streams, e.g. LoRA dropout) just before backpropagating
//     through it, with bit-identical results.
//  2. Embeddings. Embedding gathers token rows (virtual tokens are copied
//     in front with CopyBlock; GPT-2 adds learned positions).
//  3. Each layer, pre-norm. norm1 (rstd, and mean for LayerNorm, saved) →
//     q, k, v projections (GPT-2, Phi-3: one fused projection, split with
//     CopyBlock) → RoPE in place from host-built cos/sin tables (either
//     pair layout; partial rotary through a scratch copy)
//     → prefix keys/values concatenated in front (CopyBlock) → causal GQA
//     Attention (saving each row's log-sum-exp) → o_proj → optional hook →
//     residual Add → norm2 → gate and up projections (Phi-3, GLM: one
//     fused gate_up_proj, split) → SwiGLU (GPT-2: c_fc → gelu_new) → down
//     projection → optional hook → residual Add. Post-norm families
//     (OLMo-2) normalise each sub-layer's output instead of its input,
//     sandwich-norm ones (GLM-4) both.
//     Kept per layer: the input, both normalised inputs and norm
//     statistics, rotated q and k, v (and the prefixed k/v), the attention
//     output and lse, the sub-layer outputs, the residual between the
//     halves, and the MLP's pre-activations and activation.
//  4. Head. Final norm → the scored rows (all real tokens, then each
//     sequence's last virtual token when first labels are scored) →
//     lm_head Gemm → logits [B·T (+B), V].
//  5. Loss. CrossEntropy writes per-row losses and overwrites the logits
//     with gradScale·(softmax − onehot), so dlogits costs no memory. The
//     losses are downloaded and summed on the host: the step's only sync.
//  6. Backward, top down, accumulating into Param.G: lm_head (dW +=
//     dlogitsᵀ·x; tied heads accumulate into the embedding) → final norm →
//     for each layer down to the lowest trainable stage: the residual
//     gradient is copied, hooks and the MLP backpropagate (SwiGLUBackward or
//     ActivationBackward), norm2, then o_proj, AttentionBackward
//     (probabilities recomputed from lse), prefix gradients summed over
//     the batch, inverse RoPE, q/k/v backward, norm1 → EmbeddingBackward
//     scatter-adds into the embedding tables and the virtual tokens'
//     gradient is summed over the batch. Only what a trainable parameter
//     depends on is computed: the lowest trainable stage gets no input
//     gradient, frozen projections with no trainable parameter below them
//     are skipped, and nothing below the lowest stage runs.
//
// The trainer then clips the global gradient norm and applies AdamW.
//
// # Generation
//
// Logits runs T new tokens of B sequences. With a KVCache, each layer's
// rotated keys and values are appended to the cache and attention reads the
// whole history, so a new token costs one token's forward pass.
package model
