#!/usr/bin/env bash
# gpu-check.sh — the one prepared check for a session that is lent a GPU.
#
# The device machine has the NVIDIA driver, nvcc 13, CMake and PyTorch, but
# no Go. Build the Go binaries HERE first (they travel in the working tree;
# build/ is git-ignored, so name it in the device call's `carry`):
#
#   make gpu-binaries      (or, by hand:)
#   mkdir -p build/gpu
#   go test -c -ldflags='-s -w' -o build/gpu/cuda.test ./cuda
#   go build -ldflags='-s -w' -o build/gpu/gotune ./cmd/gotune
#   # or, if the gotune binary has no `bench kernels` command yet:
#   go test -c -ldflags='-s -w' -o build/gpu/benchkernels.test ./internal/benchkernels
#
# (stripped, about 15 MB each: the working tree plus carried files must stay
# under the device tool's 64 MiB.)
#
# then run on the device machine, from the repository root:
#
#   bash scripts/gpu-check.sh            (device tool: carry ["build/gpu"], timeout_s 540)
#
# Stages (each under `timeout`; the whole script stays under 8 minutes):
#   1. the cuda package's tests against the real driver (binding, backend
#      conformance suite, every kernel vs the CPU backend / float64 at
#      ragged shapes, cuBLAS binding), with the embedded fatbin;
#   2. the kernels rebuilt with the device's nvcc for sm_90a
#      (make -C kernels kernels-sm90a), ptxas resource report, spill check,
#      SASS instruction census (HMMA = tensor cores);
#   3. the kernel tests again, loading that sm_90a cubin instead of the
#      embedded fatbin (GOTUNE_TEST_IMAGE);
#   4. `gotune bench kernels` (or the benchkernels test binary) with cuBLAS;
#   5. a short summary table, printed last.
# Full logs go to $OUT (the device tool brings them back) or ./gpu-check-out.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
T0=$(date +%s)
declare -a SUMMARY

stage() { # stage NAME STATUS DETAIL
	SUMMARY+=("$(printf '%-22s %-5s %s' "$1" "$2" "$3")")
}

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee "$OUT/device.txt"
nvcc --version 2>&1 | tail -2 | tee -a "$OUT/device.txt"

# cuBLAS for the benchmark's yardstick: the toolkit's, else PyTorch's wheel.
if [ -z "${GOTUNE_LIBCUBLAS:-}" ]; then
	for cand in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/lib64/libcublas.so.12 \
		$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib", "libcublas.so.12"))' 2>/dev/null) \
		$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.[0-9]+ /{print $NF}'); do
		if [ -f "$cand" ]; then export GOTUNE_LIBCUBLAS="$cand"; break; fi
	done
fi
if [ -n "${GOTUNE_LIBCUBLAS:-}" ]; then
	export LD_LIBRARY_PATH="$(dirname "$GOTUNE_LIBCUBLAS")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
	echo "cuBLAS: $GOTUNE_LIBCUBLAS"
else
	echo "cuBLAS: not found (the benchmark runs without it)"
fi

# The real driver, explicitly (never the emulator), and its absence is a
# failure. GPU_CHECK_LIBCUDA exists only to dry-run this script on the
# emulator (GPU_CHECK_LIBCUDA=$PWD/kernels/emu/build/libcuda.so).
export GOTUNE_LIBCUDA="${GPU_CHECK_LIBCUDA:-libcuda.so.1}" GOTUNE_REQUIRE_EMU=1

count() { # count LOGFILE -> "P pass, F fail, S skip"
	printf '%s pass, %s fail, %s skip' \
		"$(grep -c -- '--- PASS' "$1")" "$(grep -c -- '--- FAIL' "$1")" "$(grep -c -- '--- SKIP' "$1")"
}

echo "== 1. cuda tests on the GPU (embedded fatbin)"
if [ -x build/gpu/cuda.test ]; then
	(cd cuda && timeout 150 ../build/gpu/cuda.test -test.v -test.count=1 -test.timeout=145s) >"$OUT/tests.log" 2>&1
	rc=$?
	grep -E -- '^(--- |    --- FAIL|FAIL|ok|PASS)|relative error|failed' "$OUT/tests.log" | tail -40
	[ $rc -eq 0 ] && st=ok || st=FAIL
	[ $rc -eq 124 ] && st=TIME
	stage "1 tests (fatbin)" "$st" "$(count "$OUT/tests.log")"
else
	stage "1 tests (fatbin)" "MISS" "build/gpu/cuda.test not carried"
fi

echo "== 2. nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p') for sm_90a"
CUBIN=kernels/build/gotune_sm90a.cubin
rm -f "$CUBIN"
timeout 120 make -C kernels kernels-sm90a >"$OUT/nvcc-sm90a.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && [ -f "$CUBIN" ]; then
	spills=$(grep -E 'bytes spill (stores|loads)' "$OUT/nvcc-sm90a.log" | grep -vc ' 0 bytes spill stores, 0 bytes spill loads')
	# One line per kernel: registers, shared memory, stack frame and spills.
	awk '/Compiling entry function/ { fn = $7; gsub(/\047/, "", fn) }
	     /Function properties for/ { prop = $NF }
	     /bytes stack frame/ && prop == fn { sp = $0; sub(/^ +/, "", sp) }
	     /Used [0-9]+ registers/ { u = $0; sub(/.*Used/, "Used", u); printf "  %-24s %s | %s\n", fn, u, sp }' \
		"$OUT/nvcc-sm90a.log"
	if command -v cuobjdump >/dev/null; then
		cuobjdump -sass "$CUBIN" >"$OUT/sm90a.sass" 2>&1
		sass="HMMA $(grep -c HMMA "$OUT/sm90a.sass"), LDSM $(grep -c LDSM "$OUT/sm90a.sass"), LDGSTS $(grep -c LDGSTS "$OUT/sm90a.sass"), LDL/STL $(grep -cE '\b(LDL|STL)\b' "$OUT/sm90a.sass")"
	else
		sass="cuobjdump missing"
	fi
	[ "$spills" = 0 ] && st=ok || st=SPILL
	stage "2 nvcc sm_90a" "$st" "$(stat -c %s "$CUBIN") B cubin, $spills spilling kernel(s); SASS: $sass"
else
	tail -20 "$OUT/nvcc-sm90a.log"
	stage "2 nvcc sm_90a" "FAIL" "exit $rc (see nvcc-sm90a.log)"
fi

echo "== 3. kernel tests on the sm_90a cubin"
if [ -f "$CUBIN" ] && [ -x build/gpu/cuda.test ]; then
	(cd cuda && GOTUNE_TEST_IMAGE="$PWD/../$CUBIN" timeout 90 ../build/gpu/cuda.test -test.v -test.count=1 \
		-test.run 'TestFusedGemm|TestGemmAgainstCPU|TestLoRA|TestAdapter|TestConformance' -test.timeout=85s) >"$OUT/tests-sm90a.log" 2>&1
	rc=$?
	grep -E -- '^(--- FAIL|    --- FAIL|FAIL|ok|PASS)|relative error' "$OUT/tests-sm90a.log" | tail -20
	[ $rc -eq 0 ] && st=ok || st=FAIL
	[ $rc -eq 124 ] && st=TIME
	stage "3 tests (sm_90a)" "$st" "$(count "$OUT/tests-sm90a.log")"
else
	stage "3 tests (sm_90a)" "SKIP" "no cubin or no test binary"
fi

echo "== 4. gotune bench kernels"
left=$((450 - ($(date +%s) - T0)))
[ $left -gt 200 ] && left=200
if [ $left -lt 30 ]; then
	stage "4 bench" "SKIP" "out of time"
else
	if [ -x build/gpu/gotune ] && build/gpu/gotune bench kernels --help >/dev/null 2>&1; then
		bench() { timeout "$left" build/gpu/gotune bench kernels "$@"; }
	elif [ -x build/gpu/benchkernels.test ]; then
		bench() { GOTUNE_BENCH_ARGS="$*" timeout "$left" build/gpu/benchkernels.test -test.run '^TestFromEnvironment$' -test.timeout=0; }
	else
		bench() { echo "no gotune or benchkernels.test binary carried"; return 2; }
	fi
	bench --device cuda --json >"$OUT/bench.json" 2>"$OUT/bench.log"
	rc=$?
	if [ $rc -eq 0 ]; then
		# The table from the same numbers would need a second run; print the
		# JSON's essentials instead (python3 is on the device).
		python3 - "$OUT/bench.json" "$OUT/bench.summary" >"$OUT/bench.txt" <<'PY'
import json, sys
txt = open(sys.argv[1]).read()
rep = json.loads(txt[txt.index("{"):txt.rindex("}") + 1])
print(rep["device"]); print("peaks:", rep["peaks"]); print("cuBLAS:", rep["cublas"])
print("%-11s %-6s %-4s %6s %6s %6s %3s %9s %8s %7s %8s %6s" % ("op", "impl", "dt", "M", "N", "K", "r", "ms", "TFLOP/s", "GB/s", "floor", "of"))
for r in rep["results"]:
    print("%-11s %-6s %-4s %6d %6d %6d %3d %9.3f %8.1f %7.0f %8.3f %5.0f%%" % (r["op"], r["impl"], r["dtype"], r["m"], r["n"], r["k"], r["r"],
          r["median_ms"], r["tflops"], r["gbs"], r.get("floor_ms", 0), 100 * r.get("of_floor", 0)))
print("headline: gotune fused LoRA forward / cuBLAS base GEMM")
for h in rep.get("headline") or []:
    print("  %s M=%d N=%d K=%d r=%d: %.3f / %.3f ms = %.2fx" % (h["dtype"], h["m"], h["n"], h["k"], h["r"], h["lora_ms"], h["cublas_base_ms"], h["ratio"]))
if rep.get("fallbacks"):
    print("host fallbacks:", rep["fallbacks"])
ratios = sorted(h["ratio"] for h in rep.get("headline") or [])
with open(sys.argv[2], "w") as f:
    f.write("%d timings; fused LoRA fwd / cuBLAS GEMM: %s\n" % (len(rep["results"]),
            "%.2fx..%.2fx" % (ratios[0], ratios[-1]) if ratios else "n/a (no cuBLAS)"))
PY
		cat "$OUT/bench.txt"
		stage "4 bench" "ok" "$(cat "$OUT/bench.summary" 2>/dev/null)"
	else
		tail -20 "$OUT/bench.log"
		st=FAIL
		[ $rc -eq 124 ] && st=TIME
		stage "4 bench" "$st" "exit $rc (see bench.log)"
	fi
fi

echo
echo "== summary ($(($(date +%s) - T0)) s; logs in $OUT)"
printf '%s\n' "${SUMMARY[@]}"
