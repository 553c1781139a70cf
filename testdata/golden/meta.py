"""Golden values for one meta-learning step (engine/fewshot) on a tiny LLaMA
with LoRA, computed in float64 with PyTorch autograd.

Model llama-gqa/ with the LoRA adapter of methods/lora/ (r 4, alpha 8,
q_proj and v_proj, non-zero A and B) as the meta-parameters θ. Two tasks
built from the two lines of llama-gqa/data.jsonl: task a adapts on line 1
and is queried on line 2, task b the other way round. Inner loop: 2 steps of
plain SGD (lr 0.5, no clipping) on the support line's mean token loss. Outer
step size 0.5 (the first of 2 meta-steps: no annealing yet):

  reptile  θ' = θ + 0.5·(mean(φ_a, φ_b) − θ)
  fomaml   θ' = θ − 0.5·mean(∇L_query_a(φ_a), ∇L_query_b(φ_b))   (SGD)

Writes meta/golden.safetensors: reptile.<name> and fomaml.<name> (θ' for
each LoRA tensor), support_losses [2] (each task's loss at θ), query_losses
[2] (each task's query loss at its φ).

Run: /usr/bin/python3 testdata/golden/meta.py
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import hfio  # noqa: E402
import reference as ref  # noqa: E402
from methods import LoRA  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)

INNER_STEPS, INNER_LR, OUTER_LR = 2, 0.5, 0.5


def main():
    base_dir = os.path.join(HERE, "llama-gqa")
    with open(os.path.join(base_dir, "config.json")) as f:
        cfg = json.load(f)
    base = {n: t.double() for n, t in hfio.read_safetensors(os.path.join(base_dir, "model.safetensors")).items()}
    theta = {n: t.double() for n, t in
             hfio.read_safetensors(os.path.join(HERE, "methods", "lora", "adapter_model.safetensors")).items()}
    with open(os.path.join(base_dir, "data.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    lines = [(torch.tensor([r["input_ids"]]), torch.tensor([r["labels"]])) for r in rows]
    method = LoRA(r=4, alpha=8, targets=("q_proj", "v_proj"))
    names = sorted(theta)

    def loss_and_grad(values, line):
        params = dict(base)
        leaves = {n: values[n].clone().requires_grad_(True) for n in names}
        params.update(leaves)
        ids, labels = line
        logits = ref.forward(params, cfg, ids, method.hooks(params, cfg))
        loss_sum, counted = ref.causal_lm_loss_sum(logits, labels)
        loss = loss_sum / counted
        loss.backward()
        return loss.item(), {n: leaves[n].grad.detach() for n in names}

    tasks = [(lines[0], lines[1]), (lines[1], lines[0])]
    phis, query_grads, support_losses, query_losses = [], [], [], []
    for support, query in tasks:
        phi = dict(theta)
        for k in range(INNER_STEPS):
            loss, g = loss_and_grad(phi, support)
            if k == 0:
                support_losses.append(loss)
            phi = {n: phi[n] - INNER_LR * g[n] for n in names}
        phis.append(phi)
        loss, g = loss_and_grad(phi, query)
        query_losses.append(loss)
        query_grads.append(g)

    out = {}
    for n in names:
        mean_phi = sum(p[n] for p in phis) / len(phis)
        mean_g = sum(g[n] for g in query_grads) / len(query_grads)
        out["reptile." + n] = theta[n] + OUTER_LR * (mean_phi - theta[n])
        out["fomaml." + n] = theta[n] - OUTER_LR * mean_g
    out["support_losses"] = torch.tensor(support_losses, dtype=torch.float64)
    out["query_losses"] = torch.tensor(query_losses, dtype=torch.float64)
    out = {n: t.to(torch.float32) for n, t in sorted(out.items())}
    os.makedirs(os.path.join(HERE, "meta"), exist_ok=True)
    hfio.write_safetensors(os.path.join(HERE, "meta", "golden.safetensors"), out,
                           {"generator": "testdata/golden/meta.py", "torch": torch.__version__.split("+")[0]})
    print("support losses", support_losses, "query losses", query_losses)


if __name__ == "__main__":
    main()
