"""Generate the PyTorch golden values gotune's Go tests compare against.

Run from anywhere:  /usr/bin/python3 testdata/golden/gen.py
(Debian's python3-torch and python3-numpy; CI does not run this.)

For every model in MODELS it writes testdata/golden/<model>/:
  config.json, model.safetensors   a Hugging Face checkpoint (float32 weights)
  data.jsonl                       the pre-tokenized batch
  golden.safetensors               logits, loss, gradients, training trajectories
  meta.json                        parameters (with decay flags) and every run's
                                   hyper-parameters
README.md beside this file describes every tensor. The output is a pure
function of this file and reference.py: same inputs, same bytes.

Extending: a fine-tuning method is a Method subclass (see FullFineTuning and
the notes on Method); a run is a Run in a model's `runs` list. Each run is
trained by the same train() loop, so adding a method's goldens is one class
plus one Run entry.
"""

import math
import os
import sys

sys.dont_write_bytecode = True  # keep testdata/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import hfio  # noqa: E402
import reference as ref  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

torch.set_num_threads(1)  # fixed summation order: reproducible float64 results


# ---------------------------------------------------------------- runs and schedules


class Run:
    """One training run: its data layout and optimizer hyper-parameters.

    Tensors of the run are stored under `prefix` in golden.safetensors.
    Defaults are the ones the foundation issue specifies.
    """

    def __init__(self, name, prefix, method=None, batch_size=2, grad_accum=1, seq_len=8,
                 lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, max_grad_norm=1.0,
                 schedule="constant", warmup_steps=0, total_steps=None, steps=3):
        self.name = name
        self.prefix = prefix
        self.method = method or FullFineTuning()
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.seq_len = seq_len
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.max_grad_norm = max_grad_norm
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps if total_steps is not None else steps
        self.steps = steps

    def lr_lambda(self, step):
        """Multiplier of optimizer step step+1 (torch LambdaLR calls it with 0, 1, ...).

        transformers' get_constant_schedule_with_warmup,
        get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup
        (num_cycles 0.5).
        """
        w, n = self.warmup_steps, self.total_steps
        if step < w:
            return float(step) / float(max(1, w))
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "linear":
            return max(0.0, float(n - step) / float(max(1, n - w)))
        if self.schedule == "cosine":
            progress = float(step - w) / float(max(1, n - w))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))
        raise ValueError("unknown schedule %r" % self.schedule)

    def meta(self):
        """The run's entry in meta.json."""
        m = {
            "name": self.name,
            "prefix": self.prefix,
            "method": self.method.name,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "seq_len": self.seq_len,
            "shuffle": False,
            "lr": self.lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm,
            "schedule": self.schedule,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "steps": self.steps,
        }
        cfg = self.method.meta()
        if cfg:
            m["method_config"] = cfg
        return m


# ---------------------------------------------------------------- methods


class Method:
    """A fine-tuning method: which tensors train and how they enter the model.

    To add one (LoRA, DoRA, adapters, prompt/prefix tuning):
      - init(base, cfg, rng): the trainable tensors' initial float32 values,
        keyed by the names gotune saves them under (PEFT's names for PEFT
        methods); rng is a numpy RandomState private to the run.
      - hooks(params, cfg): a reference.Hooks whose overrides read the
        trainable tensors from params (params holds the base weights and
        the trainable ones, all float64).
      - decay(name, shape): whether AdamW decays the tensor.
      - meta(): the method's hyper-parameters, stored as the run's
        "method_config" in meta.json (PEFT's adapter_config.json keys where
        there is one); also name the adapter folder there if write() makes one.
      - write(folder, init) with writes_files = True: the files a user
        would load (adapter_config.json, adapter_model.safetensors) holding
        the initial trainable tensors, in <model>/<run name>/, so the Go test
        starts from exactly these values (--init-adapter).
    Base weights not returned by init stay frozen and get no gradient.
    """

    name = "method"
    # writes_files: write() makes a folder <model>/<run name>/ (named in the
    # run's meta as "adapter").
    writes_files = False

    def init(self, base, cfg, rng):
        raise NotImplementedError

    def hooks(self, params, cfg):
        return ref.PLAIN

    def decay(self, name, shape):
        # The Hugging Face Trainer's convention: matrices and embeddings
        # decay; biases and normalisation weights (all 1-D) do not.
        return len(shape) >= 2

    def meta(self):
        return {}

    def write(self, folder, init):
        pass


class FullFineTuning(Method):
    """--method full: every base weight trains."""

    name = "full"

    def init(self, base, cfg, rng):
        return dict(base)


class LoRA(Method):
    """--method lora with PEFT's semantics (LoraConfig, lora_dropout 0).

    y = base(x) + scaling * B(A(x)), scaling = alpha/r (alpha/sqrt(r) with
    use_rslora). With use_dora (PEFT's DoraLinearLayer):
    y = base(x) + (m/n - 1) * x W^T + (m/n) * scaling * B(A(x)), where
    n = ||W + scaling * B A|| per output row is treated as a constant (no
    gradient flows through it) and m is lora_magnitude_vector.
    GPT-2's Conv1D targets (fan_in_fan_out) use the same A [r, in] and
    B [out, r]. Tensor names are those PEFT saves in adapter_model.safetensors:
    base_model.model.<module path>.lora_A.weight, .lora_B.weight and
    .lora_magnitude_vector. A is PEFT's kaiming-uniform(a=sqrt(5)) draw; B is
    drawn non-zero (N(0, b_std^2)) so that gradients reach A; m is PEFT's
    initial value, the row norms n at the initial A and B.

    Not yet in any model's runs: add e.g.
    Run("lora", "lora.", method=LoRA(r=4, alpha=8, targets=("q_proj", "v_proj"))).
    """

    name = "lora"

    def __init__(self, r=4, alpha=8, targets=("q_proj", "v_proj"), use_rslora=False, use_dora=False,
                 b_std=0.05):
        self.r, self.alpha, self.targets = r, alpha, tuple(targets)
        self.use_rslora, self.use_dora, self.b_std = use_rslora, use_dora, b_std

    @property
    def scaling(self):
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r

    @staticmethod
    def key(path, what):
        return "base_model.model.%s.%s" % (path, what)

    def modules(self, base, cfg):
        """Module paths of the targeted linear layers, sorted."""
        conv = cfg["architectures"][0] == "GPT2LMHeadModel"
        paths = []
        for n, t in base.items():
            if not n.endswith(".weight") or t.dim() != 2 or "embed" in n or n.startswith("transformer.w"):
                continue
            path = n[: -len(".weight")]
            leaf = path.rsplit(".", 1)[-1]
            if path == "lm_head":
                continue
            if self.targets == ("all-linear",) or leaf in self.targets:
                paths.append((path, conv))
        return sorted(paths)

    def init(self, base, cfg, rng):
        out = {}
        self.fan_in_fan_out = cfg["architectures"][0] == "GPT2LMHeadModel"
        for path, conv in self.modules(base, cfg):
            w = base[path + ".weight"]
            w_oi = w.t() if conv else w  # [out, in]
            n_out, n_in = w_oi.shape
            bound = 1.0 / math.sqrt(n_in)  # kaiming_uniform_(a=sqrt(5)) on [r, in]
            a = torch.from_numpy(rng.uniform(-bound, bound, (self.r, n_in)).astype(np.float32))
            b = randn(rng, (n_out, self.r), self.b_std)
            out[self.key(path, "lora_A.weight")] = a
            out[self.key(path, "lora_B.weight")] = b
            if self.use_dora:
                merged = w_oi.double() + self.scaling * (b.double() @ a.double())
                out[self.key(path, "lora_magnitude_vector")] = merged.norm(dim=1).to(torch.float32)
        return out

    def hooks(self, params, cfg):
        method = self

        class H(ref.Hooks):
            def apply(self, path, x, w_oi, base_out):
                a = params.get(method.key(path, "lora_A.weight"))
                if a is None:
                    return base_out
                b = params[method.key(path, "lora_B.weight")]
                lora = (x @ a.t()) @ b.t() * method.scaling
                if not method.use_dora:
                    return base_out + lora
                m = params[method.key(path, "lora_magnitude_vector")]
                n = (w_oi + method.scaling * (b @ a)).norm(dim=1).detach()
                scale = m / n
                return base_out + (scale - 1) * (x @ w_oi.t()) + scale * lora

            def linear(self, path, x, weight, bias):
                return self.apply(path, x, weight, ref.Hooks.linear(self, path, x, weight, bias))

            def conv1d(self, path, x, weight, bias):
                return self.apply(path, x, weight.t(), ref.Hooks.conv1d(self, path, x, weight, bias))

        return H()

    def decay(self, name, shape):
        # The Hugging Face Trainer decays every parameter that is neither a
        # bias nor a normalisation weight: lora_A, lora_B and DoRA's
        # magnitude vector all decay.
        return True

    writes_files = True

    def write(self, folder, init):
        os.makedirs(folder, exist_ok=True)
        cfg = dict(self.meta(), fan_in_fan_out=self.fan_in_fan_out, inference_mode=True,
                   init_lora_weights=True, modules_to_save=None, base_model_name_or_path=None)
        hfio.write_json(os.path.join(folder, "adapter_config.json"), cfg)
        hfio.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), init, {"format": "pt"})

    def meta(self):
        return {"peft_type": "LORA", "r": self.r, "lora_alpha": self.alpha, "lora_dropout": 0.0,
                "target_modules": list(self.targets), "use_rslora": self.use_rslora,
                "use_dora": self.use_dora, "bias": "none", "task_type": "CAUSAL_LM"}


# ---------------------------------------------------------------- data


def micro_batches(rows, run):
    """The micro-batches of every optimizer step, in order.

    --shuffle=false: consecutive lines in file order, wrapping around at the
    end of the file (a new epoch); each sequence truncated to seq_len and
    right-padded (input 0, label -100). Rows without labels train on every
    token (labels = input_ids).
    """
    if len(rows) % run.batch_size:
        raise ValueError("%d lines are not a whole number of batches of %d" % (len(rows), run.batch_size))
    steps = []
    cursor = 0
    for _ in range(run.steps):
        micro = []
        for _ in range(run.grad_accum):
            ids, labels = [], []
            for _ in range(run.batch_size):
                r = rows[cursor % len(rows)]
                cursor += 1
                x = list(r["input_ids"])[: run.seq_len]
                y = list(r.get("labels", r["input_ids"]))[: run.seq_len]
                pad = run.seq_len - len(x)
                ids.append(x + [0] * pad)
                labels.append(y + [ref.IGNORE_INDEX] * pad)
            micro.append((torch.tensor(ids), torch.tensor(labels)))
        steps.append(micro)
    return steps


# ---------------------------------------------------------------- training


def train(base, cfg, run, rows, rng):
    """Train run.steps AdamW steps in float64; return the tensors to store.

    Returns (init, out): the method's initial trainable float32 tensors, and
    the golden tensors (without the run's prefix): grad.<name> (gradient of
    the first step's mean loss, before clipping), losses, grad_norms, lrs,
    after.<name>.
    """
    method = run.method
    init = method.init(base, cfg, rng)
    params = {n: t.double() for n, t in base.items()}
    trainable = {}
    for n in sorted(init):
        trainable[n] = init[n].double().clone().requires_grad_(True)
        params[n] = trainable[n]
    hooks = method.hooks(params, cfg)

    names = list(trainable)
    decay = [trainable[n] for n in names if method.decay(n, trainable[n].shape)]
    no_decay = [trainable[n] for n in names if not method.decay(n, trainable[n].shape)]
    groups = [g for g in ({"params": decay, "weight_decay": run.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    opt = torch.optim.AdamW(groups, lr=run.lr, betas=run.betas, eps=run.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, run.lr_lambda)

    losses, norms, lrs = [], [], []
    first_grads = None
    for micro in micro_batches(rows, run):
        opt.zero_grad()
        counted = sum(ref.counted_tokens(labels) for _, labels in micro)
        step_loss = 0.0
        for ids, labels in micro:
            logits = ref.forward(params, cfg, ids, hooks)
            loss_sum, _ = ref.causal_lm_loss_sum(logits, hooks.extend_labels(labels))
            (loss_sum / counted).backward()
            step_loss += loss_sum.item()
        losses.append(step_loss / counted)
        if first_grads is None:
            first_grads = {n: trainable[n].grad.detach().clone() for n in names}
        # torch.nn.utils.clip_grad_norm_ (1.13): coef = max/(norm + 1e-6), clamped to 1.
        norms.append(float(torch.nn.utils.clip_grad_norm_([trainable[n] for n in names], run.max_grad_norm)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    out = {}
    for n in names:
        out["grad." + n] = first_grads[n]
        out["after." + n] = trainable[n].detach()
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    out["grad_norms"] = torch.tensor(norms, dtype=torch.float64)
    out["lrs"] = torch.tensor(lrs, dtype=torch.float64)
    return init, out


def forward_golden(base, cfg, rows, run):
    """logits [B, T, V] and loss [1] of the first batch at the initial weights."""
    params = {n: t.double() for n, t in base.items()}
    ids, labels = micro_batches(rows, run)[0][0]
    with torch.no_grad():
        logits = ref.forward(params, cfg, ids)
        loss_sum, counted = ref.causal_lm_loss_sum(logits, labels)
    return {"logits": logits, "loss": (loss_sum / counted).reshape(1)}


# ---------------------------------------------------------------- models


def randn(rng, shape, std, mean=0.0):
    """float32 N(mean, std^2) from numpy's legacy generator (stable across versions)."""
    return torch.from_numpy((mean + std * rng.standard_normal(shape)).astype(np.float32))


def llama_weights(cfg, rng, std=0.1, emb_std=0.2, qkv_bias=False):
    """Random LLaMA/Qwen2 weights in Hugging Face names and shapes."""
    d = cfg["hidden_size"]
    v = cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q_out = cfg["num_attention_heads"] * hd
    kv_out = cfg["num_key_value_heads"] * hd
    inter = cfg["intermediate_size"]
    w = {"model.embed_tokens.weight": randn(rng, (v, d), emb_std)}
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        w[pre + "input_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
        for name, out in (("q", q_out), ("k", kv_out), ("v", kv_out)):
            w[pre + "self_attn.%s_proj.weight" % name] = randn(rng, (out, d), std)
            if qkv_bias:
                w[pre + "self_attn.%s_proj.bias" % name] = randn(rng, (out,), std)
        w[pre + "self_attn.o_proj.weight"] = randn(rng, (d, q_out), std)
        w[pre + "post_attention_layernorm.weight"] = randn(rng, (d,), 0.1, 1.0)
        w[pre + "mlp.gate_proj.weight"] = randn(rng, (inter, d), std)
        w[pre + "mlp.up_proj.weight"] = randn(rng, (inter, d), std)
        w[pre + "mlp.down_proj.weight"] = randn(rng, (d, inter), std)
    w["model.norm.weight"] = randn(rng, (d,), 0.1, 1.0)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = randn(rng, (v, d), std)
    return w


def gpt2_weights(cfg, rng, std=0.1, emb_std=0.2):
    """Random GPT-2 weights in Hugging Face names; Conv1D weights are [in, out]."""
    d = cfg["n_embd"]
    inner = cfg["n_inner"] or 4 * d
    w = {
        "transformer.wte.weight": randn(rng, (cfg["vocab_size"], d), emb_std),
        "transformer.wpe.weight": randn(rng, (cfg["n_positions"], d), std),
    }
    for i in range(cfg["n_layer"]):
        pre = "transformer.h.%d." % i
        w[pre + "ln_1.weight"] = randn(rng, (d,), 0.1, 1.0)
        w[pre + "ln_1.bias"] = randn(rng, (d,), std)
        w[pre + "attn.c_attn.weight"] = randn(rng, (d, 3 * d), std)
        w[pre + "attn.c_attn.bias"] = randn(rng, (3 * d,), std)
        w[pre + "attn.c_proj.weight"] = randn(rng, (d, d), std)
        w[pre + "attn.c_proj.bias"] = randn(rng, (d,), std)
        w[pre + "ln_2.weight"] = randn(rng, (d,), 0.1, 1.0)
        w[pre + "ln_2.bias"] = randn(rng, (d,), std)
        w[pre + "mlp.c_fc.weight"] = randn(rng, (d, inner), std)
        w[pre + "mlp.c_fc.bias"] = randn(rng, (inner,), std)
        w[pre + "mlp.c_proj.weight"] = randn(rng, (inner, d), std)
        w[pre + "mlp.c_proj.bias"] = randn(rng, (d,), std)
    w["transformer.ln_f.weight"] = randn(rng, (d,), 0.1, 1.0)
    w["transformer.ln_f.bias"] = randn(rng, (d,), std)
    return w


def golden_data(rng, vocab):
    """Two sequences of 8 tokens with different numbers of counted targets.

    Line 1 masks a 3-token prompt (5 counted targets); line 2 masks its first
    token and one in the middle (6 counted targets). Token ids avoid 0-2.
    """
    rows = []
    for mask in ([0, 1, 2], [0, 4]):
        ids = [int(t) for t in rng.randint(3, vocab, size=8)]
        labels = [ref.IGNORE_INDEX if i in mask else t for i, t in enumerate(ids)]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def standard_runs(extra):
    """The full fine-tuning run every model has, plus model-specific extras."""
    return [Run("full", "")] + extra


MODELS = [
    {
        "name": "llama-gqa",
        "seed": 1001,
        "config": hfio.llama_config("LlamaForCausalLM", "llama", vocab=64, hidden=32, layers=2, heads=4,
                                    kv_heads=2, inter=40, max_pos=64, theta=10000.0, eps=1e-5, tied=False),
        "weights": lambda cfg, rng: llama_weights(cfg, rng),
        "runs": standard_runs([
            Run("accum", "accum.", batch_size=1, grad_accum=2),
            Run("warmup", "warmup.", schedule="linear", warmup_steps=2, total_steps=5,
                max_grad_norm=3.5),  # steps 1-2 clipped, step 3 not: both branches
        ]),
    },
    {
        "name": "qwen2-tied",
        "seed": 2002,
        "config": hfio.qwen2_config(vocab=64, hidden=32, layers=2, heads=4, kv_heads=1, inter=48,
                                    max_pos=64, theta=1e6, eps=1e-6, tied=True),
        "weights": lambda cfg, rng: llama_weights(cfg, rng, qkv_bias=True),
        "runs": standard_runs([]),
    },
    {
        "name": "gpt2",
        "seed": 3003,
        "config": hfio.gpt2_config(vocab=64, n_embd=32, n_layer=2, n_head=4, n_positions=64, eps=1e-5,
                                   bos=63, eos=63),
        "weights": lambda cfg, rng: gpt2_weights(cfg, rng),
        "runs": standard_runs([]),
    },
]


def generate(spec):
    folder = os.path.join(HERE, spec["name"])
    os.makedirs(folder, exist_ok=True)
    cfg = spec["config"]
    rng = np.random.RandomState(spec["seed"])
    base = spec["weights"](cfg, rng)
    rows = golden_data(rng, cfg["vocab_size"])

    hfio.write_json(os.path.join(folder, "config.json"), cfg)
    hfio.write_safetensors(os.path.join(folder, "model.safetensors"), base, {"format": "pt"})
    hfio.write_jsonl(os.path.join(folder, "data.jsonl"), rows)

    golden = forward_golden(base, cfg, rows, spec["runs"][0])
    runs_meta = []
    for k, run in enumerate(spec["runs"]):
        # Each run draws its method's initial tensors from its own stream.
        init, out = train(base, cfg, run, rows, np.random.RandomState(spec["seed"] * 100 + k))
        if run.method.writes_files:
            run.method.write(os.path.join(folder, run.name), init)
        for n, t in out.items():
            golden[run.prefix + n] = t
        m = run.meta()
        if run.method.writes_files:
            m["adapter"] = run.name
        m["trainable"] = [{"name": n, "shape": list(t.shape), "decay": run.method.decay(n, t.shape)}
                          for n, t in sorted(init.items())]
        m["counted_tokens"] = [sum(ref.counted_tokens(l) for _, l in micro)
                               for micro in micro_batches(rows, run)]
        runs_meta.append(m)

    # Accumulation changes how a step is computed, not what: the same data in
    # micro-batches must give the full batch's trajectory.
    for run in spec["runs"]:
        if run.grad_accum > 1:
            assert torch.allclose(golden[run.prefix + "losses"], golden["losses"], rtol=1e-12), run.name
    golden = {n: t.to(torch.float32) for n, t in golden.items()}
    hfio.write_safetensors(os.path.join(folder, "golden.safetensors"), golden,
                           {"generator": "testdata/golden/gen.py", "torch": torch.__version__.split("+")[0]})
    meta = {
        "model": spec["name"],
        "architecture": cfg["architectures"][0],
        "config": "config.json",
        "weights": "model.safetensors",
        "data": "data.jsonl",
        "golden": "golden.safetensors",
        "params": [{"name": n, "shape": list(t.shape), "decay": FullFineTuning().decay(n, t.shape)}
                   for n, t in sorted(base.items())],
        "runs": runs_meta,
    }
    hfio.write_json(os.path.join(folder, "meta.json"), meta)
    first = golden["losses"].tolist()
    print("%-11s params=%d  losses=%s  grad_norms=%s" % (
        spec["name"], sum(t.numel() for t in base.values()),
        " ".join("%.5f" % x for x in first),
        " ".join("%.4f" % x for x in golden["grad_norms"].tolist())))


def self_check():
    """Check reference.py's building blocks against second formulations."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64)
    # gelu_new is torch's tanh-approximate GELU.
    assert torch.allclose(ref.gelu_new(x), torch.nn.functional.gelu(x, approximate="tanh"), rtol=0, atol=1e-14)
    # rotate_half RoPE rotates the complex number x[i] + j*x[i+D/2] by pos*inv_freq[i].
    cos, sin = ref.rope_tables(8, 10000.0, torch.arange(3, 8), torch.float64)
    z = torch.complex(x[..., :4], x[..., 4:])
    ang = torch.arange(3, 8, dtype=torch.float64)[:, None] / 10000.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    zr = z * torch.polar(torch.ones_like(ang), ang)
    assert torch.allclose(ref.apply_rope(x, cos, sin), torch.cat((zr.real, zr.imag), -1), rtol=0, atol=1e-14)
    # repeat_kv: query head h reads kv head h // n_rep.
    r = ref.repeat_kv(x[:, :2], 3)
    assert all(torch.equal(r[:, h], x[:, h // 3]) for h in range(6))
    # causal attention with a 2-position prefix, against an explicit loop.
    q = x[:, :, :3]
    out = ref.causal_attention(q, x, x)
    for t in range(3):
        s = torch.softmax(q[:, :, t : t + 1] @ x[:, :, : t + 3].transpose(2, 3) / math.sqrt(8), -1)
        assert torch.allclose(out[:, :, t : t + 1], s @ x[:, :, : t + 3], rtol=0, atol=1e-14)


def method_check():
    """LoRA and DoRA through Hooks must equal the model with merged weights."""
    ids = torch.tensor([[5, 9, 33, 2, 17, 40]])
    cases = [(MODELS[0], {}), (MODELS[0], {"use_rslora": True}), (MODELS[0], {"use_dora": True}),
             (MODELS[1], {"targets": ("all-linear",), "use_dora": True}),
             (MODELS[2], {"targets": ("c_attn", "c_fc"), "use_dora": True})]
    for spec, kw in cases:
        cfg = spec["config"]
        base = spec["weights"](cfg, np.random.RandomState(7))
        lora = LoRA(**kw)
        init = lora.init(base, cfg, np.random.RandomState(8))
        for n in init:  # move m off its initial value so (m/n - 1) matters
            if n.endswith("lora_magnitude_vector"):
                init[n] = init[n] * (1 + 0.1 * torch.from_numpy(np.random.RandomState(9).standard_normal(init[n].shape)).float())
        assert lora.modules(base, cfg), kw
        params = {n: t.double() for n, t in base.items()}
        params.update({n: t.double() for n, t in init.items()})
        merged = {n: t.double() for n, t in base.items()}
        for path, conv in lora.modules(base, cfg):
            w = merged[path + ".weight"]
            w = w.t() if conv else w
            d = w + lora.scaling * (params[lora.key(path, "lora_B.weight")] @ params[lora.key(path, "lora_A.weight")])
            if lora.use_dora:
                m = params[lora.key(path, "lora_magnitude_vector")]
                d = m[:, None] * d / d.norm(dim=1, keepdim=True)
            merged[path + ".weight"] = d.t() if conv else d
        got = ref.forward(params, cfg, ids, lora.hooks(params, cfg))
        want = ref.forward(merged, cfg, ids)
        assert torch.allclose(got, want, rtol=0, atol=1e-12), kw
        assert not torch.allclose(got, ref.forward({n: t.double() for n, t in base.items()}, cfg, ids)), kw


def main():
    self_check()
    method_check()
    for spec in MODELS:
        generate(spec)


if __name__ == "__main__":
    main()
