"""QLoRA goldens: bitsandbytes' 4-bit and int8 weight quantization
reimplemented in PyTorch, 3-step QLoRA trajectories on llama-gqa, and a
QLoRA adapter merged into the dequantized base.

The reimplementation follows bitsandbytes' functional.py (quantize_4bit,
dequantize_4bit, quantize_blockwise, create_dynamic_map,
int8_vectorwise_quant) and csrc/kernels.cu (kQuantizeBlockwise,
kDequantizeBlockwise, dQuantizeNF4, dQuantizeFP4, dQuantize<0>), written
independently of gotune's Go code (nearest-code searches here are
vectorised comparisons and searchsorted, not decision trees):

- a weight [rows, cols] is a flat row-major array cut into blocks of 64
  values; absmax = max|x| per block (float32); each value x is coded from
  x·(1/absmax) (float32 reciprocal, then product);
- NF4: the published code book (QLoRA paper, appendix E; checked below
  against the table as printed), code = number of float32 midpoints
  (bitsandbytes' literal thresholds) strictly below x; FP4: sign bit from
  x < 0, magnitude by the midpoints of bitsandbytes' e2m1 magnitudes;
- two codes per byte, the first value in the HIGH nibble (checked on a
  hand-worked example below);
- double quantization: offset = mean(absmax), then the centred absmax
  quantized with the signed dynamic map in blocks of 256 (nearest entry,
  float32 midpoints, ties to the even index as dQuantize<0>'s binary
  search resolves them); dequantized absmax = map[q]·scale + offset;
- dequantized weight = code[q]·absmax (float32); the compute dtype is
  bfloat16, so products read bf16(weight);
- int8: per row absmax, code = round_half_even(x·(127/absmax)), value
  (code/127)·absmax.

Two documented departures, both also in gotune: the dynamic map and the
offset are computed in float64 and rounded once (bitsandbytes' float32
torch.linspace and torch.mean differ in the last bit depending on the
PyTorch build; the count of differing map entries on this machine is
recorded in the output).

QLoRA trajectories (qlora/golden.json): the LoRA run of methods/lora with
every decoder projection (q,k,v,o,gate,up,down; lm_head stays float32 as
transformers leaves it) NF4-quantized with double quantization, 3 AdamW
steps, under gotune's two precision policies:
- fp32: a quantized projection computes bf16(x)·bf16(Wdq)ᵀ accumulated
  without rounding its output (float64 here, float32 in gotune), and its
  input gradient bf16(dy)·bf16(Wdq); the LoRA branch and everything else
  in float;
- bf16: bf16.py's policy with the dequantized base weights, quantized
  from the bfloat16-stored base (as transformers quantizes a
  torch_dtype=bfloat16 checkpoint).
Merge (qlora/quant.safetensors, merged.*): the same adapter merged into
the float32 dequantized base, W = Wdq + s·B·A (float64, rounded once).

bitsandbytes checkpoints (qlora-bnb-nf4/, qlora-bnb-fp4/): llama-gqa as
transformers saves it after from_pretrained(quantization_config=
BitsAndBytesConfig(load_in_4bit=True, ...)) — config.json with the
config's to_dict() under quantization_config, and per quantized Linear
the keys of bitsandbytes' Params4bit state dict (QuantState.as_dict
(packed=True)): "weight" (uint8 [ceil(n/2), 1], the packed codes),
"weight.absmax" (float32 per block, or uint8 codes when nested),
"weight.quant_map" (float32 [16]), when nested "weight.nested_absmax"
(float32 per 256 blocks) and "weight.nested_quant_map" (float32 [256]),
and "weight.quant_state.bitsandbytes__<type>": the UTF-8 bytes of
json.dumps of the non-tensor items (quant_type, blocksize, dtype, shape,
and when nested nested_blocksize, nested_dtype, nested_offset) as a uint8
tensor. nf4 is double quantized, fp4 is not. Other tensors stay float32.

Run: /usr/bin/python3 testdata/golden/qlora.py
"""

import json
import os

import numpy as np
import torch

import bf16 as b16
import hfio

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)
f32 = np.float32

# The NF4 code book as printed in the QLoRA paper (appendix E).
NF4_PUBLISHED = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                 -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
# bitsandbytes' dQuantizeNF4 thresholds (float literals of kernels.cu).
NF4_THRESHOLDS = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
                  -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
                  0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                  0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
# FP4 (e2m1, bias 3, normalised by 12): magnitude of the low three bits.
FP4_MAGNITUDES = [0.0, 0.0625 / 12, 8 / 12, 12 / 12, 4 / 12, 6 / 12, 2 / 12, 3 / 12]
FP4_THRESHOLDS = [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333]
FP4_BY_RANK = [0, 1, 6, 7, 4, 5, 2, 3]  # codes in increasing magnitude
BLOCK, NESTED = 64, 256


def check_code_books():
    code = np.array(NF4_PUBLISHED, dtype=np.float64)
    mids = f32((code[:-1] + code[1:]) / 2)
    assert (mids == np.array(NF4_THRESHOLDS, dtype=f32)).all(), "NF4 thresholds are not the code book's midpoints"
    assert code[7] == 0 and code[0] == -1 and code[15] == 1
    mags = sorted(FP4_MAGNITUDES)
    assert [FP4_MAGNITUDES[c] for c in FP4_BY_RANK] == mags
    for t, lo, hi in zip(FP4_THRESHOLDS, mags[:-1], mags[1:]):
        assert abs(t - (lo + hi) / 2) < 1e-6, (t, lo, hi)


def block_absmax(x, size):
    n = x.numel()
    pad = (-n) % size
    xp = torch.cat([x.abs(), torch.zeros(pad)]) if pad else x.abs()
    return xp.view(-1, size).max(dim=1).values


def nf4_codes(xn):
    t = torch.tensor(NF4_THRESHOLDS, dtype=torch.float32)
    return (xn[:, None] > t[None, :]).sum(dim=1)


def fp4_codes(xn):
    t = torch.tensor(FP4_THRESHOLDS, dtype=torch.float32)
    rank = (xn.abs()[:, None] > t[None, :]).sum(dim=1)
    return torch.tensor(FP4_BY_RANK)[rank] + 8 * (xn < 0).long()


def code_book(fmt):
    if fmt == "nf4":
        return torch.tensor(NF4_PUBLISHED, dtype=torch.float32)
    m = torch.tensor(FP4_MAGNITUDES, dtype=torch.float32)
    return torch.cat([m, -m])


def pack(codes):
    """Two 4-bit codes per byte, the first in the high nibble."""
    c = codes.long()
    if c.numel() % 2:
        c = torch.cat([c, torch.zeros(1, dtype=torch.long)])
    return c[0::2] * 16 + c[1::2]


def unpack(packed, n):
    out = torch.stack([packed // 16, packed % 16], dim=1).flatten()
    return out[:n]


def dynamic_map():
    """bitsandbytes' signed dynamic map, float64 then rounded once."""
    data = []
    for i in range(7):
        n = 2 ** i + 1
        b = [0.1 + (1.0 - 0.1) * j / (n - 1) for j in range(n)]
        means = [(b[j] + b[j + 1]) / 2 for j in range(n - 1)]
        data += [10.0 ** (i - 6) * m for m in means]
        data += [-10.0 ** (i - 6) * m for m in means]
    data += [0.0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float64).float()


def dynamic_map_torch():
    """The same map as bitsandbytes builds it (float32 torch.linspace)."""
    data = []
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1)
        m = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * m).tolist()
        data += (-(10 ** (-6 + i)) * m).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data)


def nearest_dynamic(code, x):
    """dQuantize<0>: nearest of the two entries around x by the float32
    midpoint; a value on the midpoint takes the even index."""
    hi = torch.searchsorted(code, x).clamp(1, 255)  # code[hi-1] < x <= code[hi]
    lo = hi - 1
    mid = ((code[lo] + code[hi]) * 0.5).float()
    pick = torch.where(x > mid, hi, torch.where(x < mid, lo, torch.where(lo % 2 == 0, lo, hi)))
    pick = torch.where(x <= code[0], torch.zeros_like(pick), pick)
    return torch.where(x > code[255], torch.full_like(pick, 255), pick)


def quantize_4bit(w, fmt, double):
    x = w.flatten().float()
    n = x.numel()
    absmax = block_absmax(x, BLOCK)
    inv = 1.0 / absmax
    xn = x * inv.repeat_interleave(BLOCK)[:n]
    codes = nf4_codes(xn) if fmt == "nf4" else fp4_codes(xn)
    q = {"codes": codes, "packed": pack(codes), "code": code_book(fmt)}
    if not double:
        q["absmax"] = absmax
        return q
    offset = absmax.double().mean().float()
    centred = absmax - offset
    scale = block_absmax(centred, NESTED)
    cn = centred * (1.0 / scale).repeat_interleave(NESTED)[: centred.numel()]
    dmap = dynamic_map()
    q.update(qabsmax=nearest_dynamic(dmap, cn), nested_absmax=scale, nested_code=dmap, offset=offset)
    return q


def absmaxes(q):
    if "absmax" in q:
        return q["absmax"]
    s = q["nested_absmax"].repeat_interleave(NESTED)[: q["qabsmax"].numel()]
    return q["nested_code"][q["qabsmax"]] * s + q["offset"]


def dequantize_4bit(q, n):
    codes = unpack(q["packed"], n)
    return q["code"][codes] * absmaxes(q).repeat_interleave(BLOCK)[:n]


def quantize_int8(w):
    absmax = w.abs().max(dim=1).values
    scale = torch.where(absmax > 0, 127.0 / absmax, torch.zeros_like(absmax))
    codes = torch.round(w * scale[:, None])
    return {"codes": codes, "absmax": absmax}


def dequantize_int8(q):
    return (q["codes"] / 127.0) * q["absmax"][:, None]


def check_layout():
    """A hand-worked block: values 0.5, -1, 1, 0 with absmax 1 have NF4
    codes 12, 0, 15, 7 (0.5 lies below the 0.4407/0.5626 midpoint), packed
    as bytes 0xC0, 0xF7."""
    q = quantize_4bit(torch.tensor([[0.5, -1.0, 1.0, 0.0]]), "nf4", False)
    assert q["codes"].tolist() == [12, 0, 15, 7], q["codes"]
    assert q["packed"].tolist() == [0xC0, 0xF7], q["packed"]


def test_matrix(rng, rows, cols):
    w = rng.standard_normal((rows, cols)) * 0.05
    w[0, :] = 0.0  # an all-zero row (and blocks)
    w[rows // 2, cols // 3] = 0.9  # an outlier
    return torch.tensor(w, dtype=torch.float32)


def quant_goldens():
    rng = np.random.RandomState(11)
    out = {}
    for mname, (rows, cols) in (("a", (160, 136)), ("b", (37, 29))):
        w = test_matrix(rng, rows, cols)
        out["%s.w" % mname] = w
        n = w.numel()
        for fmt in ("nf4", "fp4"):
            for double in (False, True):
                key = "%s.%s%s" % (mname, fmt, "-dq" if double else "")
                q = quantize_4bit(w, fmt, double)
                out[key + ".packed"] = q["packed"].float()
                out[key + ".dequant"] = dequantize_4bit(q, n).view(rows, cols)
                out[key + ".absmax"] = absmaxes(q)
                if double:
                    out[key + ".qabsmax"] = q["qabsmax"].float()
                    out[key + ".nested_absmax"] = q["nested_absmax"]
                    out[key + ".offset"] = q["offset"].view(1)
        q = quantize_int8(w)
        out["%s.int8.codes" % mname] = q["codes"]
        out["%s.int8.absmax" % mname] = q["absmax"]
        out["%s.int8.dequant" % mname] = dequantize_int8(q)
    out["dynamic_map"] = dynamic_map()
    return out


QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class RoundGrad(torch.autograd.Function):
    """Identity forward; rounds the gradient to bfloat16 (the bf16 dy a
    quantized product's input gradient reads)."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, g):
        return b16.bf16(g)


def quantized_base(base):
    """The base with every decoder projection NF4 double-quantized and
    dequantized (float32 values, as dequantize_4bit returns them)."""
    out = dict(base)
    for name, t in base.items():
        if name.endswith(".weight") and name.split(".")[-2] in QUANTIZED:
            q = quantize_4bit(t, "nf4", True)
            out[name] = dequantize_4bit(q, t.numel()).view(t.shape)
    return out


def forward_fp32(P, cfg, ids, pol, lora):
    """b16.forward with the fp32 policy's quantized products."""
    def is_quant(path):
        return path.split(".")[-1] in QUANTIZED

    def linear(path, x):
        if is_quant(path):
            w = b16.bf16(P[path + ".weight"])
            y = RoundGrad.apply(b16.RoundFwd.apply(x) @ w.T)
        else:
            y = x @ P[path + ".weight"].T
        if path in lora:
            a, bm, s = lora[path]
            y = y + (s * (x @ a.T)) @ bm.T
        return y

    return b16.forward(P, cfg, ids, pol, lora, linear=linear)


BNB_VARIANTS = (("qlora-bnb-nf4", "nf4", True), ("qlora-bnb-fp4", "fp4", False))


def bnb_state(t, fmt, double):
    """One quantized Linear weight as bitsandbytes' Params4bit saves it."""
    q = quantize_4bit(t, fmt, double)
    out = {"weight": q["packed"].to(torch.uint8).view(-1, 1), "weight.quant_map": q["code"]}
    meta = {"quant_type": fmt, "blocksize": BLOCK, "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape)}
    if double:
        out["weight.absmax"] = q["qabsmax"].to(torch.uint8)
        out["weight.nested_absmax"] = q["nested_absmax"]
        out["weight.nested_quant_map"] = q["nested_code"]
        meta.update(nested_blocksize=NESTED, nested_dtype="float32", nested_offset=float(q["offset"]))
    else:
        out["weight.absmax"] = q["absmax"]
    blob = json.dumps(meta).encode("utf-8")
    out["weight.quant_state.bitsandbytes__" + fmt] = torch.tensor(list(blob), dtype=torch.uint8)
    return out


def write_bnb_checkpoints(cfg, base):
    for folder, fmt, double in BNB_VARIANTS:
        tensors = {}
        for name, t in base.items():
            if name.endswith(".weight") and name.split(".")[-2] in QUANTIZED:
                prefix = name[: -len("weight")]
                for k, v in bnb_state(t, fmt, double).items():
                    tensors[prefix + k] = v
            else:
                tensors[name] = t
        qcfg = dict(cfg)
        qcfg["quantization_config"] = {
            "_load_in_4bit": True, "_load_in_8bit": False, "bnb_4bit_compute_dtype": "bfloat16",
            "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": fmt,
            "bnb_4bit_use_double_quant": double, "llm_int8_enable_fp32_cpu_offload": False,
            "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None,
            "llm_int8_threshold": 6.0, "load_in_4bit": True, "load_in_8bit": False,
            "quant_method": "bitsandbytes"}
        d = os.path.join(HERE, folder)
        os.makedirs(d, exist_ok=True)
        hfio.write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        hfio.write_json(os.path.join(d, "config.json"), qcfg)


def main():
    check_code_books()
    check_layout()
    quant = quant_goldens()
    torch_map = dynamic_map_torch()

    base_dir = os.path.join(HERE, "llama-gqa")
    cfg = json.load(open(os.path.join(base_dir, "config.json")))
    base = hfio.read_safetensors(os.path.join(base_dir, "model.safetensors"))
    ids, labels = b16.load_rows(os.path.join(base_dir, "data.jsonl"))
    lmeta = json.load(open(os.path.join(HERE, "methods", "lora", "meta.json")))
    lrun = lmeta["run"]
    lora_init = b16.lora_adapter_init()
    qbase = quantized_base(base)
    write_bnb_checkpoints(cfg, base)
    out = {"model": "llama-gqa", "quantize": "nf4", "double_quant": True,
           "dynamic_map_entries_differing_from_torch_linspace": int((torch_map != quant["dynamic_map"]).sum()),
           "runs": {}}
    fp32_losses, fp32_norms = b16.run_steps(cfg, qbase, ids, labels, lrun, b16.Policy(False), lora_init, forward_fp32)
    # Under bf16 the base is stored in bfloat16 before it is quantized (as
    # transformers quantizes a torch_dtype=bfloat16 model).
    qbase16 = quantized_base({n: b16.bf16(t).float() for n, t in base.items()})
    bf_losses, bf_norms = b16.run_steps(cfg, qbase16, ids, labels, lrun, b16.Policy(True), lora_init)
    ex_losses, ex_norms = b16.run_steps(cfg, base, ids, labels, lrun, b16.Policy(False), lora_init)
    out["runs"]["fp32"] = {"losses": fp32_losses, "grad_norms": fp32_norms,
                           "unquantized_losses": ex_losses, "unquantized_grad_norms": ex_norms}
    out["runs"]["bf16"] = {"losses": bf_losses, "grad_norms": bf_norms}
    s = lrun["method_config"]["lora_alpha"] / lrun["method_config"]["lora_r"]
    for path, (a, bm) in sorted(lora_init.items()):
        w = qbase[path + ".weight"].double() + s * (bm.double() @ a.double())
        quant["merged." + path + ".weight"] = w.float()
    os.makedirs(os.path.join(HERE, "qlora"), exist_ok=True)
    hfio.write_safetensors(os.path.join(HERE, "qlora", "quant.safetensors"), quant)
    hfio.write_json(os.path.join(HERE, "qlora", "golden.json"), out)


if __name__ == "__main__":
    main()
