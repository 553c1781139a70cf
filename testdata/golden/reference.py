"""Plain-PyTorch reference implementations of the models gotune trains.

transformers is not installable on the machines this project runs on, so
these functions restate, operation for operation, what transformers'
LlamaForCausalLM / Qwen2ForCausalLM / GPT2LMHeadModel compute (eager
attention), with sliding windows where the config asks for them, and in
training mode with the config's dropouts drawn from gotune's masks (a
Dropout object; without one, evaluation mode). Parameters are a dict keyed by the
Hugging Face state-dict names, so gradients and optimizer state line up with
the names gotune uses.

Every function is dtype-agnostic: the generators cast the float32 weights to
float64 and compute there, so the golden values are the exact result of the
float32 weights, rounded once when stored.

Fine-tuning methods (LoRA, adapters, prompt and prefix tuning) plug in
through a Hooks object, whose defaults are the plain model.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


class Hooks:
    """Extension points through which a fine-tuning method changes the model.

    The defaults compute the plain model. A method subclasses Hooks and
    overrides what it needs; `path` arguments are Hugging Face module paths
    ("model.layers.0.self_attn.q_proj", "transformer.h.1.attn.c_attn",
    "lm_head"), the same paths PEFT prefixes with "base_model.model.".
    """

    def linear(self, path, x, weight, bias):
        """nn.Linear: y = x W^T + b, weight [out, in]."""
        y = x @ weight.t()
        if bias is not None:
            y = y + bias
        return y

    def conv1d(self, path, x, weight, bias):
        """GPT-2's Conv1D: y = x W + b, weight [in, out]."""
        return x @ weight + bias

    def input_embeds(self, embeds):
        """Token embeddings [B, T, D] -> the sequence the layers see.

        Prompt tuning prepends virtual tokens here (and must then also
        override extend_labels).
        """
        return embeds

    def extend_labels(self, labels):
        """Labels [B, T] aligned with the sequence input_embeds returns."""
        return labels

    def past_length(self):
        """Number of cached (prefix) positions before the first input token.

        Positions of the input tokens start here (as in transformers with
        past_key_values), and every input token may attend to all of them.
        """
        return 0

    def prefix_kv(self, layer, batch):
        """Key/value prefix of a layer: None, or (k, v) each [B, Hkv, P, D].

        They are used as given (no RoPE is applied to them), exactly as
        transformers treats past_key_values.
        """
        return None

    def own_kv(self, layer, k, v):
        """Observes a layer's own keys and values [B, Hkv, T, D] (RoPE applied).

        Called before any prefix is prepended; the return value is ignored.
        These are what a KV cache would hold, which lets a check feed them
        back as a prefix.
        """

    def after_attn(self, layer, sub_in, sub_out, residual):
        """Output of the attention sub-layer before its residual add.

        sub_in is the normalised input of the sub-layer, residual the
        hidden state the output is added to. Bottleneck adapters hook here.
        """
        return sub_out

    def after_mlp(self, layer, sub_in, sub_out, residual):
        """Output of the MLP sub-layer before its residual add (see after_attn)."""
        return sub_out


PLAIN = Hooks()


# ---------------------------------------------------------------- building blocks


def rms_norm(x, weight, eps):
    """LlamaRMSNorm / Qwen2RMSNorm: x * rsqrt(mean(x^2) + eps) * weight."""
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def layer_norm(x, weight, bias, eps):
    """nn.LayerNorm over the last dimension (biased variance)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def gelu_new(x):
    """transformers' gelu_new: the tanh approximation of GELU."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def rope_tables(head_dim, theta, positions, dtype, linear_factor=1.0):
    """cos, sin [T, head_dim] for rotate_half RoPE, as LlamaRotaryEmbedding.

    inv_freq = 1 / theta^(arange(0, d, 2) / d); emb = cat(freqs, freqs).
    transformers evaluates these in float32; here they are evaluated in the
    compute dtype (float64), the exact values. linear_factor divides the
    frequencies (rope_scaling {"rope_type": "linear"}).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)) / linear_factor
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x, cos, sin):
    """x [B, H, T, D] rotated by position: x*cos + rotate_half(x)*sin."""
    return x * cos[None, None] + rotate_half(x) * sin[None, None]


def rotate_half_interleaved(x):
    """GLM's rotate_half: pairs (x[2i], x[2i+1]) -> (-x[2i+1], x[2i])."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def rotary_tables(cfg, head_dim, positions, dtype):
    """cos, sin [T, rotary_dim] and the pairing of a family's RoPE.

    rotary_dim = int(head_dim * partial_rotary_factor): only the first
    rotary_dim elements of a head rotate (Phi-3, GLM). Phi-3's longrope
    (rope_scaling type longrope) divides the frequencies by short_factor,
    or by long_factor when the pass's largest position id + 1 exceeds
    original_max_position_embeddings, and multiplies cos and sin by the
    attention factor (attention_factor, or sqrt(1 + ln(factor) /
    ln(original)) with factor = max_position_embeddings / original), as
    transformers' _compute_longrope_parameters and its dynamic update do.
    GLM (model_type glm, glm4) pairs (2i, 2i+1): cos[..., :dim/2]
    repeat_interleave(2), as its apply_rotary_pos_emb does.
    """
    dim = int(head_dim * cfg.get("partial_rotary_factor", 1.0))
    theta = cfg.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    scale = 1.0
    rs = cfg.get("rope_scaling")
    if rs is not None and rs.get("type", rs.get("rope_type")) == "longrope":
        orig = cfg["original_max_position_embeddings"]
        factor = cfg["max_position_embeddings"] / orig
        scale = rs.get("attention_factor")
        if scale is None:
            scale = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1.0 else 1.0
        seq_len = int(positions.max()) + 1
        ext = torch.tensor(rs["long_factor"] if seq_len > orig else rs["short_factor"], dtype=torch.float64)
        inv_freq = inv_freq / ext
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos() * scale, emb.sin() * scale
    interleaved = cfg.get("model_type") in ("glm", "glm4")
    if interleaved:
        cos = cos[..., : dim // 2].repeat_interleave(2, dim=-1)
        sin = sin[..., : dim // 2].repeat_interleave(2, dim=-1)
    return cos.to(dtype), sin.to(dtype), interleaved


def apply_rotary(x, cos, sin, interleaved):
    """x [B, H, T, D]: its first cos.shape[-1] elements rotated, the rest passed."""
    dim = cos.shape[-1]
    rot, rest = x[..., :dim], x[..., dim:]
    turned = rotate_half_interleaved(rot) if interleaved else rotate_half(rot)
    return torch.cat((rot * cos[None, None] + turned * sin[None, None], rest), dim=-1)


def repeat_kv(x, n_rep):
    """[B, Hkv, S, D] -> [B, Hkv*n_rep, S, D]: query head h reads kv head h // n_rep."""
    if n_rep == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None].expand(b, h, n_rep, s, d).reshape(b, h * n_rep, s, d)


def causal_attention(q, k, v, scale=None, window=None, dropout=None, softcap=None):
    """Eager causal attention. q [B, H, T, D], k/v [B, H, S, D] with S >= T.

    Query t may see keys s <= t + (S - T): the S - T leading keys (a prefix
    or cache) are visible to every query. Scores are scaled by 1/sqrt(D),
    or by scale when given (Granite's attention_multiplier, Gemma's
    query_pre_attn_scalar^-0.5), then soft-capped, softcap*tanh(s/softcap)
    (Gemma 2's attn_logit_softcapping). With a sliding window, query t sees
    only the keys s > t + (S - T) - window (transformers' sliding-window
    mask, kv_idx > q_idx - sliding_window; a cache's keys count as earlier
    positions). dropout, a (p, seed) pair, drops attention probabilities
    after the softmax with gotune's mask (dropout_keep over the row-major
    index of the [B, H, T, S] probabilities) and scales the kept ones by
    1/(1 - p), as nn.functional.dropout does with its own random mask.
    """
    t, s = q.shape[2], k.shape[2]
    if scale is None:
        scores = (q @ k.transpose(2, 3)) / math.sqrt(q.shape[-1])
    else:
        scores = (q @ k.transpose(2, 3)) * scale
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    qi = torch.arange(t)[:, None] + (s - t)
    kj = torch.arange(s)[None, :]
    mask = kj > qi
    if window is not None:
        mask = mask | (kj <= qi - window)
    scores = scores.masked_fill(mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if dropout is not None:
        probs = apply_dropout(probs, *dropout)
    return probs @ v


def rope_attention(layer, proj, rope, hooks, n_rep, **attention):
    """A layer's attention from its projections proj (q, k, v [B, H, T, D]):
    RoPE on q and k (rope = (cos, sin, interleaved) as rotary_tables
    returns), the hooks' view of the keys and values and their prefix, the
    GQA repeat, causal_attention (with the given scale, window, dropout,
    softcap) -> [B, T, H*D]."""
    cos, sin, interleaved = rope
    q = apply_rotary(proj["q"], cos, sin, interleaved)
    k = apply_rotary(proj["k"], cos, sin, interleaved)
    v = proj["v"]
    hooks.own_kv(layer, k, v)
    prefix = hooks.prefix_kv(layer, q.shape[0])
    if prefix is not None:
        k = torch.cat((prefix[0], k), dim=2)
        v = torch.cat((prefix[1], v), dim=2)
    a = causal_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), **attention)
    b, h, t, d = a.shape
    return a.transpose(1, 2).reshape(b, t, h * d)


# ---------------------------------------------------------------- dropout masks
#
# gotune draws dropout masks from a pure function (engine.DropoutKeep), so
# every backend and this reference drop the same elements: element i of a
# mask with seed s is kept when the top 24 bits of SplitMix64(s ^ i·φ) are
# at least round(p·2^24), φ = 0x9E3779B97F4A7C15. Each mask's seed is a
# SplitMix64 chain over the run's seed, the optimizer step, the
# micro-batch, the data-parallel rank, the layer and the site
# (engine.DropoutMaskSeed).

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
DROPOUT_BITS = 24

# engine.DropoutSite values.
SITE_EMBEDDING, SITE_ATTENTION, SITE_ATTN_OUTPUT, SITE_MLP_OUTPUT = 1, 2, 3, 4


def splitmix64(x):
    """SplitMix64's finaliser on a numpy uint64 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + GOLDEN_GAMMA
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def dropout_threshold(p):
    """engine.DropoutThreshold: round(p·2^24) of the float32 probability."""
    return int(round(float(np.float32(p)) * (1 << DROPOUT_BITS)))


def dropout_keep(seed, n, p):
    """Kept flags of elements 0..n-1 of the mask with this seed (bool array)."""
    counters = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64(seed) ^ (counters * GOLDEN_GAMMA))
    return (h >> np.uint64(64 - DROPOUT_BITS)) >= np.uint64(dropout_threshold(p))


def apply_dropout(x, p, seed):
    """x with gotune's mask applied over its row-major elements, kept ones / (1 - p)."""
    keep = torch.from_numpy(dropout_keep(seed, x.numel(), p).reshape(tuple(x.shape)))
    return torch.where(keep, x / (1.0 - float(np.float32(p))), torch.zeros((), dtype=x.dtype))


def mask_seed(seed, step, micro, rank, layer, site):
    """engine.DropoutMaskSeed: the seed of one mask of one training pass."""
    h = np.uint64(seed)
    for v in (step, micro, rank, layer, site):
        h = splitmix64(h ^ np.uint64(v))
    return int(h)


class Dropout:
    """One training pass's dropout: the run's seed and the pass (optimizer
    step from 1, micro-batch from 0, rank 0). Passing none to forward means
    evaluation mode (no dropout)."""

    def __init__(self, seed, step, micro=0, rank=0):
        self.seed, self.step, self.micro, self.rank = seed, step, micro, rank

    def apply(self, x, p, layer, site):
        """x after dropout p at site of layer (x itself when p is 0)."""
        if not p:
            return x
        return apply_dropout(x, p, mask_seed(self.seed, self.step, self.micro, self.rank, layer, site))

    def attention(self, p, layer):
        """causal_attention's dropout argument for layer (None when p is 0)."""
        if not p:
            return None
        return p, mask_seed(self.seed, self.step, self.micro, self.rank, layer, SITE_ATTENTION)


def layer_window(cfg, layer):
    """The sliding window of a layer, or None, as transformers decides it.

    MistralConfig: sliding_window (default 4096; null for none) on every
    layer; Phi3Config: sliding_window (default none) on every layer.
    Qwen2Config/Qwen3Config: sliding_window only when
    use_sliding_window, on the layers layer_types marks
    "sliding_attention", or without layer_types those from
    max_window_layers on. Gemma2Config/Gemma3TextConfig: sliding_window on
    the sliding layers of gemma_layer_types. Other families have none.
    """
    mt = cfg.get("model_type")
    if mt == "mistral":
        return cfg.get("sliding_window", 4096)
    if mt == "phi3":
        return cfg.get("sliding_window")
    if mt in ("gemma2", "gemma3_text"):
        sliding = gemma_layer_types(cfg)[layer] == "sliding_attention"
        return cfg.get("sliding_window", 4096) if sliding else None
    if mt in ("qwen2", "qwen3") and cfg.get("use_sliding_window"):
        types = cfg.get("layer_types")
        if types is not None:
            sliding = types[layer] == "sliding_attention"
        else:
            sliding = layer >= cfg.get("max_window_layers", 28)
        return cfg.get("sliding_window", 4096) if sliding else None
    return None


# ---------------------------------------------------------------- models


def llama_forward(p, cfg, input_ids, hooks=PLAIN, drop=None):
    """Logits [B, T', V] of LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM / Qwen3ForCausalLM.

    p maps Hugging Face names to tensors; q/k/v biases are used when present
    (Qwen2), and so are the per-head q/k RMSNorms of Qwen3 (self_attn.q_norm,
    self_attn.k_norm, weights [head_dim], applied before RoPE). lm_head.weight absent means tied to model.embed_tokens.weight.
    Olmo2ForCausalLM (model_type "olmo2"): no pre-norms; post_attention_layernorm
    and post_feedforward_layernorm normalise each sub-layer's output before the
    residual add, and q_norm/k_norm normalise the whole q/k projection.
    GraniteForCausalLM: the input embeddings (virtual tokens included) times
    embedding_multiplier, each sub-layer output times residual_multiplier,
    attention scores times attention_multiplier, logits / logits_scaling.
    Phi3ForCausalLM: q, k, v from one self_attn.qkv_proj (no biases), gate and
    up from one mlp.gate_up_proj (chunked), RoPE on the first
    partial_rotary_factor of each head, longrope scaling (see rotary_tables).
    GlmForCausalLM: LLaMA's layer with q/k/v biases, the fused gate_up_proj
    and RoPE on interleaved pairs of the first partial_rotary_factor of each
    head; Glm4ForCausalLM adds post_self_attn_layernorm and
    post_mlp_layernorm on the sub-layer outputs before the residual add.
    T' = T plus whatever hooks.input_embeds prepends. Sliding windows per
    layer_window; with drop (training mode), attention_dropout on the
    attention probabilities and, for Phi-3 (Phi3DecoderLayer's
    resid_attn_dropout and resid_mlp_dropout), resid_pdrop on the outputs of
    o_proj and down_proj before the residual add (Phi3Model has no
    embedding dropout: embd_pdrop is unused).
    """
    post = cfg.get("model_type") == "olmo2"
    sandwich = cfg.get("model_type") == "glm4"
    granite = cfg.get("model_type") == "granite"
    resid = cfg.get("resid_pdrop", 0.0) if drop and cfg.get("model_type") == "phi3" else 0.0
    res_mult = cfg.get("residual_multiplier", 1.0)
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    head_dim = cfg.get("head_dim") or hidden // n_heads
    eps = cfg["rms_norm_eps"]
    emb = p["model.embed_tokens.weight"]

    h = hooks.input_embeds(emb[input_ids])
    if granite:
        h = h * cfg["embedding_multiplier"]
    b, t, _ = h.shape
    past = hooks.past_length()
    cos, sin, interleaved = rotary_tables(cfg, head_dim, torch.arange(past, past + t), h.dtype)

    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        x = h if post else rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        proj = {}
        fused = pre + "self_attn.qkv_proj"
        if fused + ".weight" in p:
            # Phi3Attention: one qkv_proj whose outputs are q | k | v
            qkv = hooks.linear(fused, x, p[fused + ".weight"], None)
            split = qkv.split((n_heads * head_dim, n_kv * head_dim, n_kv * head_dim), dim=-1)
        for j, (name, heads) in enumerate((("q", n_heads), ("k", n_kv), ("v", n_kv))):
            if fused + ".weight" in p:
                proj[name] = split[j].reshape(b, t, heads, head_dim).transpose(1, 2)
                continue
            path = pre + "self_attn.%s_proj" % name
            y = hooks.linear(path, x, p[path + ".weight"], p.get(path + ".bias"))
            norm = pre + "self_attn.%s_norm.weight" % name
            if post and norm in p:
                # Olmo2Attention: q_norm/k_norm over the whole projection, before the head split
                y = rms_norm(y, p[norm], eps)
            y = y.view(b, t, heads, head_dim)
            if not post and norm in p:
                # Qwen3Attention: q_norm/k_norm, RMSNorm over each head (head_dim), before RoPE
                y = rms_norm(y, p[norm], eps)
            proj[name] = y.transpose(1, 2)
        a = rope_attention(i, proj, (cos, sin, interleaved), hooks, n_heads // n_kv,
                           scale=cfg["attention_multiplier"] if granite else None, window=layer_window(cfg, i),
                           dropout=drop and drop.attention(cfg.get("attention_dropout", 0.0), i))
        path = pre + "self_attn.o_proj"
        a = hooks.linear(path, a, p[path + ".weight"], p.get(path + ".bias"))
        if resid:
            a = drop.apply(a, resid, i, SITE_ATTN_OUTPUT)
        a = hooks.after_attn(i, x, a, h)
        if post:
            a = rms_norm(a, p[pre + "post_attention_layernorm.weight"], eps)
        if sandwich:
            a = rms_norm(a, p[pre + "post_self_attn_layernorm.weight"], eps)
        if granite:
            a = a * res_mult
        h = h + a

        x = h if post else rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        mlp = pre + "mlp."
        if mlp + "gate_up_proj.weight" in p:
            # Phi3MLP / GlmMLP: gate_up_proj's outputs chunked into gate | up
            gate_up = hooks.linear(mlp + "gate_up_proj", x, p[mlp + "gate_up_proj.weight"], None)
            gate, up = gate_up.chunk(2, dim=-1)
        else:
            gate = hooks.linear(mlp + "gate_proj", x, p[mlp + "gate_proj.weight"], p.get(mlp + "gate_proj.bias"))
            up = hooks.linear(mlp + "up_proj", x, p[mlp + "up_proj.weight"], p.get(mlp + "up_proj.bias"))
        m = hooks.linear(mlp + "down_proj", F.silu(gate) * up, p[mlp + "down_proj.weight"], p.get(mlp + "down_proj.bias"))
        if resid:
            m = drop.apply(m, resid, i, SITE_MLP_OUTPUT)
        m = hooks.after_mlp(i, x, m, h)
        if post:
            m = rms_norm(m, p[pre + "post_feedforward_layernorm.weight"], eps)
        if sandwich:
            m = rms_norm(m, p[pre + "post_mlp_layernorm.weight"], eps)
        if granite:
            m = m * res_mult
        h = h + m

    h = rms_norm(h, p["model.norm.weight"], eps)
    logits = hooks.linear("lm_head", h, p.get("lm_head.weight", emb), None)
    if granite:
        logits = logits / cfg["logits_scaling"]
    return logits


def gemma_rms_norm(x, weight, eps):
    """Gemma2RMSNorm / Gemma3RMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + weight)."""
    variance = x.pow(2).mean(-1, keepdim=True)
    return (x * torch.rsqrt(variance + eps)) * (1.0 + weight)


def gemma_layer_types(cfg):
    """layer_types, or transformers' default pattern: layer i slides unless
    (i+1) is a multiple of 2 (Gemma 2) or of sliding_window_pattern (Gemma 3)."""
    if cfg.get("layer_types"):
        return cfg["layer_types"]
    pattern = cfg.get("sliding_window_pattern", 6) if cfg["model_type"] == "gemma3_text" else 2
    return ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(cfg["num_hidden_layers"])]


def gemma_forward(p, cfg, input_ids, hooks=PLAIN, drop=None):
    """Logits [B, T', V] of Gemma2ForCausalLM / Gemma3ForCausalLM (model_type gemma3_text).

    As modeling_gemma2.py / modeling_gemma3.py: (1 + w) RMSNorms before and
    after each sub-layer (input_layernorm, post_attention_layernorm,
    pre_feedforward_layernorm, post_feedforward_layernorm); embeddings
    times sqrt(hidden_size) in float32 (torch.tensor(hidden**0.5,
    float32)): Gemma 2 scales the whole inputs_embeds (virtual tokens
    included), Gemma 3's embedding module scales the token embeddings only;
    scores scaled by query_pre_attn_scalar^-0.5 and soft-capped by
    attn_logit_softcapping (Gemma 2); sliding layers see the last
    sliding_window positions; Gemma 3: per-head (1 + w) q/k norms before
    RoPE, sliding layers rotate with rope_local_base_freq and no scaling,
    full layers with rope_theta and rope_scaling (linear); GeGLU MLP
    (gelu_pytorch_tanh); tied LM head unless lm_head.weight is given;
    logits soft-capped by final_logit_softcapping. With drop (training
    mode), attention_dropout on the attention probabilities.
    """
    g3 = cfg["model_type"] == "gemma3_text"
    hidden = cfg["hidden_size"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg["num_key_value_heads"]
    head_dim = cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    emb = p["model.embed_tokens.weight"]
    normalizer = float(torch.tensor(hidden ** 0.5, dtype=torch.float32))

    tokens = emb[input_ids]
    if g3:
        tokens = tokens * normalizer
    h = hooks.input_embeds(tokens)
    if not g3:
        h = h * normalizer
    b, t, _ = h.shape
    past = hooks.past_length()
    positions = torch.arange(past, past + t)
    scaling = cfg.get("rope_scaling") or {}
    factor = scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear" else 1.0
    rope_full = rope_tables(head_dim, cfg["rope_theta"], positions, h.dtype, factor) + (False,)
    rope_local = rope_tables(head_dim, cfg["rope_local_base_freq"], positions, h.dtype) + (False,) if g3 else rope_full
    scale = cfg["query_pre_attn_scalar"] ** -0.5
    softcap = None if g3 else cfg.get("attn_logit_softcapping")

    for i, kind in enumerate(gemma_layer_types(cfg)):
        sliding = kind == "sliding_attention"
        pre = "model.layers.%d." % i
        x = gemma_rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        proj = {}
        for name, heads in (("q", n_heads), ("k", n_kv), ("v", n_kv)):
            path = pre + "self_attn.%s_proj" % name
            y = hooks.linear(path, x, p[path + ".weight"], p.get(path + ".bias")).view(b, t, heads, head_dim)
            norm = pre + "self_attn.%s_norm.weight" % name
            if norm in p:
                y = gemma_rms_norm(y, p[norm], eps)
            proj[name] = y.transpose(1, 2)
        a = rope_attention(i, proj, rope_local if sliding else rope_full, hooks, n_heads // n_kv, scale=scale,
                           softcap=softcap, window=layer_window(cfg, i),
                           dropout=drop and drop.attention(cfg.get("attention_dropout", 0.0), i))
        path = pre + "self_attn.o_proj"
        a = hooks.linear(path, a, p[path + ".weight"], p.get(path + ".bias"))
        a = hooks.after_attn(i, x, a, h)
        h = h + gemma_rms_norm(a, p[pre + "post_attention_layernorm.weight"], eps)

        x = gemma_rms_norm(h, p[pre + "pre_feedforward_layernorm.weight"], eps)
        mlp = pre + "mlp."
        gate = hooks.linear(mlp + "gate_proj", x, p[mlp + "gate_proj.weight"], None)
        up = hooks.linear(mlp + "up_proj", x, p[mlp + "up_proj.weight"], None)
        m = hooks.linear(mlp + "down_proj", gelu_new(gate) * up, p[mlp + "down_proj.weight"], None)
        m = hooks.after_mlp(i, x, m, h)
        h = h + gemma_rms_norm(m, p[pre + "post_feedforward_layernorm.weight"], eps)

    h = gemma_rms_norm(h, p["model.norm.weight"], eps)
    logits = hooks.linear("lm_head", h, p.get("lm_head.weight", emb), None)
    cap = cfg.get("final_logit_softcapping")
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def gpt2_forward(p, cfg, input_ids, hooks=PLAIN, drop=None):
    """Logits [B, T', V] of GPT2LMHeadModel (lm_head tied to transformer.wte).

    With drop (training mode): embd_pdrop on wte + wpe, attn_pdrop on the
    attention probabilities, resid_pdrop on the outputs of attn.c_proj and
    mlp.c_proj (inside the sub-layers, so before any adapter hook), each
    defaulting to GPT2Config's 0.1.
    """
    d = cfg["n_embd"]
    n_heads = cfg["n_head"]
    head_dim = d // n_heads
    eps = cfg["layer_norm_epsilon"]
    wte = p["transformer.wte.weight"]

    h = hooks.input_embeds(wte[input_ids])
    b, t, _ = h.shape
    past = hooks.past_length()
    h = h + p["transformer.wpe.weight"][past : past + t][None]
    if drop:
        h = drop.apply(h, cfg.get("embd_pdrop", 0.1), 0, SITE_EMBEDDING)
    resid = cfg.get("resid_pdrop", 0.1)

    for i in range(cfg["n_layer"]):
        pre = "transformer.h.%d." % i
        x = layer_norm(h, p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps)
        path = pre + "attn.c_attn"
        qkv = hooks.conv1d(path, x, p[path + ".weight"], p[path + ".bias"])
        q, k, v = (z.view(b, t, n_heads, head_dim).transpose(1, 2) for z in qkv.split(d, dim=2))
        hooks.own_kv(i, k, v)
        prefix = hooks.prefix_kv(i, b)
        if prefix is not None:
            k = torch.cat((prefix[0], k), dim=2)
            v = torch.cat((prefix[1], v), dim=2)
        a = causal_attention(q, k, v, dropout=drop and drop.attention(cfg.get("attn_pdrop", 0.1), i))
        a = a.transpose(1, 2).reshape(b, t, d)
        path = pre + "attn.c_proj"
        a = hooks.conv1d(path, a, p[path + ".weight"], p[path + ".bias"])
        if drop:
            a = drop.apply(a, resid, i, SITE_ATTN_OUTPUT)
        a = hooks.after_attn(i, x, a, h)
        h = h + a

        x = layer_norm(h, p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps)
        fc = pre + "mlp.c_fc"
        cp = pre + "mlp.c_proj"
        m = hooks.conv1d(cp, gelu_new(hooks.conv1d(fc, x, p[fc + ".weight"], p[fc + ".bias"])), p[cp + ".weight"], p[cp + ".bias"])
        if drop:
            m = drop.apply(m, resid, i, SITE_MLP_OUTPUT)
        m = hooks.after_mlp(i, x, m, h)
        h = h + m

    h = layer_norm(h, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    return hooks.linear("lm_head", h, wte, None)


FORWARDS = {
    "LlamaForCausalLM": llama_forward,
    "MistralForCausalLM": llama_forward,
    "Qwen2ForCausalLM": llama_forward,
    "Qwen3ForCausalLM": llama_forward,
    "Olmo2ForCausalLM": llama_forward,
    "GraniteForCausalLM": llama_forward,
    "Gemma2ForCausalLM": gemma_forward,
    "Gemma3ForCausalLM": gemma_forward,
    "Phi3ForCausalLM": llama_forward,
    "GlmForCausalLM": llama_forward,
    "Glm4ForCausalLM": llama_forward,
    "GPT2LMHeadModel": gpt2_forward,
}


def forward(p, cfg, input_ids, hooks=PLAIN, drop=None):
    """Dispatch on cfg["architectures"][0]; drop (a Dropout) means training mode."""
    return FORWARDS[cfg["architectures"][0]](p, cfg, input_ids, hooks, drop)


# ---------------------------------------------------------------- loss


def causal_lm_loss_sum(logits, labels):
    """Sum of token cross-entropies and the number of counted tokens.

    Hugging Face causal-LM semantics: logits[:, :-1] are scored against
    labels[:, 1:], label -100 is ignored. The mean loss of an optimizer step
    is the sum over all its micro-batches divided by the total count.
    """
    shift_logits = logits[:, :-1, :].reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    count = int((shift_labels != IGNORE_INDEX).sum())
    return total, count


def counted_tokens(labels):
    """Number of targets a batch of labels [B, T] contributes to the loss."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())
