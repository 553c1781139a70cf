"""Generate the tiny random LLaMA and the toy data set for CLI smoke runs.

Run from anywhere:  /usr/bin/python3 testdata/tiny/gen.py
It writes, reproducibly (same bytes every time):
  testdata/tiny/llama/config.json, model.safetensors
      LlamaForCausalLM: vocab 256, hidden 64, 2 layers, 4 heads, 2 KV heads,
      intermediate 176, max_position_embeddings 128, untied, float32,
      initialised as transformers does (normal std 0.02, norms 1)
  testdata/tiny/data.jsonl
      64 pre-tokenized lines of 16-48 tokens with learnable structure
      (repeated short cycles, arithmetic progressions, mirrored runs), each
      starting with BOS (1). Even lines carry labels with a masked 4-token
      prompt; odd lines have none (train on every token).
These are not golden values: nothing is compared against them. They give
`gotune train` something small to learn quickly (the loss should fall well
below ln 256 = 5.55 within a few hundred steps).
"""

import os
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hfio  # noqa: E402

VOCAB = 256
BOS = 1


def weights(cfg, rng):
    d, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg["head_dim"]
    kv = cfg["num_key_value_heads"] * hd
    std = cfg["initializer_range"]

    def normal(*shape):
        return torch.from_numpy((std * rng.standard_normal(shape)).astype(np.float32))

    w = {"model.embed_tokens.weight": normal(v, d)}
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        w[pre + "input_layernorm.weight"] = torch.ones(d)
        w[pre + "self_attn.q_proj.weight"] = normal(cfg["num_attention_heads"] * hd, d)
        w[pre + "self_attn.k_proj.weight"] = normal(kv, d)
        w[pre + "self_attn.v_proj.weight"] = normal(kv, d)
        w[pre + "self_attn.o_proj.weight"] = normal(d, cfg["num_attention_heads"] * hd)
        w[pre + "post_attention_layernorm.weight"] = torch.ones(d)
        w[pre + "mlp.gate_proj.weight"] = normal(inter, d)
        w[pre + "mlp.up_proj.weight"] = normal(inter, d)
        w[pre + "mlp.down_proj.weight"] = normal(d, inter)
    w["model.norm.weight"] = torch.ones(d)
    w["lm_head.weight"] = normal(v, d)
    return w


def sequence(rng, kind, n):
    """n tokens in [3, VOCAB) following one of three learnable patterns."""
    if kind == 0:  # a short cycle repeated: a b c a b c ...
        cycle = rng.randint(3, VOCAB, size=rng.randint(2, 7))
        return [int(cycle[i % len(cycle)]) for i in range(n)]
    if kind == 1:  # an arithmetic progression wrapping inside [3, VOCAB)
        start, step = rng.randint(3, VOCAB), rng.randint(1, 5)
        return [int(3 + (start - 3 + i * step) % (VOCAB - 3)) for i in range(n)]
    # a run and its mirror image, repeated: a b c c b a a b c ...
    run = list(rng.randint(3, VOCAB, size=rng.randint(3, 6)))
    unit = run + run[::-1]
    return [int(unit[i % len(unit)]) for i in range(n)]


def data(rng, lines=64):
    rows = []
    for i in range(lines):
        n = int(rng.randint(16, 49))
        ids = [BOS] + sequence(rng, i % 3, n - 1)
        row = {"input_ids": ids}
        if i % 2 == 0:
            row["labels"] = [-100] * 4 + ids[4:]
        rows.append(row)
    return rows


def main():
    rng = np.random.RandomState(4242)
    cfg = hfio.llama_config("LlamaForCausalLM", "llama", vocab=VOCAB, hidden=64, layers=2, heads=4,
                            kv_heads=2, inter=176, max_pos=128, theta=10000.0, eps=1e-5, tied=False,
                            bos=BOS, eos=2)
    folder = os.path.join(HERE, "llama")
    os.makedirs(folder, exist_ok=True)
    hfio.write_json(os.path.join(folder, "config.json"), cfg)
    hfio.write_safetensors(os.path.join(folder, "model.safetensors"), weights(cfg, rng), {"format": "pt"})
    hfio.write_jsonl(os.path.join(HERE, "data.jsonl"), data(rng))


if __name__ == "__main__":
    main()
