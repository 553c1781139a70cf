#!/usr/bin/env bash
# gpu-check.sh — the one prepared check for a session that is lent a GPU.
#
# The device machine has the NVIDIA driver, nvcc, PyTorch, transformers and
# PEFT, but no Go and maybe no make. Build the Go binaries HERE first (they
# travel in the working tree; build/ is git-ignored, so name it in `carry`):
#
#   make gpu-binaries      (or, by hand:)
#   mkdir -p build/gpu
#   go test -c -ldflags='-s -w' -o build/gpu/cuda.test ./cuda
#   go build -ldflags='-s -w' -o build/gpu/gotune ./cmd/gotune
#
# then, on the device machine, from the repository root:
#
#   bash scripts/gpu-check.sh     (device tool: carry ["build/gpu"], timeout_s 480)
#
# Stages, each under `timeout`, the whole script within GPU_CHECK_BUDGET
# seconds of wall time (default 410, for a 420 s allowance):
#   0. the binaries' glibc requirement against the machine's (before
#      anything runs), the device, nvcc, cuBLAS (toolkit, the nvidia/cublas
#      and nvidia/cu13 wheel folders, ldconfig);
#   1. the cuda package's tests against the real driver with the embedded
#      fatbin, one process per test, so a sticky CUDA fault (which poisons
#      the context for the rest of a process) fails only its own test;
#   2. the kernels compiled with the device's nvcc for sm_90a (nvcc called
#      directly, flags from kernels/nvcc-flags): registers, stack and spills
#      per kernel, spills and more than 128 registers per thread flagged,
#      SASS instruction census;
#   3. the kernel tests on that sm_90a cubin (GOTUNE_TEST_IMAGE), one
#      process per test;
#   4. compute-sanitizer --tool memcheck on a short training step (tiny
#      model, LoRA and full), when the tool is present;
#   5. `gotune bench kernels` (cuBLAS alongside when found) and the same
#      attention problems through PyTorch's SDPA (scripts/bench_sdpa.py);
#   6. `gotune bench train`: the plan (--dry-run --json), then each case in
#      a process of its own;
#   7. the same cases through PyTorch + transformers + PEFT
#      (scripts/bench_peft.py --plan);
#   8. only on a machine with 2 GPUs or more (nvidia-smi -L): data
#      parallel over the real NCCL (scripts/ddp-check.sh): 2 ranks of
#      `gotune launch` (LoRA; full fine-tuning under ZeRO-2) against one
#      process, losses and weights compared; its time is kept aside from
#      the start, and the stage is skipped (costing nothing) otherwise;
#   then the stage summary, the attention ratios, and last the training
#   table (scripts/gpu_check_table.py): tokens/s, MFU and memory of both,
#   and the ratios gotune / PyTorch.
# Full logs go to $OUT/gpu-check-logs.tgz ($OUT: the device tool's folder,
# else ./gpu-check-out).
#
# Dry run without a GPU, on gotune's emulator of the driver (small shapes):
#   GPU_CHECK_LIBCUDA=$PWD/kernels/emu/build/libcuda.so GPU_CHECK_PRESETS=tiny \
#   GPU_CHECK_NVCC_ARCH=-gencode=arch=compute_90,code=sm_90 bash scripts/gpu-check.sh
#
# Knobs: GPU_CHECK_BUDGET (s), GPU_CHECK_PRESETS (0.5b,1.5b),
# GPU_CHECK_STEPS (3), GPU_CHECK_WARMUP (1), GPU_CHECK_NVCC_ARCH,
# GPU_CHECK_NGPU (the GPU count; default nvidia-smi -L's),
# GPU_CHECK_NVCC_EXTRA (e.g. -ccbin g++-11), GPU_CHECK_SANITIZER
# (compute-sanitizer), PYTHON (python3).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
# Logs are written to L and packed into one file in OUT at the end: the
# device tool brings back only 8 files.
L=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET:-410}"
PRESETS="${GPU_CHECK_PRESETS:-0.5b,1.5b}"
STEPS="${GPU_CHECK_STEPS:-3}"
WARMUP="${GPU_CHECK_WARMUP:-1}"
NVCC_ARCH="${GPU_CHECK_NVCC_ARCH:--gencode=arch=compute_90a,code=sm_90a}"
SANITIZER="${GPU_CHECK_SANITIZER:-compute-sanitizer}"
GOTUNE=build/gpu/gotune
CUDATEST=build/gpu/cuda.test
T0=$(date +%s)
declare -a SUMMARY

elapsed() { echo $(($(date +%s) - T0)); }
# slot CAP RESERVE: the seconds a stage may use: CAP, or less so that
# RESERVE seconds stay for the stages after it.
slot() {
	local s=$((BUDGET - $(elapsed) - $2))
	[ "$s" -gt "$1" ] && s=$1
	[ "$s" -lt 0 ] && s=0
	echo "$s"
}
stage() { SUMMARY+=("$(printf '%-20s %-5s %4ds  %s' "$1" "$2" "$(elapsed)" "$3")"); }
verdict() { case $1 in 0) echo ok ;; 124 | 137) echo TIME ;; *) echo FAIL ;; esac; }
# Stage caps (s) on an H100: they add up to under the budget, so every
# stage gets its share; the reserves keep an overrun from starving later
# stages.
CAP_TESTS=70 CAP_NVCC=50 CAP_TESTS90=25 CAP_MEMCHECK=30 CAP_KERNELS=40 CAP_SDPA=20 CAP_TRAIN=95 CAP_PEFT=60
# Stage 8 (data parallel over NCCL) runs only with 2 GPUs or more; then
# every earlier stage leaves it R8 seconds.
NGPU="${GPU_CHECK_NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')}"
CAP_NCCL=45 R8=0
[ "${NGPU:-0}" -ge 2 ] && R8=$CAP_NCCL

echo "== 0. binaries, glibc, device"
host_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
for b in "$GOTUNE" "$CUDATEST"; do
	if [ ! -f "$b" ]; then
		echo "  $b: not carried"
		continue
	fi
	need=$(grep -aoE 'GLIBC_[0-9]+\.[0-9]+(\.[0-9]+)?' "$b" | sed 's/GLIBC_//' | sort -uV | tail -1)
	msg="$b needs glibc ${need:-(none versioned)}; this machine has ${host_glibc:-unknown}"
	if [ -n "$need" ] && [ -n "$host_glibc" ] && [ "$(printf '%s\n' "$need" "$host_glibc" | sort -V | tail -1)" != "$host_glibc" ]; then
		msg="$msg: TOO OLD, the binary will not start (build on an older glibc)"
		stage "0 glibc" "FAIL" "$msg"
	fi
	echo "  $msg"
done
timeout 15 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$L/device.txt"
echo "  nvcc: $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p' || true)" | tee -a "$L/device.txt"

# cuBLAS, the kernels benchmark's yardstick: the toolkit's, a pip wheel's
# (nvidia/cublas/lib for CUDA 12, nvidia/cu13/lib for 13), or ldconfig's.
find_cublas() {
	local d c
	local dirs=("${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
	command -v nvcc >/dev/null && dirs+=("$(dirname "$(command -v nvcc)")/../lib64")
	while read -r d; do dirs+=("$d"); done < <("$PY" -c '
import os, sys
for p in sys.path:
    for sub in ("cublas", "cu13", "cu12"):
        d = os.path.join(p or ".", "nvidia", sub, "lib")
        if os.path.isdir(d):
            print(d)' 2>/dev/null)
	for d in "${dirs[@]}"; do
		for c in "$d"/libcublas.so.[0-9]*; do
			[ -f "$c" ] && { echo "$c"; return; }
		done
	done
	ldconfig -p 2>/dev/null | awk '/libcublas\.so\.[0-9]+ /{print $NF; exit}'
}
[ -z "${GOTUNE_LIBCUBLAS:-}" ] && GOTUNE_LIBCUBLAS=$(find_cublas)
if [ -n "$GOTUNE_LIBCUBLAS" ]; then
	export GOTUNE_LIBCUBLAS LD_LIBRARY_PATH="$(dirname "$GOTUNE_LIBCUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	echo "  cuBLAS: $GOTUNE_LIBCUBLAS"
else
	unset GOTUNE_LIBCUBLAS
	echo "  cuBLAS: not found (the kernels benchmark runs without it)"
fi

# The real driver, explicitly (never the emulator), and its absence is a
# failure. GPU_CHECK_LIBCUDA exists only to dry-run this script on the
# emulator.
export GOTUNE_LIBCUDA="${GPU_CHECK_LIBCUDA:-libcuda.so.1}" GOTUNE_REQUIRE_EMU=1

# run_tests NAME LOG CAP RESERVE REGEX [VAR=VALUE...]: each test matching
# REGEX in its own process, within the stage's slot.
run_tests() {
	local name=$1 log=$2 cap=$3 reserve=$4 filter=$5
	shift 5
	if [ ! -x "$CUDATEST" ]; then
		stage "$name" "MISS" "$CUDATEST not carried"
		return
	fi
	local end=$(($(elapsed) + $(slot "$cap" "$reserve"))) pass=0 fail=0 skip=0 late=0 t rc left
	: >"$log"
	for t in $(cd cuda && "../$CUDATEST" -test.list "$filter" 2>/dev/null | grep '^Test'); do
		left=$((end - $(elapsed)))
		if [ "$left" -lt 2 ]; then
			late=$((late + 1))
			continue
		fi
		(cd cuda && env "$@" timeout "$left" "../$CUDATEST" -test.run "^$t\$" -test.v -test.count=1) >"$L/one-test.log" 2>&1
		rc=$?
		cat "$L/one-test.log" >>"$log"
		if [ $rc -ne 0 ]; then
			fail=$((fail + 1))
			echo "  $t: $(verdict $rc) (exit $rc)"
			grep -E -- '--- FAIL|relative error|panic:|Error:|CUDA_ERROR' "$L/one-test.log" | head -6 | sed 's/^/    /'
		elif grep -q -- "--- SKIP: $t " "$L/one-test.log"; then
			skip=$((skip + 1))
		else
			pass=$((pass + 1))
		fi
	done
	rm -f "$L/one-test.log"
	local st=ok
	[ $fail -gt 0 ] && st=FAIL
	[ $late -gt 0 ] && [ $fail -eq 0 ] && st=TIME
	stage "$name" "$st" "$pass pass, $fail fail, $skip skip, $late not run (out of time); one process per test"
}

echo "== 1. cuda tests on the GPU (embedded fatbin), one process per test"
run_tests "1 tests (fatbin)" "$L/tests.log" $CAP_TESTS $((BUDGET - CAP_TESTS - 15)) '.*'

echo "== 2. nvcc for ${NVCC_ARCH#*code=}, called directly"
CUBIN=kernels/build/gotune_gpucheck.cubin
mkdir -p kernels/build
rm -f "$CUBIN"
s=$(slot $CAP_NVCC $((CAP_TESTS90 + CAP_MEMCHECK + CAP_KERNELS + CAP_SDPA + CAP_TRAIN + CAP_PEFT + R8)))
# shellcheck disable=SC2046,SC2086 # the flags are words
(cd kernels && timeout "$s" nvcc $NVCC_ARCH $(cat nvcc-flags) ${GPU_CHECK_NVCC_EXTRA:-} -cubin -o "build/$(basename "$CUBIN")" gotune.cu) >"$L/nvcc.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -f "$CUBIN" ]; then
	# One line per kernel: registers, stack frame, spills; flags last.
	awk '/Compiling entry function/ { fn = $7; gsub(/\047/, "", fn) }
	     /bytes stack frame/ { stack = $1; spill = $5 + $9 }
	     /Used [0-9]+ registers/ { regs = $5; flag = ""
	         if (spill > 0) { flag = flag " SPILL"; ns++ }
	         if (regs > 128) { flag = flag " REGS>128"; nr++ }
	         printf "  %-28s %3d regs  stack %4d B  spill %4d B%s\n", fn, regs, stack, spill, flag; n++ }
	     END { printf "%d kernels, %d spilling, %d over 128 registers\n", n, ns, nr > "/dev/stderr" }' \
		"$L/nvcc.log" 2>"$L/nvcc.summary" | tee "$L/nvcc-kernels.txt"
	if command -v cuobjdump >/dev/null; then
		cuobjdump -sass "$CUBIN" >"$L/sass.txt" 2>&1
		sass="SASS: HMMA $(grep -c HMMA "$L/sass.txt"), LDSM $(grep -c LDSM "$L/sass.txt"), LDGSTS $(grep -c LDGSTS "$L/sass.txt"), LDL/STL $(grep -cE '\b(LDL|STL)\b' "$L/sass.txt")"
		rm -f "$L/sass.txt"
	else
		sass="cuobjdump missing"
	fi
	st=ok
	grep -qE ', [1-9][0-9]* spilling' "$L/nvcc.summary" && st=SPILL
	[ $st = ok ] && grep -qE ', [1-9][0-9]* over 128' "$L/nvcc.summary" && st=WARN
	stage "2 nvcc" "$st" "$(stat -c %s "$CUBIN") B cubin; $(cat "$L/nvcc.summary"); $sass"
else
	tail -15 "$L/nvcc.log"
	stage "2 nvcc" "$(verdict $rc)" "exit $rc (see nvcc.log)"
fi

echo "== 3. kernel tests on that cubin, one process per test"
if [ -f "$CUBIN" ]; then
	run_tests "3 tests (cubin)" "$L/tests-cubin.log" $CAP_TESTS90 $((CAP_MEMCHECK + CAP_KERNELS + CAP_SDPA + CAP_TRAIN + CAP_PEFT + R8)) \
		'TestFusedGemm|TestGemmAgainstCPU|TestLoRA|TestAdapter|TestConformance|TestAttentionKernels' "GOTUNE_TEST_IMAGE=$PWD/$CUBIN"
else
	stage "3 tests (cubin)" "SKIP" "no cubin"
fi

echo "== 4. compute-sanitizer memcheck on a short training step"
if ! command -v "$SANITIZER" >/dev/null; then
	stage "4 memcheck" "SKIP" "$SANITIZER not found"
elif [ ! -x "$GOTUNE" ]; then
	stage "4 memcheck" "MISS" "$GOTUNE not carried"
else
	s=$(slot $CAP_MEMCHECK $((CAP_KERNELS + CAP_SDPA + CAP_TRAIN + CAP_PEFT + R8)))
	timeout "$s" "$SANITIZER" --tool memcheck --error-exitcode 3 --print-limit 20 \
		"$GOTUNE" bench train --device cuda --preset tiny --steps 1 --warmup 0 >"$L/memcheck.log" 2>&1
	rc=$?
	errs=$(grep -oE 'ERROR SUMMARY: [0-9]+ error' "$L/memcheck.log" | tail -1)
	[ $rc -ne 0 ] && grep -E '^=========|failed' "$L/memcheck.log" | head -12
	stage "4 memcheck" "$(verdict $rc)" "${errs:-no summary} (exit $rc; tiny model, one LoRA and one full step)"
fi

echo "== 5. gotune bench kernels, and attention through PyTorch SDPA"
if [ -x "$GOTUNE" ]; then
	s=$(slot $CAP_KERNELS $((CAP_SDPA + CAP_TRAIN + CAP_PEFT + R8)))
	timeout "$s" "$GOTUNE" bench kernels --device cuda --quick --json >"$L/kernels.json" 2>"$L/kernels.log"
	rc=$?
	if [ $rc -eq 0 ]; then
		"$PY" - "$L/kernels.json" <<'PY'
import json, sys
rep = json.load(open(sys.argv[1]))
print(rep["device"], "| cuBLAS:", rep["cublas"])
for r in rep["results"]:
    print("  %-11s %-6s %-4s M=%-6d N=%-6d K=%-6d r=%-3d %9.3f ms %8.1f TFLOP/s %6.0f%% of floor" % (
        r["op"], r["impl"], r["dtype"], r["m"], r["n"], r["k"], r["r"], r["median_ms"], r["tflops"], 100 * r.get("of_floor", 0)))
for h in rep.get("headline") or []:
    print("  fused LoRA fwd / cuBLAS GEMM %s M=%d N=%d K=%d r=%d: %.2fx" % (h["dtype"], h["m"], h["n"], h["k"], h["r"], h["ratio"]))
PY
		stage "5 bench kernels" "ok" "$(grep -c '"op"' "$L/kernels.json") timings"
		s=$(slot $CAP_SDPA $((CAP_TRAIN + CAP_PEFT + R8)))
		timeout "$s" "$PY" scripts/bench_sdpa.py --kernels "$L/kernels.json" --out "$L/sdpa.json" >"$L/sdpa.txt" 2>&1
		rc=$?
		[ $rc -ne 0 ] && tail -5 "$L/sdpa.txt"
		stage "5 attention vs SDPA" "$(verdict $rc)" "$(grep -c 'x$' "$L/sdpa.txt" 2>/dev/null) ratios (exit $rc)"
	else
		tail -10 "$L/kernels.log"
		stage "5 bench kernels" "$(verdict $rc)" "exit $rc (see kernels.log)"
	fi
else
	stage "5 bench kernels" "MISS" "$GOTUNE not carried"
fi

echo "== 6. gotune bench train ($PRESETS), one process per case"
PLAN="$L/train-plan.json"
train_files=()
plan_args=(--preset "$PRESETS" --method lora,full --steps "$STEPS" --warmup "$WARMUP")
if [ -x "$GOTUNE" ]; then
	# Gradient checkpointing on and off where this build has it.
	gc=both
	if ! "$GOTUNE" bench train --dry-run --json --grad-checkpoint both "${plan_args[@]}" >"$PLAN" 2>"$L/train-plan.log"; then
		grep -q 'not supported yet' "$L/train-plan.log" && echo "  $(cat "$L/train-plan.log"); running gc=off only"
		gc=off
		"$GOTUNE" bench train --dry-run --json --grad-checkpoint off "${plan_args[@]}" >"$PLAN" 2>>"$L/train-plan.log"
	fi
	end=$(($(elapsed) + $(slot $CAP_TRAIN $((CAP_PEFT + R8)))))
	ok=0 bad=0
	while read -r preset method gcase; do
		left=$((end - $(elapsed)))
		f="$L/train-$preset-$method-gc$gcase.json"
		if [ "$left" -lt 5 ]; then
			echo "  $preset $method gc=$gcase: out of time"
			bad=$((bad + 1))
			continue
		fi
		timeout "$left" "$GOTUNE" bench train --device cuda --preset "$preset" --method "$method" --grad-checkpoint "$gcase" \
			--steps "$STEPS" --warmup "$WARMUP" --json >"$f" 2>"$L/train.log"
		rc=$?
		train_files+=("$f")
		if [ $rc -eq 0 ]; then ok=$((ok + 1)); else
			bad=$((bad + 1))
			echo "  $preset $method gc=$gcase: $(verdict $rc) (exit $rc): $(tail -1 "$L/train.log")"
		fi
	done < <("$PY" -c '
import json, sys
for c in json.load(open(sys.argv[1]))["results"]:
    print(c["preset"], c["method"], "on" if c["grad_checkpoint"] else "off")' "$PLAN")
	# One QLoRA case (NF4, double quantization) on the first preset, gc
	# off, beside bf16 LoRA: tokens/s and peak memory. Its plan entry is
	# added to $PLAN so that step 7 runs it through PEFT + bitsandbytes.
	qpreset=${PRESETS%%,*}
	qf="$L/train-$qpreset-qlora-nf4-gcoff.json"
	left=$((end - $(elapsed)))
	if [ "$left" -ge 5 ] && "$GOTUNE" bench train --dry-run --json --preset "$qpreset" --method lora --quantize nf4 \
		--grad-checkpoint off --steps "$STEPS" --warmup "$WARMUP" >"$L/qlora-plan.json" 2>>"$L/train-plan.log"; then
		"$PY" -c '
import json, sys
plan, extra = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
plan["results"] += extra["results"]
json.dump(plan, open(sys.argv[1], "w"), indent=1)' "$PLAN" "$L/qlora-plan.json"
		timeout "$left" "$GOTUNE" bench train --device cuda --preset "$qpreset" --method lora --quantize nf4 \
			--grad-checkpoint off --steps "$STEPS" --warmup "$WARMUP" --json >"$qf" 2>"$L/train.log"
		rc=$?
		train_files+=("$qf")
		if [ $rc -eq 0 ]; then ok=$((ok + 1)); else
			bad=$((bad + 1))
			echo "  $qpreset qlora-nf4 gc=off: $(verdict $rc) (exit $rc): $(tail -1 "$L/train.log")"
		fi
	else
		echo "  $qpreset qlora-nf4 gc=off: not run (out of time or no --quantize in this build)"
		bad=$((bad + 1))
	fi
	st=ok
	[ $bad -gt 0 ] && st=FAIL
	stage "6 bench train" "$st" "$ok cases ran, $bad did not (gc=$gc; presets $PRESETS)"
else
	stage "6 bench train" "MISS" "$GOTUNE not carried"
fi

echo "== 7. the same cases through PyTorch + transformers + PEFT"
if [ -s "$PLAN" ]; then
	s=$(slot $CAP_PEFT $((5 + R8)))
	PYTHONUNBUFFERED=1 timeout "$s" "$PY" scripts/bench_peft.py --plan "$PLAN" --out "$L/peft.json" 2>&1 | tee "$L/peft.log" | grep -v '^$'
	rc=${PIPESTATUS[0]}
	stage "7 bench PEFT" "$(verdict $rc)" "exit $rc (see peft.log)"
else
	stage "7 bench PEFT" "SKIP" "no plan"
fi

echo "== 8. data parallel over NCCL: 2 ranks vs 1 (needs 2 GPUs)"
if [ "$R8" -eq 0 ]; then
	stage "8 NCCL 2 ranks" "SKIP" "${NGPU:-0} GPU(s); needs 2"
elif [ ! -x "$GOTUNE" ]; then
	stage "8 NCCL 2 ranks" "MISS" "$GOTUNE not carried"
else
	s=$(slot $CAP_NCCL 3)
	GOTUNE="$GOTUNE" GPU_CHECK_NGPU="$NGPU" DDP_CHECK_TIMEOUT=$((s / 4 + 1)) timeout "$s" bash scripts/ddp-check.sh "$L/ddp" 2>&1 | tee "$L/ddp.log"
	rc=${PIPESTATUS[0]}
	st=$(verdict $rc)
	[ $rc -eq 2 ] && st=SKIP
	stage "8 NCCL 2 ranks" "$st" "$(grep -c ' -> ok$' "$L/ddp.log") of 2 comparisons ok (exit $rc; see ddp.log)"
fi

echo
echo "== summary ($(elapsed) s of a $BUDGET s budget; the seconds column is the time at the end of each stage; logs in $OUT/gpu-check-logs.tgz)"
printf '%s\n' "${SUMMARY[@]}"
if [ -s "$L/sdpa.txt" ]; then
	echo
	echo "attention, gotune vs PyTorch SDPA:"
	cat "$L/sdpa.txt"
fi
echo
if [ -s "$PLAN" ]; then
	"$PY" scripts/gpu_check_table.py --plan "$PLAN" --peft "$L/peft.json" --gotune "${train_files[@]}"
fi
tar -czf "$OUT/gpu-check-logs.tgz" -C "$L" . && rm -rf "$L"
