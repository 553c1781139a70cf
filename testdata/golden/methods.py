"""Fine-tuning methods for the golden generator, with PEFT's semantics.

Each method says which tensors train (under the names gotune saves them),
how they enter the model (through reference.Hooks), which of them AdamW
decays, and which files a user would load them from. gen.py trains every
method with the same loop.

transformers and peft are not installable here, so PEFT's behaviour is
restated from its source (huggingface/peft, read for names and semantics,
not copied). The file formats follow PEFT 0.14 (December 2024, the release
contemporary with transformers 4.46, whose config.json hfio imitates):

- adapter_model.safetensors holds what get_peft_model_state_dict returns
  (utils/save_and_load.py): LoRA keys `base_model.model.<module path>.
  lora_A.weight` [r, in] and `.lora_B.weight` [out, r]; DoRA's magnitude as
  `.lora_magnitude_vector` [out] (PEFT strips the `.weight` of the DoRA
  sub-module so that the format predates its refactor); prompt-learning
  methods a single `prompt_embeddings`, which is the prompt encoder's
  *output* during training (get_prompt_embedding_to_save runs the encoder):
  the embedding itself for prompt tuning and prefix tuning, the MLP/LSTM
  output for P-Tuning, the projected key/value vector for prefix tuning
  with prefix_projection. The encoder's own weights are not in PEFT's file;
  gotune keeps them beside it in prompt_encoder.safetensors (see PTuning).
- adapter_config.json is the config dataclass's asdict(), keys sorted,
  indent 2, no final newline, with inference_mode true (save_pretrained sets
  it while writing).

Bottleneck adapters are not a PEFT method; their format is gotune's own
(see Bottleneck).
"""

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

import hfio
import reference as ref

TASK_TYPE = "CAUSAL_LM"


# ---------------------------------------------------------------- random draws


def randn(rng, shape, std, mean=0.0):
    """float32 N(mean, std^2) from numpy's legacy generator (stable across versions)."""
    return torch.from_numpy((mean + std * rng.standard_normal(shape)).astype(np.float32))


def uniform(rng, shape, bound):
    """float32 U(-bound, bound): torch's default Linear/LSTM initialisation shape."""
    return torch.from_numpy(rng.uniform(-bound, bound, shape).astype(np.float32))


# ---------------------------------------------------------------- model geometry


def is_gpt2(cfg):
    return cfg["architectures"][0] == "GPT2LMHeadModel"


def num_layers(cfg):
    return cfg["n_layer"] if is_gpt2(cfg) else cfg["num_hidden_layers"]


def hidden_size(cfg):
    return cfg["n_embd"] if is_gpt2(cfg) else cfg["hidden_size"]


def num_heads(cfg):
    return cfg["n_head"] if is_gpt2(cfg) else cfg["num_attention_heads"]


def layer_path(cfg, i):
    """Hugging Face module path of transformer layer i."""
    return ("transformer.h.%d" if is_gpt2(cfg) else "model.layers.%d") % i


def peft_key(path, what):
    """Name of an adapter tensor in adapter_model.safetensors (PeftModel's prefix)."""
    return "base_model.model.%s.%s" % (path, what)


def linear_fwd(x, params, name):
    """nn.Linear with weight [out, in] and optional bias, stored under name.weight/.bias."""
    y = x @ params[name + ".weight"].t()
    b = params.get(name + ".bias")
    return y if b is None else y + b


def init_linear(rng, out, name, n_out, n_in):
    """torch's default nn.Linear initialisation: weight and bias U(+-1/sqrt(in))."""
    bound = 1.0 / math.sqrt(n_in)
    out[name + ".weight"] = uniform(rng, (n_out, n_in), bound)
    out[name + ".bias"] = uniform(rng, (n_out,), bound)


ACTIVATIONS = {
    # The names Hugging Face's ACT2FN uses; "gelu" is the exact (erf) GELU.
    "relu": torch.relu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,  # ACT2FN["swish"] is SiLU too (AdapterHub's Houlsby default)
    "tanh": torch.tanh,
}


# ---------------------------------------------------------------- the interface


class Method:
    """A fine-tuning method: which tensors train and how they enter the model.

    - init(base, cfg, rng): the trainable tensors' initial float32 values,
      keyed by the names gotune saves them under (PEFT's names for PEFT
      methods); rng is a numpy RandomState private to the run. A method may
      remember cfg here (the hyper-parameters below depend on the model).
    - hooks(params, cfg): a reference.Hooks whose overrides read the
      trainable tensors from params (params holds the base weights and
      the trainable ones, all float64).
    - decay(name, shape): whether AdamW decays the tensor.
    - meta(): gotune's options for the method, stored as the run's
      "method_config" in meta.json (keys are issue 4's flag names in
      snake_case: lora_r -> --lora-r).
    - adapter_config(base_path): the adapter_config.json a user loads, or
      None when the method writes no adapter folder (full, freeze).
    - adapter_weights(trainable): what adapter_model.safetensors holds for
      these trainable values; by default the trainable tensors themselves.
    - encoder_weights(trainable): tensors gotune keeps in ENCODER_FILE
      beside the adapter (the prompt encoder weights PEFT does not save), or
      None.
    - prepended(): how many virtual tokens are prepended to every input
      sequence (the logits then have that many more positions).
    Base weights not returned by init stay frozen and get no gradient.
    """

    name = "method"
    ENCODER_FILE = "prompt_encoder.safetensors"

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

    def adapter_config(self, base_path):
        return None

    def adapter_weights(self, trainable):
        return dict(trainable)

    def encoder_weights(self, trainable):
        return None

    def prepended(self):
        return 0

    def write(self, folder, init, base_path):
        """Write the adapter folder holding the initial tensors (--init-adapter)."""
        os.makedirs(folder, exist_ok=True)
        hfio.write_json(os.path.join(folder, "adapter_config.json"), self.adapter_config(base_path),
                        final_newline=False)
        weights = {n: t.to(torch.float32) for n, t in self.adapter_weights(init).items()}
        hfio.write_safetensors(os.path.join(folder, "adapter_model.safetensors"), weights, {"format": "pt"})
        enc = self.encoder_weights(init)
        if enc is not None:
            hfio.write_safetensors(os.path.join(folder, self.ENCODER_FILE), enc, {"format": "pt"})


def no_bias_no_norm_decay(name):
    """The Hugging Face Trainer's rule by name: no decay for biases and norms.

    transformers' get_decay_parameter_names drops every parameter whose name
    contains "bias" (so LSTM's bias_ih_l0 too) and those of normalisation
    layers.
    """
    leaf = name.rsplit(".", 1)[-1] if "." in name else name
    if "bias" in leaf:
        return False
    return not ("norm" in name or ".ln_" in name)


class FullFineTuning(Method):
    """--method full: every base weight trains."""

    name = "full"

    def init(self, base, cfg, rng):
        return dict(base)


# ---------------------------------------------------------------- freeze


class Freeze(Method):
    """--method freeze: only the chosen layers / modules train.

    trainable_layers N > 0 trains the last N transformer layers, N < 0 the
    first |N|. modules "all" trains every parameter of those layers,
    otherwise the named sub-modules (e.g. "mlp", "self_attn": parameters
    whose path within the layer starts with that component). extra names
    modules outside the layers, matched on the last component of their
    module path ("norm" is model.norm, the final norm, not the layers'
    input_layernorm; "embed_tokens", "lm_head"; GPT-2's "ln_f", "wte").
    LLaMA-Factory matches extra modules as substrings of parameter names,
    which would also catch every layer's *_layernorm for "norm"; gotune
    follows the stricter rule above.
    """

    name = "freeze"

    def __init__(self, trainable_layers=1, modules=("all",), extra=()):
        self.trainable_layers = trainable_layers
        self.modules = tuple(modules)
        self.extra = tuple(extra)

    def selected(self, base, cfg):
        n = num_layers(cfg)
        k = self.trainable_layers
        ids = range(n - k, n) if k > 0 else range(0, -k)
        names = set()
        for i in ids:
            pre = layer_path(cfg, i) + "."
            for name in base:
                if not name.startswith(pre):
                    continue
                first = name[len(pre):].split(".", 1)[0]
                if self.modules == ("all",) or first in self.modules:
                    names.add(name)
        layer_root = layer_path(cfg, 0).rsplit(".", 1)[0] + "."
        for name in base:
            if name.startswith(layer_root):
                continue
            module = name.rsplit(".", 1)[0]
            if module.rsplit(".", 1)[-1] in self.extra:
                names.add(name)
        return sorted(names)

    def init(self, base, cfg, rng):
        return {n: base[n] for n in self.selected(base, cfg)}

    def meta(self):
        return {"freeze_trainable_layers": self.trainable_layers,
                "freeze_trainable_modules": ",".join(self.modules),
                "freeze_extra_modules": ",".join(self.extra)}


# ---------------------------------------------------------------- LoRA / DoRA


class LoRA(Method):
    """--method lora with PEFT's semantics (LoraConfig, lora_dropout 0).

    y = base(x) + scaling * B(A(x)), scaling = alpha/r (alpha/sqrt(r) with
    use_rslora). With use_dora (PEFT's DoraLinearLayer, tuners/lora/dora.py):
    y = base(x) + (m/n - 1) * x W^T + (m/n) * scaling * B(A(x)), where
    n = ||W + scaling * B A|| per output row is detached (no gradient flows
    through it, section 4.3 of the DoRA paper, as PEFT does), m is
    lora_magnitude_vector, and the base bias is outside the (m/n - 1) term
    (PEFT computes F.linear(x, W) without bias there).
    GPT-2's Conv1D targets (weights [in, out]) are fan_in_fan_out layers in
    PEFT, which keeps A [r, in] and B [out, r] and forces fan_in_fan_out
    true in the config. "all-linear" is PEFT's shorthand for every linear
    (and Conv1D) layer except the output layer; PEFT saves the resolved
    module names as target_modules.
    Initial values: A is PEFT's kaiming-uniform(a=sqrt(5)) draw
    (U(+-1/sqrt(in))); B is drawn non-zero (N(0, b_std^2)) so that
    gradients reach A; m is PEFT's initial value (the row norms n at the
    initial A and B) times (1 + m_jitter * N(0, 1)), so that m/n - 1 is not
    zero at the first step.
    """

    name = "lora"

    def __init__(self, r=4, alpha=8, targets=("q_proj", "v_proj"), use_rslora=False, use_dora=False,
                 b_std=0.05, m_jitter=0.0):
        self.r, self.alpha, self.targets = r, alpha, tuple(targets)
        self.use_rslora, self.use_dora, self.b_std = use_rslora, use_dora, b_std
        self.m_jitter = m_jitter
        self.fan_in_fan_out = False
        self.resolved = []

    @property
    def scaling(self):
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r

    key = staticmethod(peft_key)

    def modules(self, base, cfg):
        """(module path, is Conv1D) of the targeted linear layers, sorted."""
        conv = is_gpt2(cfg)
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
        self.fan_in_fan_out = is_gpt2(cfg)
        mods = self.modules(base, cfg)
        self.resolved = sorted({p.rsplit(".", 1)[-1] for p, _ in mods})
        for path, conv in mods:
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
                m = merged.norm(dim=1)
                if self.m_jitter:
                    m = m * (1 + self.m_jitter * torch.from_numpy(rng.standard_normal(n_out)))
                out[self.key(path, "lora_magnitude_vector")] = m.to(torch.float32)
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

    def meta(self):
        return {"lora_r": self.r, "lora_alpha": self.alpha, "lora_dropout": 0.0,
                "lora_targets": ",".join(self.targets), "use_rslora": self.use_rslora,
                "use_dora": self.use_dora}

    def adapter_config(self, base_path):
        # LoraConfig's fields in PEFT 0.14, as save_pretrained writes them.
        return {
            "alpha_pattern": {},
            "auto_mapping": None,
            "base_model_name_or_path": base_path,
            "bias": "none",
            "eva_config": None,
            "exclude_modules": None,
            "fan_in_fan_out": self.fan_in_fan_out,
            "inference_mode": True,
            "init_lora_weights": True,
            "layer_replication": None,
            "layers_pattern": None,
            "layers_to_transform": None,
            "loftq_config": {},
            "lora_alpha": self.alpha,
            "lora_bias": False,
            "lora_dropout": 0.0,
            "megatron_config": None,
            "megatron_core": "megatron.core",
            "modules_to_save": None,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "revision": None,
            "target_modules": list(self.resolved),
            "task_type": TASK_TYPE,
            "use_dora": self.use_dora,
            "use_rslora": self.use_rslora,
        }


# ---------------------------------------------------------------- bottleneck adapters


# AdapterHub's bottleneck configurations (the adapters library,
# src/adapters/configuration/adapter_config.py: DoubleSeqBnConfig,
# SeqBnConfig, ParBnConfig), the switches that decide where an adapter
# sits and what it reads. gotune's own two forms have no AdapterHub name.
ADAPTERHUB = {
    "houlsby": dict(name="double_seq_bn", mh_adapter=True, original_ln_before=False, original_ln_after=True,
                    residual_before_ln=True, is_parallel=False),
    "pfeiffer": dict(name="seq_bn", mh_adapter=False, original_ln_before=True, original_ln_after=True,
                     residual_before_ln=True, is_parallel=False),
    "parallel": dict(name="par_bn", mh_adapter=False, original_ln_before=False, original_ln_after=True,
                     residual_before_ln=True, is_parallel=True),
    # Houlsby's MLP adapter alone; expressible in AdapterHub, not named there.
    "series": dict(name=None, mh_adapter=False, original_ln_before=False, original_ln_after=True,
                   residual_before_ln=True, is_parallel=False),
}
ADAPTER_INPUT = {"houlsby": "output", "pfeiffer": "output+residual", "parallel": "residual",
                 "series": "output", "parallel-normed": "normed"}
ADAPTER_INIT = {"houlsby": "bert", "pfeiffer": "bert", "parallel": "mam_adapter", "series": "mam_adapter",
                "parallel-normed": "mam_adapter"}


def adapterhub_block(hub, sub_out, residual, bottleneck):
    """The output of a transformer sub-block with one bottleneck adapter, as
    AdapterHub's BottleneckLayer computes it in its LLaMA and GPT-2 blocks
    (src/adapters/methods/bottleneck.py and modeling.py: Adapter and
    ParallelAdapter's pre_forward, forward and post_forward; the blocks in
    src/adapters/models/llama/modeling_llama.py and gpt2/modeling_gpt2.py pass
    the sub-layer output, the residual and layer_norm=None).

    bottleneck(v) is scaling * up(act(down(v))); no ln_before/ln_after,
    gating or dropout (the configurations' defaults).
    """
    if hub["is_parallel"]:
        # ParallelAdapter: reads the residual input, adds the sub-layer output after.
        out = bottleneck(residual) + sub_out
    else:
        adapter_residual = sub_out if hub["residual_before_ln"] else None
        v = sub_out + residual if hub["original_ln_before"] else sub_out
        if not hub["residual_before_ln"]:
            adapter_residual = v
        out = bottleneck(v) + adapter_residual
    if hub["original_ln_after"]:
        out = out + residual
    return out


class Bottleneck(Method):
    """--method adapter: bottleneck adapters (gotune's own format, not PEFT's).

    An adapter maps its input v to up(act(down(v))) * scaling, down =
    Linear(hidden, bottleneck) and up = Linear(bottleneck, hidden), both with
    bias, bottleneck = hidden // reduction_factor. With x the residual stream
    entering a sub-block, xn its normalised input and h the sub-layer's
    output (o_proj / attn.c_proj, down_proj / mlp.c_proj), the block computes:
      houlsby          AdapterHub's double_seq_bn, attention and MLP
      pfeiffer         AdapterHub's seq_bn, MLP
      parallel         AdapterHub's par_bn, MLP
                       (all three via adapterhub_block, AdapterHub's semantics)
      series           MLP: x + h + ad(h)  (gotune's former "pfeiffer")
      parallel-normed  MLP: x + h + ad(xn) (gotune's former "parallel")
    Tensors: base_model.model.<layer path>.attn_adapter.{down_proj,up_proj}.
    {weight,bias} and .mlp_adapter. ... (<layer path> model.layers.i or
    transformer.h.i), down_proj.weight [bottleneck, hidden], up_proj.weight
    [hidden, bottleneck]. The goldens draw every tensor non-zero (gotune's
    own initialisations are checked by its Go tests).
    adapter_config.json: peft_type "BOTTLENECK", adapter_variant,
    adapter_input, adapterhub_config, AdapterHub's switches, init_weights,
    reduction_factor, bottleneck_size, non_linearity (relu, gelu = exact
    erf GELU, silu, swish = silu, tanh), scaling, target_layers (null =
    every layer).
    Weight decay: the weights decay, the biases do not.
    """

    name = "adapter"

    def __init__(self, variant="houlsby", reduction_factor=4, non_linearity="relu", scaling=1.0,
                 target_layers=None, std=0.15, bias_std=0.05):
        if variant not in ADAPTER_INPUT:
            raise ValueError("unknown adapter variant %r" % variant)
        self.variant, self.reduction_factor = variant, reduction_factor
        self.non_linearity, self.scaling = non_linearity, scaling
        self.target_layers = target_layers
        self.std, self.bias_std = std, bias_std

    def sites(self):
        return ("attn_adapter", "mlp_adapter") if self.variant == "houlsby" else ("mlp_adapter",)

    def layers(self, cfg):
        return list(range(num_layers(cfg))) if self.target_layers is None else list(self.target_layers)

    def init(self, base, cfg, rng):
        self.cfg = cfg
        d = hidden_size(cfg)
        self.bottleneck = d // self.reduction_factor
        out = {}
        for i in self.layers(cfg):
            for site in self.sites():
                pre = peft_key(layer_path(cfg, i), site)
                out[pre + ".down_proj.weight"] = randn(rng, (self.bottleneck, d), self.std)
                out[pre + ".down_proj.bias"] = randn(rng, (self.bottleneck,), self.bias_std)
                out[pre + ".up_proj.weight"] = randn(rng, (d, self.bottleneck), self.std)
                out[pre + ".up_proj.bias"] = randn(rng, (d,), self.bias_std)
        return out

    def hooks(self, params, cfg):
        method = self
        act = ACTIVATIONS[self.non_linearity]

        def bottleneck(i, site):
            pre = peft_key(layer_path(cfg, i), site)
            if pre + ".down_proj.weight" not in params:
                return None

            def f(v):
                z = act(linear_fwd(v, params, pre + ".down_proj"))
                return method.scaling * linear_fwd(z, params, pre + ".up_proj")
            return f

        def block(i, site, sub_in, sub_out, residual):
            """What the sub-block adds to the residual stream."""
            f = bottleneck(i, site)
            if f is None:
                return sub_out
            if method.variant == "series":
                return sub_out + f(sub_out)
            if method.variant == "parallel-normed":
                return sub_out + f(sub_in)
            # The reference model adds the residual itself.
            return adapterhub_block(ADAPTERHUB[method.variant], sub_out, residual, f) - residual

        class H(ref.Hooks):
            def after_attn(self, layer, sub_in, sub_out, residual):
                return block(layer, "attn_adapter", sub_in, sub_out, residual)

            def after_mlp(self, layer, sub_in, sub_out, residual):
                return block(layer, "mlp_adapter", sub_in, sub_out, residual)

        return H()

    def decay(self, name, shape):
        return no_bias_no_norm_decay(name)

    def meta(self):
        return {"adapter_variant": self.variant, "adapter_reduction_factor": self.reduction_factor,
                "adapter_activation": self.non_linearity, "adapter_scaling": self.scaling,
                "adapter_layers": self.target_layers}

    def adapter_config(self, base_path):
        c = {
            "adapter_input": ADAPTER_INPUT[self.variant],
            "adapter_variant": self.variant,
            "base_model_name_or_path": base_path,
            "bottleneck_size": self.bottleneck,
            "inference_mode": True,
            "init_weights": ADAPTER_INIT[self.variant],
            "mh_adapter": self.variant == "houlsby",
            "non_linearity": self.non_linearity,
            "output_adapter": True,
            "peft_type": "BOTTLENECK",
            "reduction_factor": self.reduction_factor,
            "scaling": self.scaling,
            "target_layers": self.target_layers,
            "task_type": TASK_TYPE,
        }
        hub = ADAPTERHUB.get(self.variant)
        if hub is not None:
            if hub["name"] is not None:
                c["adapterhub_config"] = hub["name"]
            for k in ("original_ln_before", "original_ln_after", "residual_before_ln", "is_parallel"):
                c[k] = hub[k]
        return c


# ---------------------------------------------------------------- prompt learning


def prompt_learning_config(peft_type, cfg, base_path, num_virtual_tokens, token_dim, heads, extra):
    """A PromptLearningConfig subclass's fields in PEFT 0.14, as saved."""
    c = {
        "auto_mapping": None,
        "base_model_name_or_path": base_path,
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": heads,
        "num_layers": num_layers(cfg),
        "num_transformer_submodules": 1,
        "num_virtual_tokens": num_virtual_tokens,
        "peft_type": peft_type,
        "revision": None,
        "task_type": TASK_TYPE,
        "token_dim": token_dim,
    }
    c.update(extra)
    return c


class PrependHooks(ref.Hooks):
    """Virtual tokens [P, D] prepended to every sequence; labels padded with -100.

    PeftModelForCausalLM.forward for prompt tuning and P-Tuning: the prompts
    go before the token embeddings, labels get P leading -100s (so the last
    virtual token's logits are scored against the first real token), and
    position ids are those of the longer sequence (real tokens at P..P+T-1).
    """

    def __init__(self, prompts, count):
        # prompts() builds the [P, D] virtual tokens; it runs on every
        # forward so that each one has its own autograd graph.
        self.prompts, self.count = prompts, count

    def input_embeds(self, embeds):
        b = embeds.shape[0]
        return torch.cat((self.prompts()[None].expand(b, -1, -1), embeds), dim=1)

    def extend_labels(self, labels):
        pad = torch.full((labels.shape[0], self.count), ref.IGNORE_INDEX, dtype=labels.dtype)
        return torch.cat((pad, labels), dim=1)


class PromptTuning(Method):
    """--method prompt: trainable virtual-token embeddings (PEFT PROMPT_TUNING).

    One tensor, prompt_embeddings [num_virtual_tokens, hidden] (PEFT's
    prompt_encoder.embedding.weight, saved under that name). Drawn
    N(0, std^2) here (PEFT's RANDOM init is nn.Embedding's N(0, 1)).
    Weight decay: yes (an embedding).
    """

    name = "prompt"

    def __init__(self, num_virtual_tokens=3, std=0.2):
        self.p, self.std = num_virtual_tokens, std

    def init(self, base, cfg, rng):
        self.cfg = cfg
        return {"prompt_embeddings": randn(rng, (self.p, hidden_size(cfg)), self.std)}

    def hooks(self, params, cfg):
        return PrependHooks(lambda: params["prompt_embeddings"], self.p)

    def decay(self, name, shape):
        return True

    def prepended(self):
        return self.p

    def meta(self):
        return {"num_virtual_tokens": self.p, "prompt_init": "random"}

    def adapter_config(self, base_path):
        return prompt_learning_config("PROMPT_TUNING", self.cfg, base_path, self.p, hidden_size(self.cfg),
                                      num_heads(self.cfg), {
                                          "prompt_tuning_init": "RANDOM",
                                          "prompt_tuning_init_text": None,
                                          "tokenizer_kwargs": None,
                                          "tokenizer_name_or_path": None,
                                      })


def lstm_direction(x, w_ih, w_hh, b_ih, b_hh, reverse):
    """One direction of torch.nn.LSTM over x [T, in] from zero state: [T, H].

    Gates in torch's order (input, forget, cell, output):
    g = x W_ih^T + b_ih + h W_hh^T + b_hh; c = f*c + i*tanh(g_c);
    h = o * tanh(c). The reverse direction runs from the last step to the
    first; outputs stay aligned with their input positions.
    """
    steps = x.shape[0]
    hid = w_hh.shape[1]
    h = x.new_zeros(hid)
    c = x.new_zeros(hid)
    outs = [None] * steps
    for t in (reversed(range(steps)) if reverse else range(steps)):
        g = x[t] @ w_ih.t() + b_ih + h @ w_hh.t() + b_hh
        i, f, gc, o = g.split(hid)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gc)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs[t] = h
    return torch.stack(outs)


class PTuning(Method):
    """--method ptuning: P-Tuning's prompt encoder (PEFT P_TUNING).

    The virtual tokens are encoder(embedding) (tuners/p_tuning/model.py):
      MLP   Linear(D, H) ReLU Linear(H, H) ReLU Linear(H, D): mlp_head.0/.2/.4
      LSTM  bidirectional LSTM(D -> H, encoder_num_layers layers, batch
            first) whose [P, 2H] output goes through Linear(2H, 2H) ReLU
            Linear(2H, D): lstm_head.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}
            and _l{k}_reverse, mlp_head.0/.2
    (D the hidden size, H encoder_hidden_size.) Trainable tensors, named as
    in PeftModel's state dict without the adapter name:
    prompt_encoder.embedding.weight [P, D] and the encoder's weights. PEFT
    saves none of them: its adapter_model.safetensors holds only
    prompt_embeddings = the encoder output [P, D] (get_prompt_embedding_to_save),
    which PEFT loads into the embedding of an encoder-less inference-mode
    prompt encoder. gotune writes that file and, to resume training, the
    trainable tensors in prompt_encoder.safetensors beside it; the goldens'
    saved.prompt_embeddings is what adapter_model.safetensors holds after
    training. Initial values: embedding N(0, std^2), Linear/LSTM torch's
    default U(+-1/sqrt(fan)). Weight decay: everything but biases.
    """

    name = "ptuning"

    def __init__(self, num_virtual_tokens=3, encoder="MLP", hidden=16, encoder_layers=2, std=0.2):
        if encoder not in ("MLP", "LSTM"):
            raise ValueError("unknown encoder %r" % encoder)
        self.p, self.encoder, self.hidden = num_virtual_tokens, encoder, hidden
        self.encoder_layers, self.std = encoder_layers, std

    def init(self, base, cfg, rng):
        self.cfg = cfg
        d, h = hidden_size(cfg), self.hidden
        out = {"prompt_encoder.embedding.weight": randn(rng, (self.p, d), self.std)}
        if self.encoder == "MLP":
            init_linear(rng, out, "prompt_encoder.mlp_head.0", h, d)
            init_linear(rng, out, "prompt_encoder.mlp_head.2", h, h)
            init_linear(rng, out, "prompt_encoder.mlp_head.4", d, h)
        else:
            bound = 1.0 / math.sqrt(h)
            for k in range(self.encoder_layers):
                n_in = d if k == 0 else 2 * h
                for sfx in ("", "_reverse"):
                    pre = "prompt_encoder.lstm_head."
                    out[pre + "weight_ih_l%d%s" % (k, sfx)] = uniform(rng, (4 * h, n_in), bound)
                    out[pre + "weight_hh_l%d%s" % (k, sfx)] = uniform(rng, (4 * h, h), bound)
                    out[pre + "bias_ih_l%d%s" % (k, sfx)] = uniform(rng, (4 * h,), bound)
                    out[pre + "bias_hh_l%d%s" % (k, sfx)] = uniform(rng, (4 * h,), bound)
            init_linear(rng, out, "prompt_encoder.mlp_head.0", 2 * h, 2 * h)
            init_linear(rng, out, "prompt_encoder.mlp_head.2", d, 2 * h)
        return out

    def encode(self, t):
        """The virtual tokens [P, D] from the encoder tensors t."""
        x = t["prompt_encoder.embedding.weight"]
        if self.encoder == "MLP":
            x = torch.relu(linear_fwd(x, t, "prompt_encoder.mlp_head.0"))
            x = torch.relu(linear_fwd(x, t, "prompt_encoder.mlp_head.2"))
            return linear_fwd(x, t, "prompt_encoder.mlp_head.4")
        pre = "prompt_encoder.lstm_head."
        for k in range(self.encoder_layers):
            dirs = []
            for sfx, rev in (("", False), ("_reverse", True)):
                w = [t[pre + "%s_l%d%s" % (n, k, sfx)] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                dirs.append(lstm_direction(x, *w, reverse=rev))
            x = torch.cat(dirs, dim=-1)
        x = torch.relu(linear_fwd(x, t, "prompt_encoder.mlp_head.0"))
        return linear_fwd(x, t, "prompt_encoder.mlp_head.2")

    def hooks(self, params, cfg):
        return PrependHooks(lambda: self.encode(params), self.p)

    def decay(self, name, shape):
        return no_bias_no_norm_decay(name)

    def prepended(self):
        return self.p

    def adapter_weights(self, trainable):
        t = {n: v.double() for n, v in trainable.items()}
        with torch.no_grad():
            return {"prompt_embeddings": self.encode(t)}

    def encoder_weights(self, trainable):
        return dict(trainable)

    def meta(self):
        return {"num_virtual_tokens": self.p, "encoder_reparameterization_type": self.encoder,
                "encoder_hidden_size": self.hidden, "encoder_num_layers": self.encoder_layers}

    def adapter_config(self, base_path):
        return prompt_learning_config("P_TUNING", self.cfg, base_path, self.p, hidden_size(self.cfg),
                                      num_heads(self.cfg), {
                                          "encoder_dropout": 0.0,
                                          "encoder_hidden_size": self.hidden,
                                          "encoder_num_layers": self.encoder_layers,
                                          "encoder_reparameterization_type": self.encoder,
                                      })


class PrefixTuning(Method):
    """--method prefix: trainable key/value prefixes (PEFT PREFIX_TUNING, P-Tuning v2).

    PEFT's geometry (utils/other.py _prepare_prompt_learning_config): with
    num_key_value_heads in the model config (LLaMA, Qwen2: GQA) token_dim
    = kv_heads * head_dim and num_attention_heads = kv_heads; otherwise
    (GPT-2) token_dim = hidden and the model's head count. The prefix
    vector of virtual token p is [L * 2 * token_dim] (L layers); PeftModel.
    get_prompt views it as [P, L*2, heads, head_dim] and permutes to
    [L*2, B, heads, P, head_dim]: layer l's key is row block 2l, its value
    2l+1. These are past_key_values: no RoPE is applied to them, every real
    token attends to all P of them, and real tokens take positions
    P..P+T-1 (transformers offsets positions by the cache length; GPT-2's
    learned positions too).
    Without projection the one trainable tensor is prompt_embeddings
    [P, L*2*token_dim] (PEFT's embedding weight, saved under that name).
    With prefix_projection (ChatGLM's P-Tuning v2 encoder) PEFT's
    PrefixEncoder is embedding [P, token_dim] -> Linear(token_dim,
    encoder_hidden_size) -> tanh -> Linear(encoder_hidden_size,
    L*2*token_dim): trainable prompt_encoder.embedding.weight,
    prompt_encoder.transform.0/.2.{weight,bias}, kept in
    prompt_encoder.safetensors; PEFT's adapter_model.safetensors holds the
    projected prompt_embeddings [P, L*2*token_dim] (the encoder output).
    "Local" prefixes (layers = a list, gotune's extension, written to
    adapter_config.json as "prefix_layers"): only those layers get a
    prefix; the vector is [len(layers) * 2 * token_dim] in the order the
    list gives, and positions still start at P in every layer. PEFT cannot
    load such a file (its width differs from num_layers * 2 * token_dim, so
    it refuses it rather than misreading it).
    Weight decay: everything but biases.
    """

    name = "prefix"

    def __init__(self, num_virtual_tokens=3, layers=None, projection=False, encoder_hidden=None, std=0.5):
        self.p, self.layers_sel, self.projection = num_virtual_tokens, layers, projection
        self.encoder_hidden, self.std = encoder_hidden, std

    def geometry(self, cfg):
        """(token_dim, heads) as PEFT sets them for prefix tuning."""
        heads = num_heads(cfg)
        token_dim = hidden_size(cfg)
        if "num_key_value_heads" in cfg:
            token_dim = token_dim // heads * cfg["num_key_value_heads"]
            heads = cfg["num_key_value_heads"]
        return token_dim, heads

    def layers(self, cfg):
        return list(range(num_layers(cfg))) if self.layers_sel is None else list(self.layers_sel)

    def init(self, base, cfg, rng):
        self.cfg = cfg
        self.token_dim, self.heads = self.geometry(cfg)
        if self.encoder_hidden is None:
            self.encoder_hidden = self.token_dim  # PEFT's default
        width = len(self.layers(cfg)) * 2 * self.token_dim
        if not self.projection:
            return {"prompt_embeddings": randn(rng, (self.p, width), self.std)}
        out = {"prompt_encoder.embedding.weight": randn(rng, (self.p, self.token_dim), self.std)}
        init_linear(rng, out, "prompt_encoder.transform.0", self.encoder_hidden, self.token_dim)
        init_linear(rng, out, "prompt_encoder.transform.2", width, self.encoder_hidden)
        return out

    def encode(self, t):
        """The prefix vectors [P, len(layers)*2*token_dim]."""
        if not self.projection:
            return t["prompt_embeddings"]
        x = torch.tanh(linear_fwd(t["prompt_encoder.embedding.weight"], t, "prompt_encoder.transform.0"))
        return linear_fwd(x, t, "prompt_encoder.transform.2")

    def hooks(self, params, cfg):
        method = self
        head_dim = self.token_dim // self.heads
        where = {layer: j for j, layer in enumerate(self.layers(cfg))}

        class H(ref.Hooks):
            def past_length(self):
                return method.p

            def prefix_kv(self, layer, batch):
                j = where.get(layer)
                if j is None:
                    return None
                # Recomputed per call so that every forward has its own graph.
                flat = method.encode(params)
                kv = flat.view(method.p, -1, method.heads, head_dim).permute(1, 2, 0, 3)  # [L'*2, heads, P, hd]
                k = kv[2 * j][None].expand(batch, -1, -1, -1)
                v = kv[2 * j + 1][None].expand(batch, -1, -1, -1)
                return k, v

        return H()

    def decay(self, name, shape):
        return no_bias_no_norm_decay(name)

    def adapter_weights(self, trainable):
        if not self.projection:
            return dict(trainable)
        t = {n: v.double() for n, v in trainable.items()}
        with torch.no_grad():
            return {"prompt_embeddings": self.encode(t)}

    def encoder_weights(self, trainable):
        return dict(trainable) if self.projection else None

    def meta(self):
        return {"num_virtual_tokens": self.p, "prefix_layers": self.layers_sel,
                "prefix_projection": self.projection,
                "encoder_hidden_size": self.encoder_hidden if self.projection else None}

    def adapter_config(self, base_path):
        extra = {"encoder_hidden_size": self.encoder_hidden, "prefix_projection": self.projection}
        if self.layers_sel is not None:
            extra["prefix_layers"] = list(self.layers_sel)
        return prompt_learning_config("PREFIX_TUNING", self.cfg, base_path, self.p, self.token_dim,
                                      self.heads, extra)
