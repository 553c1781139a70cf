#!/usr/bin/python3
"""Writes reference.safetensors, the byte-compatibility fixture of the Go
safetensors package, with torch (tensor values and dtype conversions) and a
small safetensors writer written here from the format specification.

The official `safetensors` Python package is not installable on the build
machines (not in Debian bookworm; PyPI unreachable), so this follows the
reference Rust implementation's documented layout instead:
  * 8-byte little-endian header length N, then N bytes of JSON, then data;
  * compact JSON, "__metadata__" first, then tensors sorted by descending
    dtype (the reference Dtype enum order, i.e. alignment) and then by name,
    each as {"dtype":..,"shape":[..],"data_offsets":[begin,end]};
  * data laid out in header order, contiguous from offset 0;
  * header padded with spaces to a multiple of 8 bytes.
The F16 and BF16 tensors are torch's own .half() / .bfloat16() conversions
of `f32_src`, so the Go tests check our rounding against torch's.

Run from anywhere: /usr/bin/python3 engine/safetensors/testdata/gen_fixture.py
"""
import json
import os
import struct

import torch

# Order of the reference implementation's Dtype enum (increasing alignment).
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
               "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]
TORCH_DTYPE = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8",
               torch.int16: "I16", torch.float16: "F16", torch.bfloat16: "BF16",
               torch.int32: "I32", torch.float32: "F32", torch.float64: "F64",
               torch.int64: "I64"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: view the bits
        t = t.view(torch.int16)
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def save(path, tensors, metadata=None):
    items = sorted(tensors.items(),
                   key=lambda kv: (-DTYPE_ORDER.index(TORCH_DTYPE[kv[1].dtype]), kv[0].encode()))
    header = {}
    if metadata is not None:
        header["__metadata__"] = dict(sorted(metadata.items()))
    blobs, off = [], 0
    for name, t in items:
        b = tensor_bytes(t)
        header[name] = {"dtype": TORCH_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def tricky_f32():
    two = lambda e: 2.0 ** e
    vals = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 3.14159265,
            float("inf"), float("-inf"), float("nan"),
            # float16 edges: max, overflow ties, smallest normal/subnormal
            65504.0, 65519.0, 65520.0, 65536.0, -65520.0, 1e6,
            two(-14), two(-14) * (1 - two(-10)), two(-24), two(-25),
            two(-25) * 1.5, two(-24) * 1.5, two(-24) * 2.5, two(-26), -two(-24) * 1.5,
            # ties between float16 neighbours around 1 (round half to even)
            1 + two(-11), 1 + 3 * two(-11), 1 + two(-11) + two(-23), 2049.0, 2051.0,
            # bfloat16 ties and neighbours
            1 + two(-8), 1 + 3 * two(-8), 1 + two(-8) + two(-23), 257.0, 259.0,
            3.4028234663852886e38, -3.4028234663852886e38, 1.1754943508222875e-38,
            1.401298464324817e-45, 3e-39]
    t = torch.tensor(vals, dtype=torch.float32)
    g = torch.Generator().manual_seed(1234)
    scales = torch.pow(10.0, torch.randint(-9, 6, (400,), generator=g).float())
    rnd = torch.randn(400, generator=g) * scales
    return torch.cat([t, rnd.float()])


def main():
    src = tricky_f32()
    g = torch.Generator().manual_seed(7)
    tensors = {
        "f32_src": src,
        "as_f16": src.half(),
        "as_bf16": src.bfloat16(),
        "model.layers.0.weight": torch.randn(3, 5, generator=g),
        # float32-representable, so reading as float32 and writing back as
        # F64 must reproduce the bytes exactly
        "f64": (torch.randn(2, 3, generator=g) * 1e-3).double(),
        "i64": torch.tensor([[-(2 ** 62), -1], [0, 2 ** 62 + 5]], dtype=torch.int64),
        "i32": torch.tensor([-(2 ** 31), -7, 0, 2 ** 31 - 1], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767, 5], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, -1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty": torch.zeros(0, 4, dtype=torch.float32),
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference.safetensors")
    save(out, tensors, {"format": "pt", "note": "gotune fixture \"quoted\"\tü"})
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
