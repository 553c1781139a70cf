#!/usr/bin/python3
"""Interleaved CPU benchmark: gotune's engine/cpu against PyTorch on the CPU.

Driven by scripts/bench-cpu.sh, which builds the gotune half (the
internal/benchcpu server) and chooses the BLAS torch loads; run it through
that script. Needs Debian's python3-torch (1.13) at /usr/bin/python3.

What it measures, in one session:
  * float32 matrix products at LLM layer shapes, including the two
    transposed products a linear layer's backward pass needs: gotune's
    Backend.Gemm against torch.matmul (and, with --onednn, oneDNN's sgemm
    through torch);
  * one full fine-tuning step (forward, backward, global-norm clipping,
    AdamW, zeroed gradients) of the same small Llama: gotune's train.Trainer
    against a plain-PyTorch Llama (testdata/golden/reference.py, the model
    the golden tests use) with torch.optim.AdamW.

Both sides run with the same number of threads and are interleaved
sample by sample (gotune, torch, torch, gotune, ...: the order flips every
repeat), and each reported time is the median of the samples, so that the
noise of a shared machine falls on both sides alike. The gotune times are
measured inside the Go process, around the work only.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep testdata/golden free of __pycache__

import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (op, M, N, K, transA, transB, why): c[M,N] = op(a)[M,K] · op(b)[K,N].
# A linear layer y = x·Wᵀ over T tokens (x [T,in], W [out,in]) is the NT
# product T×out×in; its backward needs dx = dy·W (NN, T×in×out) and
# dW = dyᵀ·x (TN, out×in×T).
GEMM_CASES = [
    ("gemm NN", 512, 512, 512, False, False, "square"),
    ("gemm NN", 1024, 1024, 1024, False, False, "square"),
    ("linear fwd x·Wᵀ", 2048, 768, 768, False, True, "2048 tok, 768→768"),
    ("linear dX dy·W", 2048, 768, 768, False, False, "2048 tok, 768→768"),
    ("linear dW dyᵀ·x", 768, 768, 2048, True, False, "2048 tok, 768→768"),
    ("linear fwd x·Wᵀ", 2048, 2048, 768, False, True, "2048 tok, 768→2048 (MLP up)"),
    ("linear fwd x·Wᵀ", 512, 688, 256, False, True, "train-step MLP gate/up"),
    ("linear dW dyᵀ·x", 688, 256, 512, True, False, "train-step MLP gate/up"),
    ("linear fwd x·Wᵀ", 512, 1024, 256, False, True, "train-step lm_head"),
]
QUICK_CASES = [GEMM_CASES[0], GEMM_CASES[2], GEMM_CASES[4]]

# The model of the training-step comparison.
TRAIN = dict(vocab=1024, hidden=256, layers=4, heads=4, kv_heads=4, intermediate=688, batch=4, seq=128, seed=1)
OPTIM = dict(lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01, max_grad_norm=1.0)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--go-bin", required=True, help="the built internal/benchcpu server")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both sides (default: all CPUs)")
    ap.add_argument("--reps", type=int, default=7, help="interleaved samples per side and case (default 7)")
    ap.add_argument("--sample-seconds", type=float, default=0.15, help="target length of one gemm sample (default 0.15)")
    ap.add_argument("--train-steps", type=int, default=1, help="optimizer steps per training sample (default 1)")
    ap.add_argument("--settle", type=float, default=0.15,
                    help="pause after each torch sample so BLAS threads that spin-wait go idle "
                         "before gotune runs (default 0.15 s)")
    ap.add_argument("--onednn", action="store_true", help="also time oneDNN's sgemm through torch (pre-laid-out operands)")
    ap.add_argument("--no-train", action="store_true", help="skip the training-step comparison")
    ap.add_argument("--no-gemm", action="store_true", help="skip the matrix products")
    ap.add_argument("--quick", action="store_true", help="3 gemm shapes, 3 repeats: a smoke test")
    ap.add_argument("--json", metavar="FILE", help="also write every number as JSON to FILE")
    a = ap.parse_args()
    if a.threads < 1 or a.reps < 1 or a.train_steps < 1 or a.sample_seconds <= 0 or a.settle < 0:
        ap.error("--threads, --reps and --train-steps must be positive, --sample-seconds positive, --settle not negative")
    if a.quick:
        a.reps = min(a.reps, 3)
        a.sample_seconds = min(a.sample_seconds, 0.1)
    return a


class GoServer:
    """The gotune half: one internal/benchcpu process spoken to in JSON lines."""

    def __init__(self, path, threads):
        env = dict(os.environ, GOMAXPROCS=str(threads))
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1)

    def call(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the gotune benchmark server exited (request %s); see its messages above" % req)
        resp = json.loads(line)
        if not resp.get("ok"):
            raise RuntimeError("gotune benchmark server: %s" % resp.get("error"))
        return resp

    def close(self):
        try:
            self.proc.stdin.write('{"cmd":"quit"}\n')
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(timeout=10)


def cpu_seconds():
    """User+system CPU time of this process (all torch threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def blas_library():
    """Which BLAS torch loaded, from this process's mappings: a short label,
    the library paths, and whether it is an optimised one."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            base = os.path.basename(path).lower()
            if path.startswith("/") and ("blas" in base or "mkl" in base or "blis" in base):
                libs.add(os.path.realpath(path))
    paths = sorted(libs)
    if not paths:
        return "none found (torch's built-in gemm)", paths, False
    for key, name in (("openblas", "OpenBLAS"), ("mkl", "MKL"), ("blis", "BLIS")):
        hits = [p for p in paths if key in os.path.basename(p).lower()]
        if hits:
            return "%s (%s)" % (name, os.path.basename(hits[-1])), paths, True
    if any("/blas/libblas.so" in p for p in paths):
        return "reference netlib BLAS (%s)" % paths[0], paths, False
    return ", ".join(paths), paths, False


class Stat:
    """Samples of one side of one case: seconds per op and cores busy."""

    def __init__(self):
        self.per_op = []
        self.cpu_per_op = []
        self.cores = []

    def add(self, seconds, cpu, ops):
        self.per_op.append(seconds / ops)
        self.cpu_per_op.append(cpu / ops)
        if cpu > 0 and seconds > 0:
            self.cores.append(cpu / seconds)

    def median(self):
        return statistics.median(self.per_op)

    def as_dict(self, flops):
        med = self.median()
        return {
            "median_s": med,
            "min_s": min(self.per_op),
            "max_s": max(self.per_op),
            "samples_s": self.per_op,
            "cpu_samples_s": self.cpu_per_op,
            "gflops": flops / med / 1e9,
            "spread": (max(self.per_op) - min(self.per_op)) / med,
            "cores_busy": statistics.median(self.cores) if self.cores else None,
        }


def paired_ratio(a, b):
    """Median over repeats of a's sample / b's sample. The two samples of a
    repeat ran back to back, so they saw about the same machine load; this
    is steadier than the ratio of the two medians when load drifts."""
    return statistics.median(x / y for x, y in zip(a.per_op, b.per_op))


def iters_for(seconds_per_op, target):
    return max(1, int(round(target / max(seconds_per_op, 1e-9))))


def torch_timed(fn, iters):
    c0, t0 = cpu_seconds(), time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - t0, cpu_seconds() - c0


def interleave(sides, reps, settle, log):
    """Runs each side's sampler once per repeat, flipping the order every
    repeat; sides is a list of (name, sampler, pause_after)."""
    for r in range(reps):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for name, sample, pause in order:
            sample()
            if pause:
                time.sleep(settle)
        log(".")


def bench_gemm(go, args, cases, log):
    results = []
    gen = torch.Generator().manual_seed(7)
    for op, m, n, k, ta, tb, why in cases:
        flops = 2.0 * m * n * k
        a = torch.randn(*((k, m) if ta else (m, k)), generator=gen)
        b = torch.randn(*((n, k) if tb else (k, n)), generator=gen)
        A = a.t() if ta else a  # views: BLAS gets the transposition flags, no copies
        B = b.t() if tb else b
        out = torch.empty(m, n)

        def tmm():
            torch.matmul(A, B, out=out)

        req = dict(cmd="gemm", m=m, n=n, k=k, ta=ta, tb=tb)
        # Warm up both (packing buffers, page faults, thread pools), then
        # time one op each to size the samples.
        go.call(iters=1, **req)
        tmm()
        g_it = iters_for(go.call(iters=1, **req)["seconds"], args.sample_seconds)
        t_it = iters_for(torch_timed(tmm, 1)[0], args.sample_seconds)
        stats = {"gotune": Stat(), "torch": Stat()}

        def s_go():
            r = go.call(iters=g_it, **req)
            stats["gotune"].add(r["seconds"], r.get("cpu_seconds", 0), g_it)

        def s_torch():
            s, c = torch_timed(tmm, t_it)
            stats["torch"].add(s, c, t_it)

        sides = [("gotune", s_go, False), ("torch", s_torch, True)]
        if args.onednn:
            x = A.contiguous().to_mkldnn()  # mkldnn_linear computes x·wᵀ
            w = B.t().contiguous().to_mkldnn()

            def dnn():
                torch._C._nn.mkldnn_linear(x, w, None)

            dnn()
            d_it = iters_for(torch_timed(dnn, 1)[0], args.sample_seconds)
            stats["onednn"] = Stat()

            def s_dnn():
                s, c = torch_timed(dnn, d_it)
                stats["onednn"].add(s, c, d_it)

            sides.append(("onednn", s_dnn, True))
        log("  %-18s %-16s" % (op, "%d×%d×%d" % (m, n, k)))
        interleave(sides, args.reps, args.settle, log)
        log("\n")
        res = {"op": op, "shape": "%d×%d×%d" % (m, n, k), "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb,
               "note": why, "flops": flops}
        for name, st in stats.items():
            res[name] = st.as_dict(flops)
        res["ratio"] = paired_ratio(stats["gotune"], stats["torch"])
        res["ratio_of_medians"] = res["gotune"]["median_s"] / res["torch"]["median_s"]
        if "onednn" in res:
            res["ratio_onednn"] = paired_ratio(stats["gotune"], stats["onednn"])
        results.append(res)
    return results


# ---------------------------------------------------------------- training step


def torch_llama(cfg, seed):
    """Parameters of a randomly initialised Llama with cfg's shapes, keyed by
    the Hugging Face names (as reference.llama_forward expects), and the
    names of those that get weight decay (matrices and embeddings)."""
    gen = torch.Generator().manual_seed(seed)
    d, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or d // nh
    std = cfg.get("initializer_range", 0.02)
    shapes = {"model.embed_tokens.weight": (v, d)}
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        shapes.update({
            pre + "input_layernorm.weight": (d,),
            pre + "self_attn.q_proj.weight": (nh * hd, d),
            pre + "self_attn.k_proj.weight": (nkv * hd, d),
            pre + "self_attn.v_proj.weight": (nkv * hd, d),
            pre + "self_attn.o_proj.weight": (d, nh * hd),
            pre + "post_attention_layernorm.weight": (d,),
            pre + "mlp.gate_proj.weight": (inter, d),
            pre + "mlp.up_proj.weight": (inter, d),
            pre + "mlp.down_proj.weight": (d, inter),
        })
    shapes["model.norm.weight"] = (d,)
    if not cfg.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (v, d)
    p = {}
    for name, shape in shapes.items():
        t = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * std
        p[name] = t.requires_grad_(True)
    return p, {n for n, s in shapes.items() if len(s) > 1}


def train_flops(cfg, batch, seq):
    """FLOPs of one training step, counted the same for both sides: 6 per
    matrix-product weight per token (forward 2, backward 4) plus dense
    attention, 12·layers·batch·seq²·(heads·head_dim)."""
    d, inter, v, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or d // nh
    mm = L * (d * nh * hd * 2 + d * nkv * hd * 2 + 3 * d * inter) + v * d
    return 6.0 * mm * batch * seq + 12.0 * L * batch * seq * seq * nh * hd


def bench_train(go, args, torch_blas_fast, log):
    sys.path.insert(0, os.path.join(REPO, "testdata", "golden"))
    import reference  # the plain-PyTorch Llama of the golden tests

    init = go.call(cmd="train_init", **TRAIN, **OPTIM)
    cfg = init["config"]  # the exact config.json gotune built
    p, decay = torch_llama(cfg, TRAIN["seed"])
    n_params = sum(t.numel() for t in p.values())
    if n_params != init["params"]:
        raise RuntimeError("shape mismatch: gotune's model has %d parameters, the torch reference %d"
                           % (init["params"], n_params))
    B, T, V = TRAIN["batch"], TRAIN["seq"], TRAIN["vocab"]
    gen = torch.Generator().manual_seed(TRAIN["seed"])
    ids = torch.randint(0, V, (B, T), generator=gen)
    labels = ids.clone()
    params = list(p.values())
    opt = torch.optim.AdamW(
        [{"params": [p[n] for n in p if n in decay], "weight_decay": OPTIM["weight_decay"]},
         {"params": [p[n] for n in p if n not in decay], "weight_decay": 0.0}],
        lr=OPTIM["lr"], betas=(OPTIM["beta1"], OPTIM["beta2"]), eps=OPTIM["eps"])
    last = {}

    def torch_step():
        logits = reference.llama_forward(p, cfg, ids)
        loss_sum, count = reference.causal_lm_loss_sum(logits, labels)
        loss = loss_sum / count
        loss.backward()
        last["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, OPTIM["max_grad_norm"]))
        opt.step()
        opt.zero_grad()
        last["loss"], last["tokens"] = float(loss), count

    steps = args.train_steps
    reps = args.reps
    if not torch_blas_fast:
        # A reference BLAS makes each torch step take seconds; keep the
        # whole run within its time budget.
        reps = min(reps, 3)
    first = {"gotune": go.call(cmd="train", steps=1)["loss"]}
    torch_step()
    first["torch"] = last["loss"]
    stats = {"gotune": Stat(), "torch": Stat()}
    go_last = {}

    def s_go():
        r = go.call(cmd="train", steps=steps)
        stats["gotune"].add(r["seconds"], r.get("cpu_seconds", 0), steps)
        go_last.update(r)

    def s_torch():
        s, c = torch_timed(torch_step, steps)
        stats["torch"].add(s, c, steps)

    log("  %-18s %-16s" % ("train step", "llama 4×128"))
    interleave([("gotune", s_go, False), ("torch", s_torch, True)], reps, args.settle, log)
    log("\n")
    flops = train_flops(cfg, B, T)
    tokens = last["tokens"]
    res = {"op": "train step", "shape": "L%d d%d V%d %d×%d" % (cfg["num_hidden_layers"], cfg["hidden_size"],
                                                                 cfg["vocab_size"], B, T),
           "model": dict(TRAIN), "optimizer": dict(OPTIM), "params": n_params, "flops": flops,
           "tokens_per_step": tokens, "steps_per_sample": steps, "reps": reps,
           "first_loss": first, "last_loss": {"gotune": go_last.get("loss"), "torch": last["loss"]},
           "last_grad_norm": {"gotune": go_last.get("grad_norm"), "torch": last["grad_norm"]}}
    for name, st in stats.items():
        res[name] = st.as_dict(flops)
        res[name]["tokens_per_s"] = tokens / st.median()
    res["ratio"] = paired_ratio(stats["gotune"], stats["torch"])
    res["ratio_of_medians"] = res["gotune"]["median_s"] / res["torch"]["median_s"]
    return res


# ---------------------------------------------------------------- report


def table(rows, onednn):
    head = ["op", "M×N×K / shape", "gotune ms", "torch ms", "ratio", "gotune GF/s", "torch GF/s", "cores g/t",
            "spread g/t"]
    if onednn:
        head[5:5] = ["onednn ms", "ratio/dnn"]
    lines = [head]
    for r in rows:
        g, t = r["gotune"], r["torch"]
        cores = "%s/%s" % tuple("%.1f" % s["cores_busy"] if s["cores_busy"] else "?" for s in (g, t))
        line = [r["op"], r["shape"], "%.2f" % (g["median_s"] * 1e3), "%.2f" % (t["median_s"] * 1e3),
                "%.2f" % r["ratio"], "%.1f" % g["gflops"], "%.1f" % t["gflops"], cores,
                "%.0f%%/%.0f%%" % (100 * g["spread"], 100 * t["spread"])]
        if onednn:
            if "onednn" in r:
                line[5:5] = ["%.2f" % (r["onednn"]["median_s"] * 1e3), "%.2f" % r["ratio_onednn"]]
            else:
                line[5:5] = ["-", "-"]
        lines.append(line)
    width = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = []
    for j, l in enumerate(lines):
        cells = [c.ljust(width[i]) if i < 2 else c.rjust(width[i]) for i, c in enumerate(l)]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in width))
    return "\n".join(out)


def write_atomic(path, text):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bench-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    args = parse_args()
    log = lambda s: (sys.stderr.write(s), sys.stderr.flush())  # noqa: E731
    torch.set_num_threads(args.threads)
    blas, blas_paths, fast = blas_library()
    load0 = os.getloadavg()
    go = GoServer(args.go_bin, args.threads)
    t_start = time.time()
    try:
        info = go.call(cmd="info")
        log("gotune %s (%s, GOMAXPROCS %d) vs torch %s (%d threads, BLAS: %s)\n"
            % (info["backend"], info["go_version"], info["gomaxprocs"], torch.__version__, torch.get_num_threads(), blas))
        if not fast:
            log("WARNING: torch.matmul runs on %s: a weak reference (about 1-2 GFLOP/s). "
                "scripts/bench-cpu.sh loads OpenBLAS for torch unless told --no-openblas or --no-fetch.\n" % blas)
        rows = []
        if not args.no_gemm:
            rows += bench_gemm(go, args, QUICK_CASES if args.quick else GEMM_CASES, log)
        train = None
        if not args.no_train:
            train = bench_train(go, args, fast, log)
            rows.append(train)
    finally:
        go.close()
    load1 = os.getloadavg()
    elapsed = time.time() - t_start

    print()
    print("gotune engine/cpu vs torch %s, %d threads each; torch BLAS: %s" % (torch.__version__, args.threads, blas))
    print("times: median of %d interleaved samples per side (training: %s); ratio: median over repeats of"
          % (args.reps, "%d" % train["reps"] if train else "-"))
    print("gotune time / torch time of back-to-back samples (< 1: gotune faster)")
    print(table(rows, args.onednn))
    if train:
        print()
        print("train step: %d params, %d counted tokens/step; tokens/s gotune %.0f, torch %.0f"
              % (train["params"], train["tokens_per_step"], train["gotune"]["tokens_per_s"], train["torch"]["tokens_per_s"]))
        print("  first-step loss gotune %.4f torch %.4f (ln V = %.4f); GF/s counts 6·weights·tokens + dense attention"
              % (train["first_loss"]["gotune"], train["first_loss"]["torch"], math.log(TRAIN["vocab"])))
    print("cores g/t: CPU time / wall time of each side (%d threads had the cores only if near %d);"
          % (args.threads, args.threads))
    print("spread g/t: (slowest - fastest sample) / median.  load average %.1f before, %.1f after (%d CPUs); %.0f s"
          % (load0[0], load1[0], os.cpu_count(), elapsed))

    if args.json:
        doc = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "load_before": load0, "load_after": load1},
            "threads": args.threads, "reps": args.reps, "sample_seconds": args.sample_seconds,
            "gotune": info, "torch": {"version": torch.__version__, "threads": torch.get_num_threads(), "blas": blas,
                      "blas_libraries": blas_paths, "blas_optimized": fast,
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
            "results": rows, "elapsed_s": elapsed,
        }
        write_atomic(args.json, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print("wrote %s" % args.json)


if __name__ == "__main__":
    main()
