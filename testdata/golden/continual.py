"""Continual-learning goldens (issue 12): EWC and O-LoRA on llama-gqa.

EWC (full fine-tuning, every tensor of llama-gqa):
- fisher.<name>: the diagonal empirical Fisher at the base weights θ*,
  the mean over the two lines of data.jsonl of the squared gradient of
  each line's own mean token loss (one backward pass per line);
- theta.<name>: θ = θ* + 0.02·N(0, 1), where the penalty is evaluated;
- ewc_penalty: λ·Σ F·(θ − θ*)², λ = EWC_LAMBDA;
- ewc_grad.<name>: the gradient at θ of the batch's mean loss (both lines,
  11 counted tokens) plus the penalty: what gotune's trainer holds before
  clipping with the EWC penalty hooked in.

O-LoRA (methods/lora: r 4, alpha 8, q_proj and v_proj):
- old<k>.<path>.lora_A / lora_B (k = 0, 1): two earlier tasks' adapters,
  N(0, 0.2²); their updates s·B·A are summed into the frozen base weights;
- the current adapter is methods/lora's adapter folder;
- olora_penalty: λ₁·Σ_k Σ_layers ‖A_old·A_newᵀ‖²_F, λ₁ = OLORA_LAMBDA;
- olora_grad.<adapter tensor name>: the gradient of the batch's mean loss
  (with the old updates summed in) plus the penalty.

Everything in float64 from the float32 inputs, rounded once.
Run: /usr/bin/python3 testdata/golden/continual.py  (writes continual/golden.safetensors
and continual/settings.json; not meta.json, which marks a model golden set)
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

import hfio
from bf16 import Policy, forward, load_rows

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)

EWC_LAMBDA = 50.0
OLORA_LAMBDA = 0.5
EXACT = Policy(False)


def mean_loss(P, cfg, ids, labels, lora):
    logits = forward(P, cfg, ids, EXACT, lora)
    v = logits.shape[-1]
    tgt = labels[:, 1:].reshape(-1)
    count = int((tgt != -100).sum())
    return F.cross_entropy(logits[:, :-1].reshape(-1, v), tgt, ignore_index=-100, reduction="sum") / count


def ewc(cfg, base, ids, labels, rng, out):
    star = {n: t.double() for n, t in base.items()}
    fisher = {n: torch.zeros_like(t) for n, t in star.items()}
    for row in range(ids.shape[0]):
        P = {n: t.clone().requires_grad_(True) for n, t in star.items()}
        mean_loss(P, cfg, ids[row:row + 1], labels[row:row + 1], {}).backward()
        for n in P:
            fisher[n] += P[n].grad.pow(2) / ids.shape[0]
    names = sorted(star)
    theta = {n: (star[n] + 0.02 * torch.from_numpy(rng.standard_normal(tuple(star[n].shape)))).float().double() for n in names}
    P = {n: theta[n].clone().requires_grad_(True) for n in names}
    # gotune keeps the Fisher in float32: the penalty uses the rounded one.
    f32 = {n: fisher[n].float().double() for n in names}
    penalty = EWC_LAMBDA * sum((f32[n] * (P[n] - star[n]).pow(2)).sum() for n in names)
    (mean_loss(P, cfg, ids, labels, {}) + penalty).backward()
    for n in names:
        out["fisher." + n] = fisher[n].float()
        out["theta." + n] = theta[n].float()
        out["ewc_grad." + n] = P[n].grad.float()
    out["ewc_penalty"] = torch.tensor([penalty.item()], dtype=torch.float32)
    return penalty.item()


def olora(cfg, base, ids, labels, rng, out):
    meta = json.load(open(os.path.join(HERE, "methods", "lora", "meta.json")))
    mc = meta["run"]["method_config"]
    s = mc["lora_alpha"] / mc["lora_r"]
    adapter = hfio.read_safetensors(os.path.join(HERE, "methods", "lora", "adapter_model.safetensors"))
    P = {n: t.double() for n, t in base.items()}
    paths = sorted({name[len("base_model.model."):].rsplit(".lora_", 1)[0] for name in adapter})
    old = []
    for k in range(2):
        layers = {}
        for path in paths:
            out_f, in_f = P[path + ".weight"].shape
            a = torch.from_numpy(0.2 * rng.standard_normal((mc["lora_r"], in_f))).float()
            b = torch.from_numpy(0.2 * rng.standard_normal((out_f, mc["lora_r"]))).float()
            out["old%d.%s.lora_A" % (k, path)] = a
            out["old%d.%s.lora_B" % (k, path)] = b
            layers[path] = a.double()
            # Summed at inference: the old update joins the frozen weight.
            P[path + ".weight"] = P[path + ".weight"] + s * (b.double() @ a.double())
        old.append(layers)
    lora, params = {}, {}
    for path in paths:
        a = adapter["base_model.model.%s.lora_A.weight" % path].double().clone().requires_grad_(True)
        b = adapter["base_model.model.%s.lora_B.weight" % path].double().clone().requires_grad_(True)
        lora[path] = (a, b, s)
        params["base_model.model.%s.lora_A.weight" % path] = a
        params["base_model.model.%s.lora_B.weight" % path] = b
    penalty = OLORA_LAMBDA * sum((layers[p] @ lora[p][0].T).pow(2).sum() for layers in old for p in paths)
    (mean_loss(P, cfg, ids, labels, lora) + penalty).backward()
    for n, t in params.items():
        out["olora_grad." + n] = t.grad.float()
    out["olora_penalty"] = torch.tensor([penalty.item()], dtype=torch.float32)
    return penalty.item()


def main():
    base_dir = os.path.join(HERE, "llama-gqa")
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    base = hfio.read_safetensors(os.path.join(base_dir, "model.safetensors"))
    ids, labels = load_rows(os.path.join(base_dir, "data.jsonl"))
    rng = np.random.RandomState(12)
    out = {}
    ep = ewc(cfg, base, ids, labels, rng, out)
    op = olora(cfg, base, ids, labels, rng, out)
    os.makedirs(os.path.join(HERE, "continual"), exist_ok=True)
    hfio.write_safetensors(os.path.join(HERE, "continual", "golden.safetensors"), out)
    hfio.write_json(os.path.join(HERE, "continual", "settings.json"), {
        "model": "llama-gqa", "data": "llama-gqa/data.jsonl", "lora": "methods/lora",
        "ewc_lambda": EWC_LAMBDA, "olora_lambda": OLORA_LAMBDA,
        "lora_r": 4, "lora_alpha": 8, "lora_targets": ["q_proj", "v_proj"],
    })
    print("ewc penalty %.6g, olora penalty %.6g" % (ep, op))


if __name__ == "__main__":
    main()
