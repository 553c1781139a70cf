"""bfloat16 mixed-precision goldens: 3 AdamW steps of full fine-tuning and
of LoRA on llama-gqa, with gotune's --precision bf16 rounding points.

torch.autocast semantics, made explicit so that every rounding point is
exactly gotune's (engine.Precision documents them):

- matrix products read bfloat16 operands (activations, frozen weights,
  bf16(master) copies of trainable matrices), accumulate in float (here
  float64) and round their output to bfloat16;
- the residual stream, norm statistics, softmax and the cross-entropy stay
  float (here float64); norm outputs are rounded to bfloat16 (they only
  feed matrix products);
- RoPE, attention, SwiGLU compute in float from bfloat16 inputs and round
  their output once;
- attention (engine.Backend's bfloat16 contract): out = Σ bf16(P)·v with
  P = exp(s − lse) the normalised probabilities; backward dv = bf16(P)ᵀ·dout,
  dS = P ⊙ (dout·vᵀ − Δ) with Δ = rowsum(dout ⊙ out) from the stored
  (rounded) out, dq = scale·bf16(dS)·k, dk = scale·bf16(dS)ᵀ·q;
- gradients of bfloat16 activations (dq/dk/dv after attention and again
  after the inverse RoPE, the attention output's, the MLP's, the logits')
  are rounded to bfloat16; gradients of the norm outputs and the residual
  stream are float;
- LoRA: xa = bf16(s·x·Aᵀ), y = bf16(x·W₀ᵀ + xa·Bᵀ) (one rounding);
- float masters, float AdamW moments.

Everything else is float64, so the goldens differ from gotune (float32
arithmetic) by float32 noise plus rare one-unit bfloat16 rounding flips.
Also written: the same runs with no rounding at all ("exact_*"), to show
the bf16 effect is far larger than the test's tolerance.

Run: /usr/bin/python3 testdata/golden/bf16.py  (writes bf16/golden.json)
"""

import json
import math
import os

import torch
import torch.nn.functional as F

import hfio

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def bf16(t):
    """Round to the nearest bfloat16 (ties to even), kept in float64."""
    return t.to(torch.float32).to(torch.bfloat16).to(torch.float64)


class RoundBoth(torch.autograd.Function):
    """Round a value and its gradient: a bfloat16 activation whose gradient buffer is bfloat16."""

    @staticmethod
    def forward(ctx, x):
        return bf16(x)

    @staticmethod
    def backward(ctx, g):
        return bf16(g)


class RoundFwd(torch.autograd.Function):
    """Round a value only: a bfloat16 copy whose gradient is float (norm outputs, weight compute copies)."""

    @staticmethod
    def forward(ctx, x):
        return bf16(x)

    @staticmethod
    def backward(ctx, g):
        return g


class Policy:
    def __init__(self, on):
        self.on = on

    def both(self, x):
        return RoundBoth.apply(x) if self.on else x

    def fwd(self, x):
        return RoundFwd.apply(x) if self.on else x


def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


def attention(q, k, v, n_rep):
    """q [B, T, H, D], k/v [B, T, Hkv, D] -> [B, T, H*D] (causal, float)."""
    b, t, h, d = q.shape
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    k = k.repeat_interleave(n_rep, dim=1)
    v = v.repeat_interleave(n_rep, dim=1)
    s = (q @ k.transpose(2, 3)) / math.sqrt(d)
    mask = torch.arange(t)[None, :] > torch.arange(t)[:, None]
    p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
    return (p @ v).transpose(1, 2).reshape(b, t, h * d)


class AttentionBF16(torch.autograd.Function):
    """Causal attention with bfloat16 q/k/v's rounding points; q [B, H, T, D],
    k/v [B, H, T, D] (kv heads repeated) -> out [B, H, T, D], unrounded (the
    caller rounds it). The backward pass follows the contract, not autograd
    of the forward (which would differentiate through the rounding)."""

    @staticmethod
    def forward(ctx, q, k, v):
        t, d = q.shape[2], q.shape[3]
        scale = 1.0 / math.sqrt(d)
        s = (q @ k.transpose(2, 3)) * scale
        mask = torch.arange(t)[None, :] > torch.arange(t)[:, None]
        p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        out = bf16(p) @ v
        ctx.save_for_backward(q, k, v, p, bf16(out))
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, g):
        q, k, v, p, out = ctx.saved_tensors
        delta = (g * out).sum(-1, keepdim=True)
        ds = bf16(p * (g @ v.transpose(2, 3) - delta))
        dq = ctx.scale * (ds @ k)
        dk = ctx.scale * (ds.transpose(2, 3) @ q)
        dv = bf16(p).transpose(2, 3) @ g
        return dq, dk, dv


def attention_bf16(q, k, v, n_rep):
    """attention() with bfloat16 q/k/v's rounding points (AttentionBF16)."""
    b, t, h, d = q.shape
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    # GQA: the repeat's backward sums the group's dk/dv in float, as gotune does.
    k = k.repeat_interleave(n_rep, dim=1)
    v = v.repeat_interleave(n_rep, dim=1)
    return AttentionBF16.apply(q, k, v).transpose(1, 2).reshape(b, t, h * d)


def forward(P, cfg, ids, pol, lora, linear=None):
    """Logits [B, T, V] of LlamaForCausalLM under policy pol. lora maps a
    projection path to (A, B, scale); linear(path, x), when given,
    replaces the projections (qlora.py's quantized products)."""
    H = cfg["num_attention_heads"]
    Hkv = cfg["num_key_value_heads"]
    D = cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    b, t = ids.shape

    def default_linear(path, x):
        y = x @ pol.fwd(P[path + ".weight"]).T
        if path in lora:
            a, bm, s = lora[path]
            xa = pol.both(s * (x @ pol.fwd(a).T))
            y = y + xa @ pol.fwd(bm).T
        return pol.both(y)

    linear = linear or default_linear
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    fr = torch.arange(t, dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat((fr, fr), dim=-1)
    # gotune's tables are float32 (host-built from float64 angles).
    cos, sin = emb.cos().float().double(), emb.sin().float().double()

    h = P["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        x = pol.fwd(rms_norm(h, P[pre + "input_layernorm.weight"], eps))
        q = linear(pre + "self_attn.q_proj", x).view(b, t, H, D)
        k = linear(pre + "self_attn.k_proj", x).view(b, t, Hkv, D)
        v = linear(pre + "self_attn.v_proj", x).view(b, t, Hkv, D)
        q, k = pol.both(rope(q, cos, sin)), pol.both(rope(k, cos, sin))
        a = pol.both((attention_bf16 if pol.on else attention)(q, k, v, H // Hkv))
        h = h + pol.both(linear(pre + "self_attn.o_proj", a))
        x = pol.fwd(rms_norm(h, P[pre + "post_attention_layernorm.weight"], eps))
        g = linear(pre + "mlp.gate_proj", x)
        u = linear(pre + "mlp.up_proj", x)
        h = h + pol.both(linear(pre + "mlp.down_proj", pol.both(F.silu(g) * u)))
    x = pol.fwd(rms_norm(h, P["model.norm.weight"], eps))
    return linear("lm_head", x)


def load_rows(path):
    rows = [json.loads(l) for l in open(path)]
    ids = torch.tensor([r["input_ids"] for r in rows])
    labels = torch.tensor([r["labels"] for r in rows])
    return ids, labels


def run_steps(cfg, base, ids, labels, run, pol, lora_init, fwd=forward):
    """3 AdamW steps (constant LR, one batch per step); losses, grad norms."""
    P = {n: t.double() for n, t in base.items()}
    lora, trainable = {}, {}
    if lora_init is None:
        for n in P:
            P[n] = P[n].clone().requires_grad_(True)
            trainable[n] = P[n]
    else:
        s = run["method_config"]["lora_alpha"] / run["method_config"]["lora_r"]
        for path, (a, bm) in lora_init.items():
            a = a.double().clone().requires_grad_(True)
            bm = bm.double().clone().requires_grad_(True)
            lora[path] = (a, bm, s)
            trainable[path + ".lora_A"], trainable[path + ".lora_B"] = a, bm
            # Frozen base weights are stored in bfloat16.
        if pol.on:
            P = {n: bf16(t) for n, t in P.items()}
    decay = [p for n, p in trainable.items() if p.dim() >= 2]
    no_decay = [p for n, p in trainable.items() if p.dim() < 2]
    groups = [g for g in ({"params": decay, "weight_decay": run["weight_decay"]},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=run["lr"], betas=tuple(run["betas"]), eps=run["eps"])
    losses, norms = [], []
    for _ in range(run["steps"]):
        opt.zero_grad()
        logits = fwd(P, cfg, ids, pol, lora)
        v = logits.shape[-1]
        tgt = labels[:, 1:].reshape(-1)
        count = int((tgt != -100).sum())
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), tgt, ignore_index=-100, reduction="sum") / count
        loss.backward()
        losses.append(loss.item())
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(trainable.values()), run["max_grad_norm"])))
        opt.step()
    return losses, norms


def lora_adapter_init():
    """methods/lora's initial adapter: projection path -> (A, B)."""
    adapter = hfio.read_safetensors(os.path.join(HERE, "methods", "lora", "adapter_model.safetensors"))
    lora_init = {}
    for name, t in adapter.items():
        path = name[len("base_model.model."):].rsplit(".lora_", 1)[0]
        a, bm = lora_init.get(path, (None, None))
        if ".lora_A." in name:
            a = t
        else:
            bm = t
        lora_init[path] = (a, bm)
    return lora_init


def main():
    base_dir = os.path.join(HERE, "llama-gqa")
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    base = hfio.read_safetensors(os.path.join(base_dir, "model.safetensors"))
    ids, labels = load_rows(os.path.join(base_dir, "data.jsonl"))
    meta = json.load(open(os.path.join(base_dir, "meta.json")))
    full = [r for r in meta["runs"] if r["name"] == "full"][0]
    lmeta = json.load(open(os.path.join(HERE, "methods", "lora", "meta.json")))
    lrun = lmeta["run"]
    lora_init = lora_adapter_init()
    out = {"model": "llama-gqa", "runs": {}}
    for name, run, init, src in (("full", full, None, "llama-gqa run full"),
                                 ("lora", lrun, lora_init, "methods/lora (its adapter folder as the initial adapter)")):
        for s in ("schedule", "warmup_steps", "grad_accum", "shuffle"):
            assert (run[s], s) in ((("constant", s)), (0, s), (1, s), (False, s)), (name, s, run[s])
        bl, bn = run_steps(cfg, base, ids, labels, run, Policy(True), init)
        el, en = run_steps(cfg, base, ids, labels, run, Policy(False), init)
        out["runs"][name] = {"source": src, "losses": bl, "grad_norms": bn,
                             "exact_losses": el, "exact_grad_norms": en}
    os.makedirs(os.path.join(HERE, "bf16"), exist_ok=True)
    hfio.write_json(os.path.join(HERE, "bf16", "golden.json"), out)


if __name__ == "__main__":
    main()
