"""Hugging Face file formats for the golden generators: safetensors and config.json.

The `safetensors` Python package is not available on the machines this
project runs on, so this module writes the format directly from its
specification:

    8 bytes   little-endian uint64 N, the length of the JSON header
    N bytes   JSON object: name -> {"dtype", "shape", "data_offsets": [begin, end]}
              (offsets relative to the start of the data section), plus an
              optional "__metadata__" object of string -> string; padded with
              spaces so that the data section starts 8-byte aligned
    rest      the raw little-endian tensor bytes, back to back

Tensors are laid out in name order, so the same tensors always give the same
bytes (the generators must be reproducible byte for byte).
"""

import json
import os
import struct

import numpy as np
import torch

_DTYPES = {
    torch.float32: ("F32", "<f4"),
    torch.float64: ("F64", "<f8"),
    torch.int64: ("I64", "<i8"),
    torch.int32: ("I32", "<i4"),
    torch.uint8: ("U8", "|u1"),
}


def write_safetensors(path, tensors, metadata=None):
    """Write a dict name -> torch.Tensor as a safetensors file at path.

    The write goes through a temporary file and a rename so an interrupted
    run never leaves a truncated file behind.
    """
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _DTYPES:
            raise TypeError("%s: unsupported dtype %s" % (name, t.dtype))
        code, np_dtype = _DTYPES[t.dtype]
        data = t.numpy().astype(np_dtype, copy=False).tobytes(order="C")
        header[name] = {
            "dtype": code,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    """Read a safetensors file written by write_safetensors (for self-checks)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    codes = {code: np_dtype for code, np_dtype in _DTYPES.values()}
    for name, e in header.items():
        b, end = e["data_offsets"]
        arr = np.frombuffer(raw[base + b : base + end], dtype=codes[e["dtype"]])
        out[name] = torch.from_numpy(arr.copy().reshape(e["shape"]))
    return out


def write_json(path, obj, final_newline=True):
    """Write obj with sorted keys and indent 2.

    transformers ends config.json with a newline; PEFT writes
    adapter_config.json the same way but without one (final_newline=False).
    """
    text = json.dumps(obj, indent=2, sort_keys=True) + ("\n" if final_newline else "")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_jsonl(path, rows):
    """Write one compact JSON object per line (the pre-tokenized data format)."""
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


TRANSFORMERS_VERSION = "4.46.0"


def llama_config(arch, model_type, vocab, hidden, layers, heads, kv_heads, inter,
                 max_pos, theta, eps, tied, bos=1, eos=2):
    """config.json of a LlamaForCausalLM / MistralForCausalLM, as transformers 4.46 writes it."""
    return {
        "architectures": [arch],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "head_dim": hidden // heads,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "mlp_bias": False,
        "model_type": model_type,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": eps,
        "rope_scaling": None,
        "rope_theta": float(theta),
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }


def mistral_config(vocab, hidden, layers, heads, kv_heads, inter, max_pos, theta, eps, tied, sliding_window):
    """config.json of a MistralForCausalLM (transformers' MistralConfig keys).

    LlamaConfig's keys less attention_bias, mlp_bias and pretraining_tp
    (Mistral has no biases), plus sliding_window, which applies to every
    layer.
    """
    c = llama_config("MistralForCausalLM", "mistral", vocab, hidden, layers, heads, kv_heads, inter,
                     max_pos, theta, eps, tied)
    for k in ("attention_bias", "mlp_bias", "pretraining_tp"):
        del c[k]
    c["sliding_window"] = sliding_window
    return dict(sorted(c.items()))


def qwen2_config(vocab, hidden, layers, heads, kv_heads, inter, max_pos, theta, eps,
                 tied, bos=1, eos=2):
    """config.json of a Qwen2ForCausalLM, as transformers 4.46 writes it.

    Qwen2 always has q/k/v biases (there is no attention_bias key), and its
    configs carry sliding_window even when use_sliding_window is false.
    """
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "max_window_layers": layers,
        "model_type": "qwen2",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": eps,
        "rope_scaling": None,
        "rope_theta": float(theta),
        "sliding_window": 4096,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


def qwen3_config(vocab, hidden, layers, heads, kv_heads, head_dim, inter, max_pos, theta, eps, tied):
    """config.json of a Qwen3ForCausalLM (transformers' Qwen3Config keys).

    head_dim is explicit (Qwen3 decouples it from hidden/heads);
    attention_bias false; no token defaults.
    """
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "head_dim": head_dim,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "max_window_layers": layers,
        "model_type": "qwen3",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": eps,
        "rope_scaling": None,
        "rope_theta": float(theta),
        "sliding_window": None,
        "tie_word_embeddings": tied,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab,
    }


def olmo2_config(vocab, hidden, layers, heads, kv_heads, inter, max_pos, theta, eps, tied):
    """config.json of an Olmo2ForCausalLM (transformers' Olmo2Config keys).

    LlamaConfig's keys less head_dim (hidden/heads), mlp_bias and
    pretraining_tp; Olmo2Config's pad 1 and no bos; eos the last token
    (Olmo2Config's 50279 is outside a tiny vocabulary).
    """
    c = llama_config("Olmo2ForCausalLM", "olmo2", vocab, hidden, layers, heads, kv_heads, inter,
                     max_pos, theta, eps, tied, bos=None, eos=vocab - 1)
    for k in ("head_dim", "mlp_bias", "pretraining_tp"):
        del c[k]
    c["pad_token_id"] = 1
    return dict(sorted(c.items()))


def granite_config(vocab, hidden, layers, heads, kv_heads, inter, max_pos, theta, eps, tied,
                   embedding_multiplier, residual_multiplier, attention_multiplier, logits_scaling):
    """config.json of a GraniteForCausalLM (transformers' GraniteConfig keys).

    LlamaConfig's keys less head_dim and pretraining_tp, plus Granite's
    four scalars.
    """
    c = llama_config("GraniteForCausalLM", "granite", vocab, hidden, layers, heads, kv_heads, inter,
                     max_pos, theta, eps, tied)
    for k in ("head_dim", "pretraining_tp"):
        del c[k]
    c.update(embedding_multiplier=float(embedding_multiplier), residual_multiplier=float(residual_multiplier),
             attention_multiplier=float(attention_multiplier), logits_scaling=float(logits_scaling))
    return dict(sorted(c.items()))


def _gemma_config(arch, model_type, vocab, hidden, layers, heads, kv_heads, head_dim, inter, max_pos, theta, eps,
                  query_pre_attn_scalar, sliding_window, **extra):
    """The keys Gemma2Config and Gemma3TextConfig share (tied embeddings by
    PretrainedConfig's default, no key; bos 2, eos 1, pad 0), plus extra."""
    c = {
        "architectures": [arch],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 2,
        "cache_implementation": "hybrid",
        "eos_token_id": 1,
        "head_dim": head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": inter,
        "max_position_embeddings": max_pos,
        "model_type": model_type,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pad_token_id": 0,
        "query_pre_attn_scalar": query_pre_attn_scalar,
        "rms_norm_eps": eps,
        "rope_theta": float(theta),
        "sliding_window": sliding_window,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
    c.update(extra)
    return dict(sorted(c.items()))


def gemma2_config(vocab, hidden, layers, heads, kv_heads, head_dim, inter, max_pos, theta, eps,
                  query_pre_attn_scalar, sliding_window, attn_softcap, final_softcap):
    """config.json of a Gemma2ForCausalLM (transformers' Gemma2Config keys, as
    google/gemma-2-2b's, with the unused hidden_act beside hidden_activation);
    no layer_types: the default alternation, layer 0 slides."""
    return _gemma_config("Gemma2ForCausalLM", "gemma2", vocab, hidden, layers, heads, kv_heads, head_dim, inter,
                         max_pos, theta, eps, query_pre_attn_scalar, sliding_window,
                         attn_logit_softcapping=attn_softcap, final_logit_softcapping=final_softcap,
                         hidden_act="gelu_pytorch_tanh")


def gemma3_config(vocab, hidden, layers, heads, kv_heads, head_dim, inter, max_pos, theta, local_theta,
                  rope_scaling, eps, query_pre_attn_scalar, sliding_window, sliding_window_pattern):
    """config.json of a Gemma3ForCausalLM (transformers' Gemma3TextConfig keys,
    as google/gemma-3-1b-it's): model_type gemma3_text, the layer pattern as
    sliding_window_pattern (one full layer every pattern), RoPE bases for
    global (rope_theta, rope_scaling) and sliding layers
    (rope_local_base_freq), no soft caps, eos [1, 106]."""
    return _gemma_config("Gemma3ForCausalLM", "gemma3_text", vocab, hidden, layers, heads, kv_heads, head_dim,
                         inter, max_pos, theta, eps, query_pre_attn_scalar, sliding_window,
                         attn_logit_softcapping=None, final_logit_softcapping=None, eos_token_id=[1, 106],
                         rope_local_base_freq=float(local_theta), rope_scaling=rope_scaling,
                         sliding_window_pattern=sliding_window_pattern)


def phi3_config(vocab, hidden, layers, heads, kv_heads, inter, max_pos, original_max_pos, theta, eps, tied,
                partial_rotary_factor, short_factor, long_factor, sliding_window, bos=1, eos=2):
    """config.json of a Phi3ForCausalLM (transformers' Phi3Config keys, as Phi-4-mini's has them).

    LlamaConfig's keys less head_dim and pretraining_tp, plus longrope
    scaling ({"type": "longrope", "short_factor", "long_factor"}),
    original_max_position_embeddings at the top level, partial_rotary_factor,
    sliding_window and the dropouts (0); attention_bias and mlp_bias false,
    as Phi-3's projections have no biases.
    """
    c = llama_config("Phi3ForCausalLM", "phi3", vocab, hidden, layers, heads, kv_heads, inter,
                     max_pos, theta, eps, tied, bos=bos, eos=eos)
    for k in ("head_dim", "pretraining_tp"):
        del c[k]
    c.update(embd_pdrop=0.0, resid_pdrop=0.0, original_max_position_embeddings=original_max_pos, pad_token_id=eos,
             partial_rotary_factor=float(partial_rotary_factor), sliding_window=sliding_window,
             rope_scaling={"long_factor": [float(x) for x in long_factor],
                           "short_factor": [float(x) for x in short_factor], "type": "longrope"})
    return dict(sorted(c.items()))


def glm_config(arch, model_type, vocab, hidden, layers, heads, kv_heads, head_dim, inter, max_pos, theta, eps,
               tied, partial_rotary_factor, eos):
    """config.json of a GlmForCausalLM / Glm4ForCausalLM (GlmConfig's and Glm4Config's keys).

    LlamaConfig's keys less bos_token_id, mlp_bias, pretraining_tp and
    rope_scaling; head_dim explicit, attention_bias true (q/k/v biases),
    an eos list, partial_rotary_factor.
    """
    c = llama_config(arch, model_type, vocab, hidden, layers, heads, kv_heads, inter, max_pos, theta, eps, tied,
                     eos=eos)
    for k in ("bos_token_id", "mlp_bias", "pretraining_tp", "rope_scaling"):
        del c[k]
    c.update(head_dim=head_dim, attention_bias=True, pad_token_id=eos[0],
             partial_rotary_factor=float(partial_rotary_factor))
    return dict(sorted(c.items()))


def gpt2_config(vocab, n_embd, n_layer, n_head, n_positions, eps, bos, eos):
    """config.json of a GPT2LMHeadModel, as transformers 4.46 writes it.

    Dropouts are 0 (the released GPT-2 has 0.1): most golden sets are
    computed without dropout (gpt2-dropout overrides them). There is no
    tie_word_embeddings key: transformers only writes keys that differ from
    the defaults, and GPT-2 ties lm_head to wte by default, so a loader must
    treat the absent key as true.
    """
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.0,
        "bos_token_id": bos,
        "embd_pdrop": 0.0,
        "eos_token_id": eos,
        "initializer_range": 0.02,
        "layer_norm_epsilon": eps,
        "model_type": "gpt2",
        "n_embd": n_embd,
        "n_head": n_head,
        "n_inner": None,
        "n_layer": n_layer,
        "n_positions": n_positions,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
