"""Load the method sets' adapter folders with real transformers + PEFT.

Run from the repository root where transformers and peft are installed
(they are not on the development machines, so this has not been run there):

    python3 testdata/golden/peft_check.py

For every methods/<run>/ holding a PEFT adapter (LoRA, DoRA, prompt tuning,
P-Tuning, prefix tuning without prefix_layers) it loads the base model with
AutoModelForCausalLM (float32, eager attention), the adapter with
PeftModel.from_pretrained, runs the golden batch and compares the logits
with golden.safetensors' "logits" (relative L2 error below 1e-4: float32
against the float64 reference). Bottleneck adapters (not a PEFT type),
local prefixes (gotune's extension) and freeze are skipped. A mismatch
means the files or the reference's semantics differ from PEFT's; a key
PEFT failed to load shows up as a mismatch too (it would keep its own
initial value).
"""

import json
import os
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    failed = 0
    root = os.path.join(HERE, "methods")
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        cfg_path = os.path.join(folder, "adapter_config.json")
        if not os.path.exists(cfg_path):
            continue
        with open(cfg_path) as f:
            cfg = json.load(f)
        if cfg["peft_type"] == "BOTTLENECK" or "prefix_layers" in cfg:
            print("%-22s skipped (%s)" % (name, "not a PEFT type" if cfg["peft_type"] == "BOTTLENECK" else "local prefix"))
            continue
        with open(os.path.join(folder, "meta.json")) as f:
            meta = json.load(f)
        base_dir = os.path.normpath(os.path.join(folder, meta["base"]))
        rows = [json.loads(line) for line in open(os.path.join(folder, meta["data"]))]
        ids = torch.tensor([r["input_ids"][: meta["run"]["seq_len"]] for r in rows[: meta["run"]["batch_size"]]])

        model = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32, attn_implementation="eager")
        model = PeftModel.from_pretrained(model, folder)
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.double()
        want = load_file(os.path.join(folder, "golden.safetensors"))["logits"].double()
        if logits.shape != want.shape:
            print("%-22s FAIL logits %s, golden %s" % (name, tuple(logits.shape), tuple(want.shape)))
            failed += 1
            continue
        err = ((logits - want).norm() / want.norm()).item()
        ok = err < 1e-4
        failed += not ok
        print("%-22s %s rel err %.2e" % (name, "ok  " if ok else "FAIL", err))
    print("%d failed" % failed)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
