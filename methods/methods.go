// Package methods is the home of gotune's fine-tuning methods, one
// package each, all working on an engine/model.Model through its module
// interfaces (see model.Linear, model.SublayerHook, model.Prompt,
// model.Prefix) and the engine.Backend, so every method runs on every
// backend:
//
//   - freeze: partial fine-tuning of chosen layers and modules (full
//     weights saved); the backward pass stops at the lowest trainable
//     parameter.
//   - lora: LoRA, rsLoRA and DoRA as model.Linear wrappers, with PEFT's
//     semantics, file format and merging.
//   - adapter: bottleneck adapters (Houlsby, Pfeiffer, parallel) as
//     sub-layer hooks.
//   - prompt, prefix: the P-Tuning family (prompt tuning, P-Tuning,
//     prefix tuning / P-Tuning v2).
//   - peft: reading and writing PEFT adapter folders (adapter_config.json,
//     adapter_model.safetensors), shared by the adapter methods.
//
// Package finetune lists them as its built-in methods (finetune.Methods),
// which the command line offers as --method values (their flags in
// cmd/gotune/method_*.go). Methods are verified against PyTorch golden
// values in testdata/golden/methods.
package methods
