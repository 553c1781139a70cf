#!/usr/bin/env bash
# Rebuilds gotune's built-in default model in testdata/demo from nothing:
# the byte-level tokenizer, a synthetic pretraining corpus, and a small
# LLaMA pretrained by gotune's own trainer on the CPU (about 10 minutes on
# 2 CPU cores), saved as BF16 safetensors (see testdata/demo/README.md).
# Deterministic: the same settings give the same files on the same
# machine architecture.
#
# Usage: scripts/pretrain-demo.sh [extra flags for internal/demo/pretrain]
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./internal/demo/pretrain --out testdata/demo "$@"
