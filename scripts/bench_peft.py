#!/usr/bin/env python3
"""PyTorch + transformers + PEFT side of `gotune bench train`.

Runs the cases of a gotune plan -- the output of

    gotune bench train --dry-run --json [--preset ...] [--method ...] > plan.json

-- through transformers' LlamaForCausalLM (SDPA attention) and, for LoRA,
PEFT's get_peft_model (r and alpha from the plan, target_modules
"all-linear", no dropout), with the same shapes, batch, sequence length,
random tokens per step, warm-up and timed steps, AdamW settings (torch's
fused AdamW on a GPU, lr 1e-4, weight decay 0.01) and gradient clipping at
1.0. The model shapes are gotune's (read from the plan, never restated
here); each built model's parameter count is checked against the plan's,
so both sides provably train the same model.

Per case it reports the median step time, tokens/s (batch x seq per step),
torch.cuda.max_memory_allocated and max_memory_reserved (peak statistics
reset after the model is built and cast, so they include the weights).
Each case builds its model afresh; an out-of-memory case is recorded and
the next one runs.

Precision: the plan's (gotune's) by default, so the two sides compare like
with like; --dtype bf16 or fp32 overrides it. bf16 means parameters and
activations in bfloat16 (PEFT keeps LoRA weights in float32, its default
autocast_adapter_dtype), AdamW moments in the parameters' dtype.

--dry-run needs neither torch nor transformers: it prints each case's
transformers configuration, tokens per step and the parameter count this
script derives from the shape on its own, and fails when that differs
from gotune's count.

QLoRA cases (the plan's "quantize": nf4, fp4 or int8) save the random
model and load it back with transformers' BitsAndBytesConfig (4-bit:
double quantization, bfloat16 compute dtype; every linear but lm_head
quantized), then add PEFT's LoRA as above (no
prepare_model_for_kbit_training: it would turn on gradient
checkpointing); they need bitsandbytes and are skipped, with a line
saying so, when it does not import. Only the trainable count is checked
for them (bitsandbytes counts packed bytes as parameters).

Model FLOPs utilisation is not computed here: scripts/gpu_check_table.py
applies gotune's FLOPs per token (the plan's flops_per_token, one formula
for both sides) to both measurements.
"""

import argparse
import gc
import json
import statistics
import sys
import time


def llama_config_kwargs(shape):
    """transformers LlamaConfig arguments for a plan's shape."""
    return dict(
        vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"], head_dim=shape["head_dim"],
        max_position_embeddings=shape["max_pos"], rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, use_cache=False,
        attn_implementation="sdpa",
    )


def linear_widths(shape):
    """(in, out) of one layer's q, k, v, o, gate, up, down projections."""
    h, q, kv, m = shape["hidden"], shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"], shape["intermediate"]
    return [(h, q), (h, kv), (h, kv), (q, h), (h, m), (h, m), (m, h)]


def expected_params(case):
    """(all, trainable) parameter counts of the model a case builds, as
    transformers and PEFT count them: linears, untied embedding and
    lm_head, two norms per layer and the final norm, plus r*(in+out) per
    adapted linear for LoRA."""
    s = case["shape"]
    layers = s["layers"]
    base = layers * sum(i * o for i, o in linear_widths(s)) + 2 * s["vocab"] * s["hidden"] + (2 * layers + 1) * s["hidden"]
    if case["method"] != "lora":
        return base, base
    lora = layers * sum(case["lora_r"] * (i + o) for i, o in linear_widths(s))
    return base + lora, lora


def case_key(case, dtype):
    gc_ = "on" if case["grad_checkpoint"] else "off"
    method = case["method"]
    if case.get("quantize"):
        method = "q%s-%s" % (method, case["quantize"])
    return "%s %s gc=%s %s" % (case["preset"], method, gc_, dtype)


def bitsandbytes_missing():
    """The reason a QLoRA case cannot run here, or None."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- ImportError, or a CUDA setup error raised at import
        return "bitsandbytes not importable (%s: %s); QLoRA cases skipped (pip install bitsandbytes)" % (
            type(e).__name__, str(e).splitlines()[0][:120] if str(e) else "")
    return None


def build_quantized(case, cfg, dtype):
    """The case's model with every linear but lm_head quantized by
    bitsandbytes (nf4/fp4 with double quantization and bf16 compute, or
    LLM.int8), the way transformers loads a checkpoint with a
    quantization_config: random weights are saved and loaded back."""
    import tempfile

    import torch
    from transformers import BitsAndBytesConfig, LlamaForCausalLM

    if case["quantize"] == "int8":
        qc = BitsAndBytesConfig(load_in_8bit=True)
    else:
        qc = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=case["quantize"], bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.bfloat16)
    with tempfile.TemporaryDirectory() as d:
        LlamaForCausalLM(cfg).to(dtype).save_pretrained(d)
        return LlamaForCausalLM.from_pretrained(d, quantization_config=qc, torch_dtype=dtype, device_map={"": 0})


def check_plan(plan):
    """Fails when this script's parameter arithmetic disagrees with gotune's."""
    for c in plan["results"]:
        got = expected_params(c)
        want = (c["params"], c["trainable_params"])
        if got != want:
            sys.exit("bench_peft.py: %s: this script counts %d parameters (%d trainable), gotune's plan %d (%d); "
                     "the two sides would not build the same model" % (case_key(c, c["precision"]), got[0], got[1], want[0], want[1]))


def require_libraries():
    missing = []
    for name in ("torch", "transformers", "peft"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.exit("bench_peft.py: %s not importable by %s; install them (pip install %s) or use --dry-run, "
                 "which needs none of them" % (", ".join(missing), sys.executable, " ".join(missing)))


def run_case(case, dtype_name, device):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    cuda = device.startswith("cuda")
    res = {k: case[k] for k in ("preset", "method", "grad_checkpoint", "batch", "seq", "tokens_per_step", "steps", "warmup")}
    res["precision"] = dtype_name
    res["quantize"] = case.get("quantize", "")
    res["key"] = case_key(case, dtype_name)
    model = opt = None
    try:
        torch.manual_seed(case["seed"])
        cfg = LlamaConfig(**llama_config_kwargs(case["shape"]))
        if case.get("quantize"):
            model = build_quantized(case, cfg, dtype)
        else:
            with torch.device(device):
                model = LlamaForCausalLM(cfg)
            model.to(dtype)
        res["attn_implementation"] = getattr(model.config, "_attn_implementation", "?")
        if case["grad_checkpoint"]:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if case["method"] == "lora":
            from peft import LoraConfig, get_peft_model
            model = get_peft_model(model, LoraConfig(r=case["lora_r"], lora_alpha=case["lora_alpha"], lora_dropout=0.0,
                                                     target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        counts = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in params))
        if case.get("quantize"):  # bitsandbytes counts packed bytes, not weights
            counts = (case["params"], counts[1])
        if counts != (case["params"], case["trainable_params"]):
            raise RuntimeError("built %d parameters (%d trainable), gotune's plan says %d (%d)" % (
                counts[0], counts[1], case["params"], case["trainable_params"]))
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, fused=cuda or None)
        gen = torch.Generator(device="cpu").manual_seed(case["seed"])
        ids = torch.randint(0, case["shape"]["vocab"], (case["batch"], case["seq"]), generator=gen).to(device)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times, losses = [], []
        for i in range(case["warmup"] + case["steps"]):
            t0 = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())  # waits for the step, as gotune's loss download does
            if cuda:
                torch.cuda.synchronize()
            if i >= case["warmup"]:
                times.append((time.perf_counter() - t0) * 1e3)
        res.update(step_ms=times, median_step_ms=statistics.median(times), first_loss=losses[0], last_loss=losses[-1])
        res["tokens_per_s"] = case["tokens_per_step"] / (res["median_step_ms"] / 1e3)
        if cuda:
            res["max_memory_allocated"] = torch.cuda.max_memory_allocated()
            res["max_memory_reserved"] = torch.cuda.max_memory_reserved()
    except Exception as e:  # noqa: BLE001 -- one failing case (OOM) must not stop the rest
        res["error"] = ("%s: %s" % (type(e).__name__, e)).splitlines()[0][:300]
    finally:
        del model, opt
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="output of `gotune bench train --dry-run --json`")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--dtype", default="plan", choices=["plan", "bf16", "fp32"], help="precision (default: the plan's)")
    ap.add_argument("--only", action="append", default=[], help="run only cases whose preset or method is this (repeatable)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--dry-run", action="store_true", help="print the cases and check the shapes, without torch")
    args = ap.parse_args()

    with open(args.plan) as f:
        plan = json.load(f)
    check_plan(plan)
    cases = [c for c in plan["results"] if not args.only or c["preset"] in args.only or c["method"] in args.only]
    if args.dry_run:
        for c in cases:
            dtype = c["precision"] if args.dtype == "plan" else args.dtype
            print("%s: B=%d T=%d, %d tokens/step, %d parameters (%d trainable), %d warm-up + %d timed steps" % (
                case_key(c, dtype), c["batch"], c["seq"], c["tokens_per_step"], c["params"], c["trainable_params"], c["warmup"], c["steps"]))
            print("  LlamaConfig(%s)" % ", ".join("%s=%r" % kv for kv in llama_config_kwargs(c["shape"]).items()))
            if c.get("quantize"):
                print("  BitsAndBytesConfig(%s, double quant, compute bf16)" % c["quantize"])
            if c["method"] == "lora":
                print("  LoraConfig(r=%d, lora_alpha=%g, target_modules='all-linear', lora_dropout=0.0)" % (c["lora_r"], c["lora_alpha"]))
        print("dry run: %d case(s); parameter counts agree with gotune's plan" % len(cases))
        return

    require_libraries()
    import peft
    import torch
    import transformers

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("bench_peft.py: --device %s but torch sees no GPU" % args.device)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    report = {"device": device_name, "torch": torch.__version__, "transformers": transformers.__version__,
              "peft": peft.__version__, "results": []}
    print("bench_peft: %s, torch %s, transformers %s, peft %s" % (device_name, torch.__version__, transformers.__version__, peft.__version__), flush=True)
    no_bnb = bitsandbytes_missing() if any(c.get("quantize") for c in cases) else None
    for c in cases:
        if c.get("quantize") and no_bnb:
            print("  %-24s skipped: %s" % (case_key(c, c["precision"]), no_bnb), flush=True)
            continue
        r = run_case(c, c["precision"] if args.dtype == "plan" else args.dtype, args.device)
        report["results"].append(r)
        if "error" in r:
            print("  %-24s failed: %s" % (r["key"], r["error"]), flush=True)
        else:
            mem = "%.2f GiB allocated, %.2f reserved" % (r.get("max_memory_allocated", 0) / 2**30, r.get("max_memory_reserved", 0) / 2**30)
            print("  %-24s %8.1f ms/step %9.0f tokens/s  %s  loss %.3f->%.3f  attn=%s" % (
                r["key"], r["median_step_ms"], r["tokens_per_s"], mem, r["first_loss"], r["last_loss"], r["attn_implementation"]), flush=True)
        if args.out:  # after every case, so a timeout keeps what finished
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
