#!/usr/bin/env bash
# Checks that llama.cpp itself runs gotune's GGUF exports as gotune does:
# for each model and storage type, "gotune export --format gguf", then the
# same prompt through llama.cpp (the prebuilt CPU binaries of the npm
# package node-llama-cpp, pinned) and "gotune generate --temperature 0";
# scripts/gguf-greedy.mjs compares the prompt's token ids, the greedy
# continuation's, and llama.cpp's next-token distributions at every
# position of prompt + continuation with gotune's (internal/ggufcheck/
# nextprobs).
#
# Models: testdata/demo (LLaMA, byte-level BPE), the demo with a LoRA
# adapter trained for a few steps and merged by the export, its Qwen2,
# Phi-3 and GLM-4 variants (internal/ggufcheck: the demo's weights in the
# family's layout, plus random q/k/v biases, longrope, output norms),
# seeded random check models of LLaMA (biases, explicit head_dim), Qwen3,
# OLMo-2, Granite, Gemma 2, Gemma 3 (sandwich (1 + w) norms, GeGLU, soft
# caps, sliding window 8 shorter than the prompt) and GPT-2
# (internal/ggufcheck, the demo's tokenizer; their greedy output may
# repeat a token, the distributions are what tells), and
# ../shared/models/stories260K ($GOTUNE_STORIES260K) when present (a pretrained llama2.c model
# with a SentencePiece-style vocabulary). F32 files must match: same
# tokens, probabilities within 1e-4 (Gemma: 1e-3, GPT-2: 1e-2, see
# below); F16, BF16 and Q8_0 round the weights (and llama.cpp then
# computes in that type), so a difference there is reported, not failed.
#
# Exit status: 0 all F32 runs match, 1 a mismatch or a failed export,
# 77 llama.cpp could not be installed (npm missing or offline): skipped.
#
# node-llama-cpp is installed once into $GOTUNE_NLC_DIR (default
# .cache/node-llama-cpp, gitignored) without its install scripts and with
# only this platform's CPU binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=3.21.1
nlc=${GOTUNE_NLC_DIR:-$root/.cache/node-llama-cpp}
skip() { echo "check-gguf-llamacpp: SKIPPED: $*"; exit 77; }

command -v node >/dev/null && command -v npm >/dev/null || skip "node/npm not found"
platform=$(node -p 'process.platform + "-" + process.arch')
if [ "$(cat "$nlc/.installed" 2>/dev/null)" != "$version-$platform" ]; then
  rm -rf "$nlc" && mkdir -p "$nlc"
  echo '{"private": true}' >"$nlc/package.json"
  echo "check-gguf-llamacpp: installing node-llama-cpp@$version ($platform binaries) into $nlc"
  if ! timeout 300 npm install --prefix "$nlc" --no-audit --no-fund --ignore-scripts --omit=optional \
      "node-llama-cpp@$version" "@node-llama-cpp/$platform@$version" >"$nlc/install.log" 2>&1; then
    tail -3 "$nlc/install.log"
    skip "npm install node-llama-cpp@$version failed (log: $nlc/install.log)"
  fi
  echo "$version-$platform" >"$nlc/.installed"
fi
cp scripts/gguf-greedy.mjs "$nlc/gguf-greedy.mjs"
(cd "$nlc" && timeout 120 node gguf-greedy.mjs --probe) >/dev/null 2>&1 ||
  skip "node-llama-cpp@$version is installed but its prebuilt llama.cpp binaries do not load here"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/gotune" ./cmd/gotune
go build -o "$work/mkcheck" ./internal/ggufcheck/mkcheck
go build -o "$work/nextprobs" ./internal/ggufcheck/nextprobs
# A check model's folder (and so general.name) must not contain "phi3":
# llama.cpp then edits the attributes of Phi-3's special tokens, which
# the demo's vocabulary lacks.
for family in qwen2 phi3 glm4 llama qwen3 olmo2 granite gemma2 gemma3 gpt2; do
  "$work/mkcheck" --family "$family" --from testdata/demo --out "$work/${family/phi3/phi-iii}"
done

failures=0
# check NAME MODEL PROMPT NEW_TOKENS TYPES... (with the LoRA adapter
# $adapter merged into the export and applied by generate, when set, and
# probabilities allowed to differ by $max_prob_diff)
adapter=
max_prob_diff=1e-4
check() {
  local name=$1 model=$2 prompt=$3 n=$4
  shift 4
  local want extra=()
  [ -z "$adapter" ] || extra=(--adapter "$adapter")
  want=$("$work/gotune" generate --model "$model" "${extra[@]}" --prompt "$prompt" --temperature 0 \
    --max-new-tokens "$n" --device cpu --print-ids 2>/dev/null) || { echo "FAIL $name: gotune generate failed"; failures=$((failures + 1)); return; }
  "$work/nextprobs" --model "$model" "${extra[@]}" --generated "$want" >"$work/$name.probs" ||
    { echo "FAIL $name: nextprobs failed"; failures=$((failures + 1)); return; }
  for typ in "$@"; do
    local out="$work/$name-$typ.gguf" mode=()
    [ "$typ" = f32 ] || mode=(--tolerant)
    echo "== $name, $typ: $("$work/gotune" export --model "$model" "${extra[@]}" --format gguf --type "$typ" --out "$out" 2>&1)"
    if ! (cd "$nlc" && node gguf-greedy.mjs "$out" "$want" "$prompt" "${mode[@]}" \
        --probs "$work/$name.probs" --max-prob-diff "$max_prob_diff"); then
      echo "FAIL $name $typ"
      failures=$((failures + 1))
    fi
  done
}

demo_prompt=$'<s>Double every letter.\ngotune\n'
check demo testdata/demo "$demo_prompt" 24 f32 bf16 f16 q8_0
# Variants of the demo: the family's fused tensors, RoPE layout and
# scaling, and what the demo lacks.
check qwen2 "$work/qwen2" "$demo_prompt" 24 f32 bf16 q8_0
check phi3 "$work/phi-iii" "$demo_prompt" 24 f32 bf16 q8_0
check glm4 "$work/glm4" "$demo_prompt" 24 f32 bf16 q8_0
# Random check models: each family's own tensors, keys and RoPE layout.
check llama-bias "$work/llama" "$demo_prompt" 24 f32 q8_0
check qwen3 "$work/qwen3" "$demo_prompt" 24 f32 bf16 q8_0
check olmo2 "$work/olmo2" "$demo_prompt" 24 f32 bf16 q8_0
check granite "$work/granite" "$demo_prompt" 24 f32 bf16 q8_0
# ggml's CPU GELU looks activations up in a float16 table
# (GGML_GELU_FP16), which moves GPT-2's probabilities by ~1e-3 and
# Gemma's (GeGLU) by ~3e-4 (with the MLP output zeroed they agree to
# 1e-6): wider bounds, still far below what a layout mistake does (~1e-1;
# Gemma's sliding window exported 4 positions too long: 0.2-0.45).
max_prob_diff=1e-3 check gemma2 "$work/gemma2" "$demo_prompt" 24 f32 bf16 q8_0
max_prob_diff=1e-3 check gemma3 "$work/gemma3" "$demo_prompt" 24 f32 bf16 q8_0
max_prob_diff=1e-2 check gpt2 "$work/gpt2" "$demo_prompt" 24 f32 q8_0
# A LoRA adapter (a few steps on the reverse task) merged by the export.
"$work/gotune" data synth --task reverse --n 64 --seed 1 --out "$work/reverse.jsonl" >/dev/null
"$work/gotune" train --model testdata/demo --data "$work/reverse.jsonl" --template plain --method lora \
  --lora-targets all-linear --steps 8 --batch-size 8 --lr 5e-3 --device cpu --out "$work/lora" >/dev/null 2>&1
adapter=$work/lora check demo+lora testdata/demo "$demo_prompt" 24 f32 q8_0
stories=${GOTUNE_STORIES260K:-../shared/models/stories260K/stories260K.bin}
if [ -f "$stories" ]; then
  check stories260K "$stories" "" 60 f32 f16 q8_0
  check stories260K-zoo "$stories" "Zoo" 60 f32
else
  echo "(stories260K not found at $stories: skipped)"
fi

if [ "$failures" -gt 0 ]; then
  echo "check-gguf-llamacpp: $failures FAILED"
  exit 1
fi
echo "check-gguf-llamacpp: all F32 exports decode as gotune does in llama.cpp, with gotune's next-token distributions"
