#!/usr/bin/env python3
"""The training table scripts/gpu-check.sh prints last.

Joins gotune's plan (`gotune bench train --dry-run --json`), gotune's
results (one `gotune bench train --json` report per case, any that exist)
and scripts/bench_peft.py's results by case (preset, method, gradient
checkpointing), and prints per case: tokens/s and model-FLOPs utilisation
of both, device memory of both, then the ratios gotune / PyTorch of
tokens/s (above 1: gotune is faster) and of memory (below 1: gotune uses
less).

Both MFU figures use the plan's FLOPs per token (gotune's formula, printed
under the table) and the bf16 peak gotune found for the device. Memory is
compared like with like: gotune's "held" figure (its caching allocator's
bytes) with torch.cuda.max_memory_reserved, a true live-tensor peak with
max_memory_allocated.
"""

import argparse
import json
import os
import sys


def load(path):
    if not path or not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text[text.index("{"):text.rindex("}") + 1])
    except ValueError:
        return None


def key(r):
    return (r["preset"], r["method"], bool(r["grad_checkpoint"]), r.get("quantize") or "")


def fmt(v, spec, none="n/a"):
    return none if v is None else spec % v


def qlora_vs_lora(gotune):
    """One line per gotune QLoRA case: its tokens/s and memory over the
    bf16 LoRA case of the same preset and gradient checkpointing."""
    out = []
    for k, q in sorted(gotune.items()):
        preset, method, gc, quantize = k
        lora = gotune.get((preset, method, gc, ""))
        if not quantize or q.get("error") or not lora or lora.get("error"):
            continue
        qt, lt = q.get("tokens_per_s"), lora.get("tokens_per_s")
        qm, lm = q.get("mem_bytes"), lora.get("mem_bytes")
        out.append("QLoRA %s vs bf16 LoRA (%s, gc=%s, gotune): tokens/s %s (%s vs %s), memory %s (%s vs %s GiB)" % (
            quantize, preset, "on" if gc else "off",
            fmt(qt / lt if qt and lt else None, "%.2fx"), fmt(qt, "%.0f"), fmt(lt, "%.0f"),
            fmt(qm / lm if qm and lm else None, "%.2fx"),
            fmt(qm and qm / 2**30, "%.3g"), fmt(lm and lm / 2**30, "%.3g")))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--gotune", nargs="*", default=[], help="gotune bench train --json reports")
    ap.add_argument("--peft", help="bench_peft.py --out file")
    args = ap.parse_args()

    plan = load(args.plan)
    if plan is None:
        sys.exit("gpu_check_table.py: no plan in %s" % args.plan)
    gotune, peak, peak_src, device = {}, 0.0, "", ""
    for p in args.gotune:
        rep = load(p)
        if rep is None:
            continue
        if rep.get("peak_bf16_tflops"):
            peak, peak_src = rep["peak_bf16_tflops"], rep["peak_source"]
        device = device or rep.get("device", "")
        for r in rep["results"]:
            gotune[key(r)] = r
    peft_rep = load(args.peft) or {"results": []}
    torch_res = {key(r): r for r in peft_rep["results"]}

    def mfu(flops, tps):
        return None if not (peak and tps) else 100 * flops * tps / (peak * 1e12)

    head = ("case", "tok/step", "gotune tok/s", "torch tok/s", "gotune MFU", "torch MFU",
            "gotune GiB", "torch GiB", "tok/s ratio", "mem ratio")
    rows = []
    for c in plan["results"]:
        g, t = gotune.get(key(c)), torch_res.get(key(c))
        gtps = g.get("tokens_per_s") if g and not g.get("error") else None
        ttps = t.get("tokens_per_s") if t and not t.get("error") else None
        gmem = g.get("mem_bytes") if g and g.get("mem_measure") else None
        tmem = None
        if t and not t.get("error"):
            held = g is not None and g.get("mem_measure", "").startswith("held")
            tmem = t.get("max_memory_reserved" if held or g is None else "max_memory_allocated")
        gc = "on" if c["grad_checkpoint"] else "off"
        tprec = t["precision"] if t else "-"
        method = "q%s-%s" % (c["method"], c["quantize"]) if c.get("quantize") else c["method"]
        label = "%s %s gc=%s %s/%s" % (c["preset"], method, gc, c["precision"], tprec)
        gnote = "failed" if g and g.get("error") else ("not run" if g is None else None)
        tnote = "failed" if t and t.get("error") else ("not run" if t is None else None)
        rows.append((label, str(c["tokens_per_step"]),
                     gnote or fmt(gtps, "%.0f"), tnote or fmt(ttps, "%.0f"),
                     fmt(mfu(c["flops_per_token"], gtps), "%.1f%%"), fmt(mfu(c["flops_per_token"], ttps), "%.1f%%"),
                     fmt(gmem and gmem / 2**30, "%.3g"), fmt(tmem and tmem / 2**30, "%.3g"),
                     fmt(gtps / ttps if gtps and ttps else None, "%.2fx"),
                     fmt(gmem / tmem if gmem and tmem else None, "%.2fx")))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    print("training: gotune (%s) vs PyTorch %s + transformers %s + PEFT %s (%s)" % (
        device or "no result", peft_rep.get("torch", "-"), peft_rep.get("transformers", "-"), peft_rep.get("peft", "-"),
        peft_rep.get("device", "not run")))
    print("MFU: plan's FLOPs/token x tokens/s over the bf16 peak %s" % (
        "%.0f TFLOP/s [%s]" % (peak, peak_src) if peak else "(unknown here: n/a)"))
    print("memory: gotune's allocator bytes held vs torch max_memory_reserved (allocated where gotune reports a live peak)")
    print("precision column: gotune/torch; ratios are gotune / PyTorch")
    print(line(head))
    for r in rows:
        print(line(r))
    for line_ in qlora_vs_lora(gotune):
        print(line_)
    for name, res in (("gotune", gotune), ("torch", torch_res)):
        for k, r in res.items():
            if r.get("error"):
                print("  %s %s: %s" % (name, " ".join(map(str, k)), r["error"][:200]))


if __name__ == "__main__":
    main()
