#!/usr/bin/env python3
"""PyTorch side of `gotune bench kernels`' attention rows.

Reads the JSON of `gotune bench kernels --json`, and for each of gotune's
attention results (attn_fwd: the forward; attn_fwdbwd: forward then
backward) times torch.nn.functional.scaled_dot_product_attention on the
same problem -- batch, sequence, query and key/value heads, head
dimension, dtype, causal -- with the same number of timed repeats after
three warm-ups, and prints gotune's time over PyTorch's.

Grouped-query attention uses SDPA's enable_gqa where torch has it (2.5+);
otherwise k and v are expanded to the query heads once, outside the timed
region (noted in the output). A torch without SDPA (Debian's 1.13, on the
CPU) times the plain softmax(QKᵀ/√d + mask)·V instead, labelled "math".

GPU times come from CUDA events around each repeat, CPU times from the
wall clock; each figure is the median of the repeats.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch


def sdpa_fn(gqa_native):
    """The attention PyTorch runs, and its name in the output."""
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if sdpa is None:
        def math_attn(q, k, v):
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            t = q.shape[-2]
            mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
            return torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1) @ v
        return math_attn, "math (torch %s has no SDPA)" % torch.__version__
    if gqa_native:
        return (lambda q, k, v: sdpa(q, k, v, is_causal=True, enable_gqa=True)), "sdpa (enable_gqa)"
    return (lambda q, k, v: sdpa(q, k, v, is_causal=True)), "sdpa (k, v expanded before timing)"


def has_enable_gqa():
    try:
        import inspect
        return "enable_gqa" in inspect.signature(torch.nn.functional.scaled_dot_product_attention).parameters
    except (AttributeError, TypeError, ValueError):
        # Builtins may have no signature: try it on a tiny problem.
        try:
            x = torch.zeros(1, 2, 1, 4)
            torch.nn.functional.scaled_dot_product_attention(x, x[:, :1], x[:, :1], enable_gqa=True)
            return True
        except Exception:  # noqa: BLE001
            return False


def timer(device):
    if device.startswith("cuda"):
        def run(fn):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            fn()
            e1.record()
            e1.synchronize()
            return e0.elapsed_time(e1)
        return run

    def run_cpu(fn):
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return run_cpu


def time_case(r, device, attn, gqa_native, repeats):
    dtype = {"BF16": torch.bfloat16, "F32": torch.float32}[r["dtype"]]
    b, t, hq, hkv, d = r["batch"], r["seq"], r["heads"], r["kv_heads"], r["head_dim"]
    gen = torch.Generator(device="cpu").manual_seed(1)
    mk = lambda h: torch.randn(b, h, t, d, generator=gen).to(device=device, dtype=dtype).requires_grad_()  # noqa: E731
    q = mk(hq)
    k, v = mk(hkv), mk(hkv)
    if not gqa_native and hkv != hq:
        k = k.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
        v = v.detach().repeat_interleave(hq // hkv, dim=1).requires_grad_()
    dout = torch.randn(b, hq, t, d, generator=gen).to(device=device, dtype=dtype)
    if r["op"] == "attn_fwd":
        def fn():
            with torch.no_grad():
                attn(q, k, v)
    else:
        def fn():
            attn(q, k, v).backward(dout)
    run = timer(device)
    for _ in range(3):
        run(fn)
    return statistics.median(run(fn) for _ in range(repeats))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kernels", required=True, help="output of `gotune bench kernels --json`")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    with open(args.kernels) as f:
        text = f.read()
    rep = json.loads(text[text.index("{"):text.rindex("}") + 1])
    rows = [r for r in rep["results"] if r["op"] in ("attn_fwd", "attn_fwdbwd") and r["impl"] == "gotune"]
    if not rows:
        sys.exit("bench_sdpa.py: no attention results in %s" % args.kernels)
    gqa_native = has_enable_gqa()
    attn, impl = sdpa_fn(gqa_native)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print("PyTorch %s on %s: %s; gotune on %s" % (torch.__version__, device_name, impl, rep["device"]))
    print("%-12s %-4s %2s %5s %6s %3s %10s %10s %8s" % ("op", "dt", "B", "T", "Hq/Hkv", "D", "gotune ms", "torch ms", "ratio"))
    out = []
    for r in rows:
        ms = time_case(r, args.device, attn, gqa_native, max(1, r["repeats"]))
        row = {k: r[k] for k in ("op", "dtype", "batch", "seq", "heads", "kv_heads", "head_dim")}
        row.update(gotune_ms=r["median_ms"], torch_ms=ms, ratio=r["median_ms"] / ms, torch_impl=impl)
        out.append(row)
        print("%-12s %-4s %2d %5d %3d/%-2d %3d %10.3f %10.3f %7.2fx" % (
            r["op"], r["dtype"], r["batch"], r["seq"], r["heads"], r["kv_heads"], r["head_dim"], r["median_ms"], ms, row["ratio"]))
    print("ratio = gotune time / PyTorch time (below 1: gotune is faster)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"torch": torch.__version__, "device": device_name, "impl": impl, "rows": out}, f, indent=1)


if __name__ == "__main__":
    main()
