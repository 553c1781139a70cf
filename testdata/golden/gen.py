"""Generate the PyTorch golden values gotune's Go tests compare against.

Run from anywhere:  /usr/bin/python3 testdata/golden/gen.py
(Debian's python3-torch and python3-numpy; CI does not run this.)

For every model in MODELS it writes testdata/golden/<model>/:
  config.json, model.safetensors   a Hugging Face checkpoint (float32 weights)
  data.jsonl                       the pre-tokenized batch
  golden.safetensors               logits, loss, gradients, training trajectories
  meta.json                        parameters (with decay flags) and every run's
                                   hyper-parameters
and for every fine-tuning run in METHOD_RUNS testdata/golden/methods/<run>/:
  adapter_config.json,             the initial adapter as a PEFT-format folder
  adapter_model.safetensors        (gotune's --init-adapter), absent for freeze
  prompt_encoder.safetensors       initial prompt-encoder weights (P-Tuning,
                                   prefix projection), which PEFT does not save
  golden.safetensors, meta.json    as above, for that one run
README.md beside this file describes every tensor. The output is a pure
function of this file, methods.py and reference.py: same inputs, same bytes.

Extending: a fine-tuning method is a Method subclass in methods.py (see the
notes on Method); a run is an entry of METHOD_RUNS. Each run is trained by
the same train() loop, so adding a method's goldens is one class plus one
entry.
"""
import math
import os
import sys
import zlib

sys.dont_write_bytecode = True  # keep testdata/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hfio  # noqa: E402
import reference as ref  # noqa: E402
from methods import (  # noqa: E402
    ADAPTERHUB, adapterhub_block,
    Bottleneck, Freeze, FullFineTuning, LoRA, PrefixTuning, PromptTuning, PTuning, randn)

HERE = os.path.dirname(os.path.abspath(__file__))

torch.set_num_threads(1)  # fixed summation order: reproducible float64 results


# ---------------------------------------------------------------- runs and schedules


class Run:
    """One training run: its data layout and optimizer hyper-parameters.

    Tensors of the run are stored under `prefix` in golden.safetensors.
    Defaults are the ones the foundation issue specifies.
    """

    def __init__(self, name, prefix, method=None, batch_size=2, grad_accum=1, seq_len=8,
                 lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, max_grad_norm=1.0,
                 schedule="constant", warmup_steps=0, total_steps=None, steps=3, seed=0):
        self.name = name
        self.prefix = prefix
        self.method = method or FullFineTuning()
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.seq_len = seq_len
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps if total_steps is not None else steps
        self.steps = steps
        self.seed = seed  # --seed: the base model's dropout masks derive from it

    def lr_lambda(self, step):
        """Multiplier of optimizer step step+1 (torch LambdaLR calls it with 0, 1, ...).

        transformers' get_constant_schedule_with_warmup,
        get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup
        (num_cycles 0.5).
        """
        w, n = self.warmup_steps, self.total_steps
        if step < w:
            return float(step) / float(max(1, w))
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "linear":
            return max(0.0, float(n - step) / float(max(1, n - w)))
        if self.schedule == "cosine":
            progress = float(step - w) / float(max(1, n - w))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))
        raise ValueError("unknown schedule %r" % self.schedule)

    def meta(self):
        """The run's entry in meta.json."""
        m = {
            "name": self.name,
            "prefix": self.prefix,
            "method": self.method.name,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "seq_len": self.seq_len,
            "shuffle": False,
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "steps": self.steps,
        }
        if self.seed:
            m["seed"] = self.seed
        cfg = self.method.meta()
        if cfg:
            m["method_config"] = cfg
        return m


# ---------------------------------------------------------------- data


def micro_batches(rows, run):
    """The micro-batches of every optimizer step, in order.

    --shuffle=false: consecutive lines in file order, wrapping around at the
    end of the file (a new epoch); each sequence truncated to seq_len and
    right-padded (input 0, label -100). Rows without labels train on every
    token (labels = input_ids).
    """
    if len(rows) % run.batch_size:
        raise ValueError("%d lines are not a whole number of batches of %d" % (len(rows), run.batch_size))
    steps = []
    cursor = 0
    for _ in range(run.steps):
        micro = []
        for _ in range(run.grad_accum):
            ids, labels = [], []
            for _ in range(run.batch_size):
                r = rows[cursor % len(rows)]
                cursor += 1
                x = list(r["input_ids"])[: run.seq_len]
                y = list(r.get("labels", r["input_ids"]))[: run.seq_len]
                pad = run.seq_len - len(x)
                ids.append(x + [0] * pad)
                labels.append(y + [ref.IGNORE_INDEX] * pad)
            micro.append((torch.tensor(ids), torch.tensor(labels)))
        steps.append(micro)
    return steps


# ---------------------------------------------------------------- training


def train(base, cfg, run, rows, rng):
    """Train run.steps AdamW steps in float64; return the tensors to store.

    Returns (init, out): the method's initial trainable float32 tensors, and
    the golden tensors (without the run's prefix): grad.<name> (gradient of
    the first step's mean loss, before clipping), losses, grad_norms, lrs,
    after.<name>.
    """
    method = run.method
    init = method.init(base, cfg, rng)
    params = {n: t.double() for n, t in base.items()}
    trainable = {}
    for n in sorted(init):
        trainable[n] = init[n].double().clone().requires_grad_(True)
        params[n] = trainable[n]
    hooks = method.hooks(params, cfg)

    names = list(trainable)
    decay = [trainable[n] for n in names if method.decay(n, trainable[n].shape)]
    no_decay = [trainable[n] for n in names if not method.decay(n, trainable[n].shape)]
    groups = [g for g in ({"params": decay, "weight_decay": run.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=run.lr, betas=run.betas, eps=run.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, run.lr_lambda)

    losses, norms, lrs = [], [], []
    first_grads = None
    for step, micro in enumerate(micro_batches(rows, run), 1):
        opt.zero_grad()
        counted = sum(ref.counted_tokens(labels) for _, labels in micro)
        step_loss = 0.0
        for k, (ids, labels) in enumerate(micro):
            # Training mode: the config's dropouts with gotune's masks of
            # this pass (none for the configs without dropout).
            logits = ref.forward(params, cfg, ids, hooks, ref.Dropout(run.seed, step, k))
            loss_sum, _ = ref.causal_lm_loss_sum(logits, hooks.extend_labels(labels))
            (loss_sum / counted).backward()
            step_loss += loss_sum.item()
        losses.append(step_loss / counted)
        if first_grads is None:
            first_grads = {n: trainable[n].grad.detach().clone() for n in names}
        # torch.nn.utils.clip_grad_norm_ (1.13): coef = max/(norm + 1e-6), clamped to 1.
        norms.append(float(torch.nn.utils.clip_grad_norm_([trainable[n] for n in names], run.max_grad_norm)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    out = {}
    for n in names:
        out["grad." + n] = first_grads[n]
        out["after." + n] = trainable[n].detach()
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float64)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    return init, out


def forward_golden(base, cfg, rows, run):
    """logits [B, T, V] and loss [1] of the first batch at the initial weights."""
    params = {n: t.double() for n, t in base.items()}
    ids, labels = micro_batches(rows, run)[0][0]
    with torch.no_grad():
        logits = ref.forward(params, cfg, ids)
        loss_sum, counted = ref.causal_lm_loss_sum(logits, labels)
    return {"logits": logits, "loss": (loss_sum / counted).reshape(1)}


# ---------------------------------------------------------------- models


def llama_weights(cfg, rng, std=0.1, emb_std=0.2, qkv_bias=False, qk_norm=False):
    """Random LLaMA/Qwen2/Qwen3/OLMo-2/Phi-3/GLM weights in Hugging Face names and shapes.

    OLMo-2 (model_type olmo2): post-norms instead of input_layernorm, and
    q/k norms over the whole projection. Phi-3: one qkv_proj [q+2kv, d]
    (drawn as q, k, v stacked) and one gate_up_proj [2i, d] (gate then up).
    GLM: gate_up_proj; GLM-4 also the output norms post_self_attn_layernorm
    and post_mlp_layernorm.
    """
    mt = cfg["model_type"]
    post = mt == "olmo2"
    d = cfg["hidden_size"]
    v = cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q_out = cfg["num_attention_heads"] * hd
    kv_out = cfg["num_key_value_heads"] * hd
    inter = cfg["intermediate_size"]
    w = {"model.embed_tokens.weight": randn(rng, (v, d), emb_std)}
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        if not post:
            w[pre + "input_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
        if mt == "phi3":
            w[pre + "self_attn.qkv_proj.weight"] = randn(rng, (q_out + 2 * kv_out, d), std)
        for name, out in (("q", q_out), ("k", kv_out), ("v", kv_out)) if mt != "phi3" else ():
            w[pre + "self_attn.%s_proj.weight" % name] = randn(rng, (out, d), std)
            if qkv_bias:
                w[pre + "self_attn.%s_proj.bias" % name] = randn(rng, (out,), std)
        w[pre + "self_attn.o_proj.weight"] = randn(rng, (d, q_out), std)
        if qk_norm:
            w[pre + "self_attn.q_norm.weight"] = randn(rng, (q_out if post else hd,), 0.1, 1.0)
            w[pre + "self_attn.k_norm.weight"] = randn(rng, (kv_out if post else hd,), 0.1, 1.0)
        w[pre + "post_attention_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
        if mt in ("phi3", "glm", "glm4"):
            w[pre + "mlp.gate_up_proj.weight"] = randn(rng, (2 * inter, d), std)
        else:
            w[pre + "mlp.gate_proj.weight"] = randn(rng, (inter, d), std)
            w[pre + "mlp.up_proj.weight"] = randn(rng, (inter, d), std)
        w[pre + "mlp.down_proj.weight"] = randn(rng, (d, inter), std)
        if post:
            w[pre + "post_feedforward_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
        if mt == "glm4":
            w[pre + "post_self_attn_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
            w[pre + "post_mlp_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
    w["model.norm.weight"] = randn(rng, (d,), 0.1, 1.0)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = randn(rng, (v, d), std)
    return w


def gpt2_weights(cfg, rng, std=0.1, emb_std=0.2):
    """Random GPT-2 weights in Hugging Face names; Conv1D weights are [in, out]."""
    d = cfg["n_embd"]
    inner = cfg["n_inner"] or 4 * d
    w = {
        "transformer.wte.weight": randn(rng, (cfg["vocab_size"], d), emb_std),
        "transformer.wpe.weight": randn(rng, (cfg["n_positions"], d), std),
    }
    for i in range(cfg["n_layer"]):
        pre = "transformer.h.%d." % i
        w[pre + "ln_1.weight"] = randn(rng, (d,), 0.1, 1.0)
        w[pre + "ln_1.bias"] = randn(rng, (d,), std)
        w[pre + "attn.c_attn.weight"] = randn(rng, (d, 3 * d), std)
        w[pre + "attn.c_attn.bias"] = randn(rng, (3 * d,), std)
        w[pre + "attn.c_proj.weight"] = randn(rng, (d, d), std)
        w[pre + "attn.c_proj.bias"] = randn(rng, (d,), std)
        w[pre + "ln_2.weight"] = randn(rng, (d,), 0.1, 1.0)
        w[pre + "ln_2.bias"] = randn(rng, (d,), std)
        w[pre + "mlp.c_fc.weight"] = randn(rng, (d, inner), std)
        w[pre + "mlp.c_fc.bias"] = randn(rng, (inner,), std)
        w[pre + "mlp.c_proj.weight"] = randn(rng, (inner, d), std)
        w[pre + "mlp.c_proj.bias"] = randn(rng, (d,), std)
    w["transformer.ln_f.weight"] = randn(rng, (d,), 0.1, 1.0)
    w["transformer.ln_f.bias"] = randn(rng, (d,), std)
    return w


def gemma_weights(cfg, rng, std=0.1, emb_std=0.2):
    """Random Gemma 2/3 weights in Hugging Face names and shapes (tied LM head).

    Norm weights are offsets from 1 ((1 + w) RMSNorm), drawn around 0 so a
    norm that forgot the 1, or the offset, is far off.
    """
    g3 = cfg["model_type"] == "gemma3_text"
    d = cfg["hidden_size"]
    hd = cfg["head_dim"]
    q_out = cfg["num_attention_heads"] * hd
    kv_out = cfg["num_key_value_heads"] * hd
    inter = cfg["intermediate_size"]
    w = {"model.embed_tokens.weight": randn(rng, (cfg["vocab_size"], d), emb_std)}
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        for name, out in (("q", q_out), ("k", kv_out), ("v", kv_out)):
            w[pre + "self_attn.%s_proj.weight" % name] = randn(rng, (out, d), std)
        w[pre + "self_attn.o_proj.weight"] = randn(rng, (d, q_out), std)
        if g3:
            w[pre + "self_attn.q_norm.weight"] = randn(rng, (hd,), 0.2)
            w[pre + "self_attn.k_norm.weight"] = randn(rng, (hd,), 0.2)
        w[pre + "mlp.gate_proj.weight"] = randn(rng, (inter, d), std)
        w[pre + "mlp.up_proj.weight"] = randn(rng, (inter, d), std)
        w[pre + "mlp.down_proj.weight"] = randn(rng, (d, inter), std)
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            w[pre + norm + ".weight"] = randn(rng, (d,), 0.2)
    w["model.norm.weight"] = randn(rng, (d,), 0.2)
    return w


def golden_data(rng, vocab):
    """Two sequences of 8 tokens with different numbers of counted targets.

    Line 1 masks a 3-token prompt (5 counted targets); line 2 masks its first
    token and one in the middle (6 counted targets). Token ids avoid 0-2.
    """
    rows = []
    for mask in ([0, 1, 2], [0, 4]):
        ids = [int(t) for t in rng.randint(3, vocab, size=8)]
        labels = [ref.IGNORE_INDEX if i in mask else t for i, t in enumerate(ids)]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def standard_runs(extra, seed=0):
    """The full fine-tuning run every model has, plus model-specific extras."""
    return [Run("full", "", seed=seed)] + extra


MODELS = [
    {
        "name": "llama-gqa",
        "seed": 1001,
        "config": hfio.llama_config("LlamaForCausalLM", "llama", vocab=64, hidden=32, layers=2, heads=4,
                                    kv_heads=2, inter=40, max_pos=64, theta=10000.0, eps=1e-5, tied=False),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([
            Run("accum", "accum.", batch_size=1, grad_accum=2),
            Run("warmup", "warmup.", schedule="linear", warmup_steps=2, total_steps=5,
                max_grad_norm=3.5),  # steps 1-2 clipped, step 3 not: both branches
        ]),
    },
    {
        "name": "qwen2-tied",
        "seed": 2002,
        "config": hfio.qwen2_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=1, inter=48,
                                    max_pos=64, theta=1e6, eps=1e-6, tied=True),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qkv_bias=True),
        "runs": standard_runs([]),
    },
    {
        "name": "gpt2",
        "seed": 3003,
        "config": hfio.gpt2_config(vocab=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, eps=1e-5,
                                   bos=63, eos=63),
        "weights": lambda cfg, rng: gpt2_weights(cfg, rng),
        "runs": standard_runs([]),
    },
    {
        "name": "qwen3",
        "seed": 4004,
        # head_dim 12 with hidden 32: not hidden/heads (8), as Qwen3 allows
        "config": hfio.qwen3_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, head_dim=12, inter=40,
                                    max_pos=64, theta=1e6, eps=1e-6, tied=False),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qk_norm=True),
        "runs": standard_runs([]),
    },
    {
        "name": "olmo2",
        "seed": 5005,
        "config": hfio.olmo2_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40,
                                    max_pos=64, theta=1e4, eps=1e-6, tied=False),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qk_norm=True),
        "runs": standard_runs([]),
    },
    {
        "name": "granite",
        "seed": 6006,
        # every scalar away from 1, the attention scale away from 1/sqrt(8)
        "config": hfio.granite_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40,
                                      max_pos=64, theta=1e4, eps=1e-6, tied=False, embedding_multiplier=3.0,
                                      residual_multiplier=0.5, attention_multiplier=0.25, logits_scaling=2.5),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([]),
    },
    {
        "name": "mistral-swa",
        "seed": 7007,
        # sliding_window 3 on every layer, shorter than the 8-token sequences
        "config": hfio.mistral_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40,
                                      max_pos=64, theta=1e4, eps=1e-6, tied=False, sliding_window=3),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([]),
    },
    {
        "name": "qwen2-swa",
        "seed": 8008,
        # layer 0 full attention, layer 1 a window of 3 (max_window_layers 1)
        "config": dict(hfio.qwen2_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40,
                                         max_pos=64, theta=1e6, eps=1e-6, tied=False),
                       use_sliding_window=True, sliding_window=3, max_window_layers=1),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qkv_bias=True),
        "runs": standard_runs([]),
    },
    {
        "name": "gpt2-dropout",
        "seed": 9009,
        # every GPT-2 dropout, each its own probability; the masks are
        # gotune's, drawn from the run's seed (reference.Dropout)
        "config": dict(hfio.gpt2_config(vocab=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, eps=1e-5,
                                        bos=63, eos=63), attn_pdrop=0.2, resid_pdrop=0.15, embd_pdrop=0.1),
        "weights": lambda cfg, rng: gpt2_weights(cfg, rng),
        "runs": standard_runs([], seed=4242),
    },
    {
        "name": "llama-dropout",
        "seed": 10010,
        "config": dict(hfio.llama_config("LlamaForCausalLM", "llama", vocab=64, hidden=32, layers=2, heads=4,
                                         kv_heads=2, inter=40, max_pos=64, theta=10000.0, eps=1e-5, tied=False),
                       attention_dropout=0.25),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([], seed=4243),
    },
    {
        "name": "phi3",
        "seed": 7007,
        # GQA; partial_rotary_factor 0.75 (6 of 8 elements, as Phi-4-mini's
        # 96 of 128); longrope with original_max_position_embeddings 6, so
        # the 8-token batches use the long factors and the attention factor
        # sqrt(1 + ln(64/6)/ln(6)); "short_logits" checks the short factors;
        # sliding_window 32, longer than every sequence here.
        "config": hfio.phi3_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40, max_pos=64,
                                   original_max_pos=6, theta=1e4, eps=1e-5, tied=False,
                                   partial_rotary_factor=0.75, short_factor=[1.0, 1.25, 1.75],
                                   long_factor=[1.5, 3.0, 7.5], sliding_window=32, bos=1, eos=63),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([]),
        "extra": lambda params, cfg, ids: {"short_logits": ref.forward(params, cfg, ids[:, :5])},
    },
    {
        "name": "phi3-dropout",
        "seed": 11011,
        # phi3's model with resid_pdrop 0.1 on the o_proj and down_proj
        # outputs (Phi3DecoderLayer's resid_attn_dropout, resid_mlp_dropout);
        # the masks are gotune's, drawn from the run's seed (reference.Dropout)
        "config": dict(hfio.phi3_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=2, inter=40, max_pos=64,
                                        original_max_pos=6, theta=1e4, eps=1e-5, tied=False,
                                        partial_rotary_factor=0.75, short_factor=[1.0, 1.25, 1.75],
                                        long_factor=[1.5, 3.0, 7.5], sliding_window=32, bos=1, eos=63),
                       resid_pdrop=0.1),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([], seed=4244),
    },
    {
        "name": "glm",
        "seed": 8008,
        # explicit head_dim 12 (not hidden/heads), RoPE on 6 of 12 elements
        # in interleaved pairs, q/k/v biases
        "config": hfio.glm_config("GlmForCausalLM", "glm", vocab=64, hidden=32, layers=2, heads=4, kv_heads=2,
                                  head_dim=12, inter=40, max_pos=64, theta=1e4, eps=1e-5, tied=False,
                                  partial_rotary_factor=0.5, eos=[61, 62, 63]),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qkv_bias=True),
        "runs": standard_runs([]),
    },
    {
        "name": "glm4",
        "seed": 9009,
        # GLM-4's sandwich norms; 1 KV head, RoPE on 4 of 8 elements
        "config": hfio.glm_config("Glm4ForCausalLM", "glm4", vocab=64, hidden=32, layers=2, heads=4, kv_heads=1,
                                  head_dim=8, inter=40, max_pos=64, theta=1e4, eps=1e-5, tied=False,
                                  partial_rotary_factor=0.5, eos=[61, 62, 63]),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qkv_bias=True),
        "runs": standard_runs([]),
    },
    {
        "name": "gemma2",
        "seed": 7007,
        # 8-token sequences, window 3: the sliding layers (0 and 2) see less
        # than the full one; both soft caps small enough to bend the scores
        # and logits; query_pre_attn_scalar away from head_dim
        "config": hfio.gemma2_config(vocab=64, hidden=32, layers=3, heads=4, kv_heads=2, head_dim=8, inter=40,
                                     max_pos=64, theta=1e4, eps=1e-6, query_pre_attn_scalar=20,
                                     sliding_window=3, attn_softcap=1.0, final_softcap=2.0),
        "weights": lambda cfg, rng: gemma_weights(cfg, rng),
        "runs": standard_runs([]),
    },
    {
        "name": "gemma3",
        "seed": 8008,
        # layers 0 and 1 slide (window 3, local RoPE base), layer 2 is full
        # (rope_theta with linear scaling); head_dim 12 is not hidden/heads
        "config": hfio.gemma3_config(vocab=64, hidden=32, layers=3, heads=4, kv_heads=2, head_dim=12, inter=40,
                                     max_pos=64, theta=1e6, local_theta=1e4,
                                     rope_scaling={"factor": 2.0, "rope_type": "linear"}, eps=1e-6,
                                     query_pre_attn_scalar=16, sliding_window=3, sliding_window_pattern=3),
        "weights": lambda cfg, rng: gemma_weights(cfg, rng),
        "runs": standard_runs([]),
    },
]


def generate(spec):
    folder = os.path.join(HERE, spec["name"])
    os.makedirs(folder, exist_ok=True)
    cfg = spec["config"]
    rng = np.random.RandomState(spec["seed"])
    base = spec["weights"](cfg, rng)
    rows = golden_data(rng, cfg["vocab_size"])

    hfio.write_json(os.path.join(folder, "config.json"), cfg)
    hfio.write_safetensors(os.path.join(folder, "model.safetensors"), base, {"format": "pt"})
    hfio.write_jsonl(os.path.join(folder, "data.jsonl"), rows)

    golden = forward_golden(base, cfg, rows, spec["runs"][0])
    if "extra" in spec:
        # Model-specific checks on the first batch at the initial weights.
        params = {n: t.double() for n, t in base.items()}
        ids, _ = micro_batches(rows, spec["runs"][0])[0][0]
        with torch.no_grad():
            golden.update(spec["extra"](params, cfg, ids))
    runs_meta = []
    for k, run in enumerate(spec["runs"]):
        # Each run draws its method's initial tensors from its own stream.
        init, out = train(base, cfg, run, rows, np.random.RandomState(spec["seed"] * 100 + k))
        for n, t in out.items():
            golden[run.prefix + n] = t
        m = run.meta()
        m["trainable"] = [{"name": n, "shape": list(t.shape), "decay": run.method.decay(n, t.shape)}
                          for n, t in sorted(init.items())]
        m["counted_tokens"] = [sum(ref.counted_tokens(l) for _, l in micro)
                               for micro in micro_batches(rows, run)]
        runs_meta.append(m)

    # Accumulation changes how a step is computed, not what: the same data in
    # micro-batches must give the full batch's trajectory.
    for run in spec["runs"]:
        if run.grad_accum > 1:
            assert torch.allclose(golden[run.prefix + "losses"], golden["losses"], rtol=1e-12), run.name
    golden = {n: t.to(torch.float32) for n, t in golden.items()}
    hfio.write_safetensors(os.path.join(folder, "golden.safetensors"), golden,
                           {"generator": "testdata/golden/gen.py", "torch": torch.__version__.split("+")[0]})
    meta = {
        "model": spec["name"],
        "architecture": cfg["architectures"][0],
        "config": "config.json",
        "weights": "model.safetensors",
        "data": "data.jsonl",
        "golden": "golden.safetensors",
        "params": [{"name": n, "shape": list(t.shape), "decay": FullFineTuning().decay(n, t.shape)}
                   for n, t in sorted(base.items())],
        "runs": runs_meta,
    }
    hfio.write_json(os.path.join(folder, "meta.json"), meta)
    first = golden["losses"].tolist()
    print("%-11s params=%d  losses=%s  grad_norms=%s" % (
        spec["name"], sum(t.numel() for t in base.values()),
        " ".join("%.5f" % x for x in first),
        " ".join("%.4f" % x for x in golden["grad_norms"].tolist())))
    return base, rows


# ---------------------------------------------------------------- fine-tuning methods

# One golden set per entry, in methods/<name>/ (name, base model, method,
# max_grad_norm). Every other hyper-parameter is the full runs' (batch 2,
# AdamW lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, constant
# LR, 3 steps); max_grad_norm is chosen per run, between the run's
# gradient norms, so that some steps are clipped and some are not
# (generate_method asserts both, with a margin).
METHOD_RUNS = [
    ("lora", "llama-gqa", LoRA(r=4, alpha=8, targets=("q_proj", "v_proj")), 0.72),
    ("lora-all-linear", "llama-gqa", LoRA(r=4, alpha=8, targets=("all-linear",)), 1.3),
    ("rslora", "llama-gqa", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj"),
                                 use_rslora=True), 1.8),
    ("dora", "llama-gqa", LoRA(r=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"), use_dora=True,
                               m_jitter=0.1), 0.93),
    ("adapter-houlsby", "llama-gqa", Bottleneck("houlsby", reduction_factor=4, non_linearity="relu"), 1.2),
    ("adapter-pfeiffer", "llama-gqa", Bottleneck("pfeiffer", reduction_factor=2, non_linearity="gelu"), 1.0),
    ("adapter-parallel", "llama-gqa", Bottleneck("parallel", reduction_factor=4, non_linearity="silu",
                                                 scaling=2.0), 1.4),
    ("adapter-series", "llama-gqa", Bottleneck("series", reduction_factor=2, non_linearity="gelu"), 1.0),
    ("adapter-parallel-normed", "llama-gqa", Bottleneck("parallel-normed", reduction_factor=4, non_linearity="silu",
                                                        scaling=2.0), 1.6),
    ("prompt", "llama-gqa", PromptTuning(num_virtual_tokens=3), 0.5),
    ("ptuning-mlp", "llama-gqa", PTuning(num_virtual_tokens=3, encoder="MLP", hidden=16), 0.6),
    ("ptuning-lstm", "llama-gqa", PTuning(num_virtual_tokens=3, encoder="LSTM", hidden=12), 0.4),
    ("prefix", "llama-gqa", PrefixTuning(num_virtual_tokens=3, std=0.2), 0.233),
    # The local prefix's gradient norm moves by under 1% a step, too little
    # to straddle a threshold with the margin: every step is unclipped.
    ("prefix-local", "llama-gqa", PrefixTuning(num_virtual_tokens=3, layers=[1]), 1.0),
    ("prefix-projection", "llama-gqa", PrefixTuning(num_virtual_tokens=3, projection=True, encoder_hidden=24),
     0.68),
    ("freeze-last-layer", "llama-gqa", Freeze(trainable_layers=1, modules=("all",)), 1.8),
    ("freeze-mlp-norm", "llama-gqa", Freeze(trainable_layers=-1, modules=("mlp",), extra=("norm",)), 1.06),
    ("gpt2-lora", "gpt2", LoRA(r=4, alpha=8, targets=("c_attn", "c_fc")), 1.65),
    ("gpt2-dora", "gpt2", LoRA(r=4, alpha=8, targets=("c_attn", "c_proj"), use_dora=True, m_jitter=0.1), 2.0),
    ("gpt2-adapter-houlsby", "gpt2", Bottleneck("houlsby", reduction_factor=4, non_linearity="tanh",
                                                target_layers=[1]), 1.03),
    ("gpt2-adapter-pfeiffer", "gpt2", Bottleneck("pfeiffer", reduction_factor=4, non_linearity="relu"), 1.56),
    ("gpt2-adapter-parallel", "gpt2", Bottleneck("parallel", reduction_factor=2, non_linearity="swish",
                                                 scaling=4.0, target_layers=[0]), 2.5),
    ("gpt2-prefix", "gpt2", PrefixTuning(num_virtual_tokens=3, std=2.0), 0.23),
    ("qwen2-lora-all-linear", "qwen2-tied", LoRA(r=4, alpha=8, targets=("all-linear",)), 2.5),
    ("qwen3-lora", "qwen3", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj")), 1.25),
    ("qwen2-dora", "qwen2-tied", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj"), use_dora=True,
                                      m_jitter=0.1), 1.8),
    ("granite-lora", "granite", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj")), 0.104),
    ("olmo2-adapter-houlsby", "olmo2", Bottleneck("houlsby", reduction_factor=4, non_linearity="relu"), 2.4),
    ("granite-adapter-parallel", "granite", Bottleneck("parallel", reduction_factor=4, non_linearity="silu",
                                                       scaling=2.0), 0.283),
    ("olmo2-lora", "olmo2", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj")), 1.7),
    ("mistral-swa-lora", "mistral-swa", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj")), 1.13),
    ("qwen2-swa-lora", "qwen2-swa", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj")), 1.12),
    ("phi3-lora", "phi3", LoRA(r=4, alpha=8, targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj")), 1.25),
    ("glm-lora", "glm", LoRA(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj")), 1.42),
    ("glm4-lora", "glm4", LoRA(r=4, alpha=8, targets=("all-linear",)), 1.5),
    ("phi3-dora", "phi3", LoRA(r=4, alpha=8, targets=("qkv_proj", "gate_up_proj"), use_dora=True, m_jitter=0.1), 0.95),
    ("glm4-adapter-houlsby", "glm4", Bottleneck("houlsby", reduction_factor=4, non_linearity="relu"), 2.3),
    # As prefix-local: the norm moves by under 1% a step, every step unclipped.
    ("phi3-prefix", "phi3", PrefixTuning(num_virtual_tokens=3, std=0.5), 1.0),
    ("gemma2-lora", "gemma2", LoRA(r=4, alpha=8, targets=("all-linear",)), 2.5),
    ("gemma3-lora", "gemma3", LoRA(r=4, alpha=8, targets=("all-linear",)), 2.8),
    # Prompt tuning tells Gemma 2 (virtual tokens scaled by sqrt(hidden)
    # with the rest of inputs_embeds) from Gemma 3 (only the embedding
    # module's output is scaled).
    ("gemma2-prompt", "gemma2", PromptTuning(num_virtual_tokens=3), 0.95),
    ("gemma3-prompt", "gemma3", PromptTuning(num_virtual_tokens=3), 1.28),
    # A prefix is a past KV cache: sliding layers see only its last
    # window - 1 positions from the first real token on.
    ("gemma2-prefix", "gemma2", PrefixTuning(num_virtual_tokens=3, std=0.5), 0.21),
]

# How far (relative) every gradient norm must stay from max_grad_norm, so
# that a float32 recomputation (gradients within the 1e-4 tolerance) cannot
# flip a step between clipped and not.
CLIP_MARGIN = 0.005


def method_forward_golden(base, cfg, rows, run, init):
    """logits [B, T+prepended, V] and loss [1] of the first batch at the initial adapter."""
    params = {n: t.double() for n, t in base.items()}
    params.update({n: t.double() for n, t in init.items()})
    hooks = run.method.hooks(params, cfg)
    ids, labels = micro_batches(rows, run)[0][0]
    with torch.no_grad():
        logits = ref.forward(params, cfg, ids, hooks)
        loss_sum, counted = ref.causal_lm_loss_sum(logits, hooks.extend_labels(labels))
    return {"logits": logits, "loss": (loss_sum / counted).reshape(1)}


def generate_method(entry, models):
    """Train one METHOD_RUNS entry and write methods/<name>/."""
    name, model, method, max_grad_norm = entry
    spec, base, rows = models[model]
    cfg = spec["config"]
    run = Run(name, "", method=method, max_grad_norm=max_grad_norm)
    folder = os.path.join(HERE, "methods", name)
    os.makedirs(folder, exist_ok=True)
    # The run's initial tensors come from a stream of its own, keyed by its
    # name, so adding or reordering runs changes no other run.
    init, out = train(base, cfg, run, rows, np.random.RandomState(zlib.crc32(name.encode())))
    for n, t in init.items():
        assert bool((t != 0).all()), "%s: %s has zeros: initial values must be non-zero everywhere" % (name, n)
    norms = out["grad_norms"].tolist()
    assert any(x < max_grad_norm for x in norms), (name, norms, "no unclipped step")
    assert all(abs(x - max_grad_norm) > CLIP_MARGIN * max_grad_norm for x in norms), (name, norms)

    golden = method_forward_golden(base, cfg, rows, run, init)
    assert abs(golden["loss"].item() - out["losses"][0].item()) < 1e-12, name
    golden.update(out)
    # What adapter_model.safetensors holds after training, where it is not
    # the trainable tensors themselves (P-Tuning, prefix projection).
    saved = {}
    if method.encoder_weights(init) is not None:
        saved = method.adapter_weights({n: out["after." + n] for n in init})
        golden.update({"saved." + n: t for n, t in saved.items()})

    base_path = "testdata/golden/" + model  # what gotune train --model would have been given
    has_adapter = method.adapter_config(base_path) is not None
    if has_adapter:
        method.write(folder, init, base_path)

    golden = {n: t.to(torch.float32) for n, t in golden.items()}
    hfio.write_safetensors(os.path.join(folder, "golden.safetensors"), golden,
                           {"generator": "testdata/golden/gen.py", "torch": torch.__version__.split("+")[0]})
    m = run.meta()
    if has_adapter:
        m["adapter"] = "."
    m["trainable"] = [{"name": n, "shape": list(t.shape), "decay": method.decay(n, t.shape)}
                      for n, t in sorted(init.items())]
    m["counted_tokens"] = [sum(ref.counted_tokens(l) for _, l in micro) for micro in micro_batches(rows, run)]
    meta = {
        "name": name,
        "model": model,
        "architecture": cfg["architectures"][0],
        "base": "../../" + model,
        "data": "../../%s/data.jsonl" % model,
        "golden": "golden.safetensors",
        "prepended_tokens": method.prepended(),
        "run": m,
    }
    if method.encoder_weights(init) is not None:
        meta["encoder"] = method.ENCODER_FILE
        meta["saved"] = [{"name": n, "shape": list(t.shape), "decay": False} for n, t in sorted(saved.items())]
    hfio.write_json(os.path.join(folder, "meta.json"), meta)
    print("%-22s trainable=%-6d losses=%s  grad_norms=%s (max %g)" % (
        name, sum(t.numel() for t in init.values()),
        " ".join("%.5f" % x for x in out["losses"].tolist()), " ".join("%.4f" % x for x in norms),
        max_grad_norm))


def self_check():
    """Check reference.py's building blocks against second formulations."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)
    # gelu_new is torch's tanh-approximate GELU.
    assert torch.allclose(ref.gelu_new(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=0, atol=1e-14)
    # rotate_half RoPE rotates the complex number x[i] + j*x[i+D/2] by pos*inv_freq[i].
    cos, sin = ref.rope_tables(8, 10000.0, torch.arange(3, 8), torch.float64)
    z = torch.complex(x[..., :4], x[..., 4:])
    ang = torch.arange(3, 8, dtype=torch.float64)[:, None] / 10000.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    zr = z * torch.polar(torch.ones_like(ang), ang)
    assert torch.allclose(ref.apply_rope(x, cos, sin), torch.cat((zr.real, zr.imag), -1), rtol=0, atol=1e-14)
    # GLM's RoPE rotates x[2i] + j*x[2i+1] over the first rotary_dim elements only.
    glm = {"model_type": "glm4", "partial_rotary_factor": 0.5, "rope_theta": 10000.0}
    cos, sin, inter = ref.rotary_tables(glm, 8, torch.arange(3, 8), torch.float64)
    ang = torch.arange(3, 8, dtype=torch.float64)[:, None] / 10000.0 ** (torch.arange(0, 4, 2, dtype=torch.float64) / 4)
    zr = torch.complex(x[..., 0:4:2], x[..., 1:4:2]) * torch.polar(torch.ones_like(ang), ang)
    want = x.clone()
    want[..., 0:4:2], want[..., 1:4:2] = zr.real, zr.imag
    assert inter and torch.allclose(ref.apply_rotary(x, cos, sin, inter), want, rtol=0, atol=1e-14)
    # Phi-3's partial rotary is rotate_half over the first rotary_dim elements;
    # longrope divides the angles by the long factors once the largest
    # position + 1 exceeds original_max_position_embeddings, and scales by
    # the attention factor.
    phi = {"model_type": "phi3", "partial_rotary_factor": 0.75, "rope_theta": 10000.0,
           "max_position_embeddings": 64, "original_max_position_embeddings": 6,
           "rope_scaling": {"type": "longrope", "short_factor": [1.0, 2.0, 4.0], "long_factor": [3.0, 5.0, 7.0]}}
    scale = math.sqrt(1 + math.log(64 / 6) / math.log(6))
    for pos, factors in ((torch.arange(0, 6), [1.0, 2.0, 4.0]), (torch.arange(1, 7), [3.0, 5.0, 7.0])):
        cos, sin, inter = ref.rotary_tables(phi, 8, pos, torch.float64)
        ang = pos.to(torch.float64)[:, None] / (torch.tensor(factors, dtype=torch.float64)
                                              * 10000.0 ** (torch.arange(0, 6, 2, dtype=torch.float64) / 6))
        zr = torch.complex(x[..., 2:5, :3], x[..., 2:5, 3:6]) * torch.polar(torch.full_like(ang[:3], scale), ang[:3])
        got = ref.apply_rotary(x[..., 2:5, :], cos[:3], sin[:3], inter)
        assert not inter and torch.allclose(got, torch.cat((zr.real, zr.imag, x[..., 2:5, 6:]), -1), rtol=0, atol=1e-13)
    # repeat_kv: query head h reads kv head h // n_rep.
    r = ref.repeat_kv(x[:, :2], 3)
    assert all(torch.equal(r[:, h], x[:, h // 3]) for h in range(6))
    # A sliding window as transformers masks it (Gemma2DecoderLayer: the
    # mask's entries below diagonal -window are -inf) with a cache of 2.
    q = x[:, :, :3]
    for window in (1, 2, 4):
        out = ref.causal_attention(q, x, x, window=window)
        allowed = torch.ones(5, 5, dtype=torch.bool).tril() & ~torch.ones(5, 5, dtype=torch.bool).tril(-window)
        s = (q @ x.transpose(2, 3)) / math.sqrt(8)
        want = torch.softmax(s.masked_fill(~allowed[2:], float("-inf")), -1) @ x
        assert torch.allclose(out, want, rtol=0, atol=1e-14), window
    # causal attention with a 2-position prefix, against an explicit loop.
    q = x[:, :, :3]
    out = ref.causal_attention(q, x, x)
    for t in range(3):
        s = torch.softmax(q[:, :, t : t + 1] @ x[:, :, : t + 3].transpose(2, 3) / math.sqrt(8), -1)
        assert torch.allclose(out[:, :, t : t + 1], s @ x[:, :, : t + 3], rtol=0, atol=1e-14)
    # a sliding window of 3: query t (key index t + 2) sees keys t..t+2.
    out = ref.causal_attention(q, x, x, window=3)
    for t in range(3):
        s = torch.softmax(q[:, :, t : t + 1] @ x[:, :, t : t + 3].transpose(2, 3) / math.sqrt(8), -1)
        assert torch.allclose(out[:, :, t : t + 1], s @ x[:, :, t : t + 3], rtol=0, atol=1e-14)
    # SplitMix64's first output from state 0 (Steele, Lea and Flood's
    # generator), and the mask keeping about 1 - p of the elements.
    assert int(ref.splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    kept = ref.dropout_keep(12345, 200000, 0.25).mean()
    assert abs(kept - 0.75) < 0.005, kept
    # the layer windows transformers' configs give
    assert [ref.layer_window(MODELS[6]["config"], i) for i in range(2)] == [3, 3]
    assert [ref.layer_window(MODELS[7]["config"], i) for i in range(2)] == [None, 3]
    assert ref.layer_window(MODELS[1]["config"], 1) is None
    gemma = {m["name"]: m["config"] for m in MODELS if m["name"].startswith("gemma")}
    assert [ref.layer_window(gemma["gemma2"], i) for i in range(3)] == [3, None, 3]
    assert [ref.layer_window(gemma["gemma3"], i) for i in range(3)] == [3, 3, None]


def method_check():
    """LoRA and DoRA through Hooks must equal the model with merged weights."""
    ids = torch.tensor([[5, 9, 33, 2, 17, 40]])
    cases = [(MODELS[0], {}), (MODELS[0], {"use_rslora": True}), (MODELS[0], {"use_dora": True}),
             (MODELS[1], {"targets": ("all-linear",), "use_dora": True}),
             (MODELS[2], {"targets": ("c_attn", "c_fc"), "use_dora": True}),
             (MODELS[3], {"targets": ("q_proj", "k_proj", "o_proj"), "use_dora": True})]
    for spec, kw in cases:
        cfg = spec["config"]
        base = spec["weights"](cfg, np.random.RandomState(7))
        lora = LoRA(**kw)
        init = lora.init(base, cfg, np.random.RandomState(8))
        for n in init:  # move m off its initial value so (m/n - 1) matters
            if n.endswith("lora_magnitude_vector"):
                init[n] = init[n] * (1 + 0.1 * torch.from_numpy(np.random.RandomState(9).standard_normal(init[n].shape)).float())
        assert lora.modules(base, cfg), kw
        params = {n: t.double() for n, t in base.items()}
        params.update({n: t.double() for n, t in init.items()})
        merged = {n: t.double() for n, t in base.items()}
        for path, conv in lora.modules(base, cfg):
            w = merged[path + ".weight"]
            w = w.t() if conv else w
            d = w + lora.scaling * (params[lora.key(path, "lora_B.weight")] @ params[lora.key(path, "lora_A.weight")])
            if lora.use_dora:
                m = params[lora.key(path, "lora_magnitude_vector")]
                d = m[:, None] * d / d.norm(dim=1, keepdim=True)
            merged[path + ".weight"] = d.t() if conv else d
        got = ref.forward(params, cfg, ids, lora.hooks(params, cfg))
        want = ref.forward(merged, cfg, ids)
        assert torch.allclose(got, want, rtol=0, atol=1e-12), kw
        assert not torch.allclose(got, ref.forward({n: t.double() for n, t in base.items()}, cfg, ids)), kw


def encoder_check():
    """The prompt encoders against torch.nn modules loaded by state-dict name.

    Loading with strict=True also proves the tensor names are PyTorch's (and
    so PEFT's, which are the modules' names under prompt_encoder).
    """
    cfg = MODELS[0]["config"]
    base = MODELS[0]["weights"](cfg, np.random.RandomState(7))
    d = cfg["hidden_size"]
    nn = torch.nn

    def sub(t, prefix):
        return {n[len(prefix):]: v.double() for n, v in t.items() if n.startswith(prefix)}

    for enc, hid in (("MLP", 16), ("LSTM", 12)):
        pt = PTuning(num_virtual_tokens=3, encoder=enc, hidden=hid)
        init = pt.init(base, cfg, np.random.RandomState(8))
        emb = init["prompt_encoder.embedding.weight"].double()
        if enc == "MLP":
            head = nn.Sequential(nn.Linear(d, hid), nn.ReLU(), nn.Linear(hid, hid), nn.ReLU(), nn.Linear(hid, d))
            head = head.double()
            head.load_state_dict(sub(init, "prompt_encoder.mlp_head."), strict=True)
            want = head(emb)
        else:
            lstm = nn.LSTM(d, hid, num_layers=2, bidirectional=True, batch_first=True).double()
            lstm.load_state_dict(sub(init, "prompt_encoder.lstm_head."), strict=True)
            head = nn.Sequential(nn.Linear(2 * hid, 2 * hid), nn.ReLU(), nn.Linear(2 * hid, d)).double()
            head.load_state_dict(sub(init, "prompt_encoder.mlp_head."), strict=True)
            want = head(lstm(emb[None])[0])[0]
        got = pt.encode({n: v.double() for n, v in init.items()})
        assert torch.allclose(got, want, rtol=0, atol=1e-13), enc

    pf = PrefixTuning(num_virtual_tokens=3, projection=True, encoder_hidden=24)
    init = pf.init(base, cfg, np.random.RandomState(8))
    width = cfg["num_hidden_layers"] * 2 * pf.token_dim
    head = nn.Sequential(nn.Linear(pf.token_dim, 24), nn.Tanh(), nn.Linear(24, width)).double()
    head.load_state_dict(sub(init, "prompt_encoder.transform."), strict=True)
    want = head(init["prompt_encoder.embedding.weight"].double())
    assert torch.allclose(pf.encode({n: v.double() for n, v in init.items()}), want, rtol=0, atol=1e-13)


def prefix_check():
    """Prefix tuning against PEFT's layout and against a KV cache.

    1. The hooks' per-layer keys/values equal PEFT's get_prompt expression:
       view [B, P, L*2, heads, head_dim], permute (2, 0, 3, 1, 4), split 2.
    2. A prefix holding the keys/values the model itself computes for the
       first P tokens of a sequence (a KV cache: RoPE at positions 0..P-1
       already applied) must give the logits of the remaining tokens: this
       checks the positions P..P+T-1, that no RoPE is applied to the prefix,
       and that every real token sees every prefix entry.
    """
    ids = torch.tensor([[5, 9, 33, 2, 17, 40, 11, 60]])
    p = 3
    gemma2 = next(m for m in MODELS if m["name"] == "gemma2")  # the cache under sliding windows
    for spec in (MODELS[0], MODELS[1], MODELS[2], gemma2):
        cfg = spec["config"]
        base = spec["weights"](cfg, np.random.RandomState(7))
        params = {n: t.double() for n, t in base.items()}
        pf = PrefixTuning(num_virtual_tokens=p)
        pf.init(base, cfg, np.random.RandomState(8))
        n_layers = len(pf.layers(cfg))
        hd = pf.token_dim // pf.heads

        flat = torch.from_numpy(np.random.RandomState(9).standard_normal((p, n_layers * 2 * pf.token_dim)))
        params["prompt_embeddings"] = flat
        hooks = pf.hooks(params, cfg)
        b = 2
        peft = flat[None].expand(b, -1, -1).reshape(b, p, n_layers * 2, pf.heads, hd)
        peft = peft.permute([2, 0, 3, 1, 4]).split(2)
        for layer in range(n_layers):
            k, v = hooks.prefix_kv(layer, b)
            assert torch.equal(k, peft[layer][0]) and torch.equal(v, peft[layer][1]), (spec["name"], layer)

        cache = {}

        class Capture(ref.Hooks):
            def own_kv(self, layer, k, v):
                cache[layer] = (k, v)

        ref.forward(params, cfg, ids[:, :p], Capture())
        blocks = []
        for layer in range(n_layers):
            for t in cache[layer]:  # [1, heads, P, hd] -> [P, heads*hd]
                blocks.append(t[0].permute(1, 0, 2).reshape(p, pf.token_dim))
        params["prompt_embeddings"] = torch.cat(blocks, dim=1)
        got = ref.forward(params, cfg, ids[:, p:], pf.hooks(params, cfg))
        want = ref.forward(params, cfg, ids)[:, p:]
        assert torch.allclose(got, want, rtol=0, atol=1e-12), spec["name"]


def adapter_check():
    """Bottleneck adapters with up_proj zero are the identity (gotune's init)."""
    ids = torch.tensor([[5, 9, 33, 2, 17, 40]])
    for spec in (MODELS[0], MODELS[2]):
        cfg = spec["config"]
        base = spec["weights"](cfg, np.random.RandomState(7))
        plain = ref.forward({n: t.double() for n, t in base.items()}, cfg, ids)
        for variant in ("houlsby", "pfeiffer", "parallel", "series", "parallel-normed"):
            ad = Bottleneck(variant)
            init = ad.init(base, cfg, np.random.RandomState(8))
            params = {n: t.double() for n, t in base.items()}
            params.update({n: t.double() for n, t in init.items()})
            assert not torch.allclose(ref.forward(params, cfg, ids, ad.hooks(params, cfg)), plain)
            for n in init:
                if ".up_proj." in n:
                    params[n] = torch.zeros_like(params[n])
            assert torch.equal(ref.forward(params, cfg, ids, ad.hooks(params, cfg)), plain), variant


def adapterhub_check():
    """adapterhub_block spells out what the issue and gotune's docs say
    AdapterHub's configurations compute: with f the bottleneck, h the
    sub-layer output and x the residual, double_seq_bn gives x + h + f(h),
    seq_bn x + h + f(x + h), par_bn x + h + f(x)."""
    rng = np.random.RandomState(3)
    h, x = torch.tensor(rng.randn(2, 3, 4)), torch.tensor(rng.randn(2, 3, 4))
    w = torch.tensor(rng.randn(4, 4))

    def f(v):
        return torch.tanh(v @ w)
    want = {"houlsby": x + h + f(h), "pfeiffer": x + h + f(x + h), "parallel": x + h + f(x),
            "series": x + h + f(h)}
    for variant, hub in ADAPTERHUB.items():
        assert torch.allclose(adapterhub_block(hub, h, x, f), want[variant], rtol=0, atol=1e-12), variant


def freeze_check():
    """The freeze selections the goldens use, spelled out."""
    cfg = MODELS[0]["config"]
    base = MODELS[0]["weights"](cfg, np.random.RandomState(7))
    got = Freeze(trainable_layers=-1, modules=("mlp",), extra=("norm",)).selected(base, cfg)
    assert got == ["model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.gate_proj.weight",
                   "model.layers.0.mlp.up_proj.weight", "model.norm.weight"], got
    got = Freeze(trainable_layers=1).selected(base, cfg)
    assert got == sorted(n for n in base if n.startswith("model.layers.1.")) and len(got) == 9, got


def main():
    self_check()
    method_check()
    encoder_check()
    prefix_check()
    adapter_check()
    adapterhub_check()
    freeze_check()
    models = {}
    for spec in MODELS:
        base, rows = generate(spec)
        models[spec["name"]] = (spec, base, rows)
    # Arguments name the method runs to regenerate (default: all of them).
    only = set(sys.argv[1:])
    unknown = only - {e[0] for e in METHOD_RUNS}
    if unknown:
        raise SystemExit("unknown method runs: %s" % ", ".join(sorted(unknown)))
    for entry in METHOD_RUNS:
        if not only or entry[0] in only:
            generate_method(entry, models)


if __name__ == "__main__":
    main()
