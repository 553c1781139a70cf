#!/usr/bin/env bash
# bench-cpu.sh — gotune's CPU backend against PyTorch on the CPU, in one run.
#
#   scripts/bench-cpu.sh [--threads N] [--reps N] [--json FILE] [--quick]
#                        [--onednn] [--no-train] [--no-gemm]
#                        [--no-openblas] [--no-fetch]
#
# Times float32 matrix products at LLM layer shapes (with the transposed
# products of a backward pass) and one full fine-tuning step of a small
# Llama (forward, backward, clipping, AdamW), gotune's engine/cpu against
# PyTorch with the same thread count, interleaved sample by sample, and
# prints a table of medians: gotune time, torch time, their ratio, GFLOP/s.
# About a minute on 2 cores (up to 3 on a busy machine). Details:
# docs/BENCHMARKS.md.
#
# Debian's torch links the reference (netlib) BLAS, which is 50-100 times
# slower than an optimised one and no fair reference. So torch runs here
# with OpenBLAS (pthreads build) put in front through LD_LIBRARY_PATH, for
# this process only; nothing is installed. The library is taken from
# $GOTUNE_OPENBLAS_DIR (default ~/.cache/gotune/openblas), fetched there on
# first use with `apt-get download libopenblas0-pthread` + `dpkg -x`
# (--no-fetch: don't; --no-openblas: use torch's own BLAS, with a warning).
#
# Everything else on the command line goes to scripts/bench_cpu_torch.py.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=/usr/bin/python3
GO=${GO:-go}
threads=$(nproc)
use_openblas=1
fetch=1
pass=()
while (($#)); do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --threads=*) threads=${1#*=}; shift ;;
    --no-openblas) use_openblas=0; shift ;;
    --no-fetch) fetch=0; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
if ! [[ $threads =~ ^[1-9][0-9]*$ ]]; then
  echo "bench-cpu.sh: --threads wants a positive integer, got '$threads'" >&2
  exit 2
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "bench-cpu.sh: $PY cannot import torch (Debian's python3-torch is needed)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "building internal/benchcpu ..." >&2
"$GO" build -o "$work/benchcpu" ./internal/benchcpu

# find_openblas prints the directory holding OpenBLAS's libblas.so.3, if any.
find_openblas() {
  find "$1" -path '*openblas-pthread*' -name libblas.so.3 -printf '%h\n' 2>/dev/null | head -n1
}

libdir=""
if ((use_openblas)); then
  obdir=${GOTUNE_OPENBLAS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gotune/openblas}
  [[ -d $obdir ]] && libdir=$(find_openblas "$obdir")
  if [[ -z $libdir ]] && ((fetch)); then
    echo "fetching OpenBLAS for torch into $obdir (apt-get download libopenblas0-pthread; nothing is installed) ..." >&2
    if (cd "$work" && timeout 120 apt-get download -q libopenblas0-pthread >/dev/null 2>&1); then
      mkdir -p "$obdir"
      dpkg -x "$work"/libopenblas0-pthread_*.deb "$obdir"
      libdir=$(find_openblas "$obdir")
    fi
  fi
  if [[ -z $libdir ]]; then
    echo "bench-cpu.sh: no OpenBLAS found; torch uses its own BLAS (see the warning below)" >&2
  fi
fi

# libgomp's default spin-waiting made torch's elementwise operations about
# 30 times slower on a shared, oversubscribed 2-core machine (a training
# step of 13 s instead of 0.4 s, measured): threads spinning at a barrier
# take the cores the others need. Sleeping waiters cost little here.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
if [[ -n $libdir ]]; then
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
"$PY" scripts/bench_cpu_torch.py --go-bin "$work/benchcpu" --threads "$threads" "${pass[@]}"
