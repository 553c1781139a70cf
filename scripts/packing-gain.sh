#!/usr/bin/env bash
# Measures what --packing saves on a dataset of short examples, on the CPU:
# one epoch of LoRA on the bundled demo model (testdata/demo, seq-len 128)
# over a mix of seven synthetic instruction tasks (27 to 43 tokens per
# example), unpacked and packed, alternating REPS times; prints the
# batches and padding per epoch (gotune data show --packing, epoch 0 as
# train shuffles it) and each mode's best epoch time, with their ratio.
# Timings are of this machine's CPU backend only; both modes run in the
# same invocation.
#
# Usage: scripts/packing-gain.sh
#
# Environment:
#   N       examples per task (default 300)
#   REPS    runs of each mode (default 2)
#   BATCH   --batch-size (default 8)
#   OUT     where data, runs and logs go (default runs/packing-gain)
#   GOTUNE  the binary (default: bin/gotune, built first)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-300}
REPS=${REPS:-2}
BATCH=${BATCH:-8}
OUT=${OUT:-runs/packing-gain}
MODEL=testdata/demo
if [[ -z ${GOTUNE:-} ]]; then
	go build -o bin/gotune ./cmd/gotune
	GOTUNE=bin/gotune
fi
mkdir -p "$OUT"
: >"$OUT/mix.jsonl"
for task in reverse sort upper double add lookup cipher:3; do
	"$GOTUNE" data synth --task "$task" --n "$N" --seed 7 --out "$OUT/task.jsonl" >/dev/null
	cat "$OUT/task.jsonl" >>"$OUT/mix.jsonl"
done
rm "$OUT/task.jsonl"

"$GOTUNE" data show --data "$OUT/mix.jsonl" --model "$MODEL" --packing --seq-len 128 --batch-size "$BATCH" --seed 1 --n 0 | grep -E '^(data|packed|unpacked)'

# epoch MODE FLAGS...: one epoch; prints "steps seconds" of its metrics.
epoch() {
	local dir=$OUT/$1
	shift
	"$GOTUNE" train --model "$MODEL" --data "$OUT/mix.jsonl" --method lora --epochs 1 --batch-size "$BATCH" \
		--seq-len 128 --seed 1 --device cpu --log-every 0 --out "$dir" --overwrite "$@" >"$dir.log" 2>&1
	python3 -c 'import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
print(len(m), m[-1]["elapsed_s"])' "$dir/metrics.jsonl"
}

best_plain=inf best_packed=inf
for ((r = 1; r <= REPS; r++)); do
	read -r steps_plain t <<<"$(epoch unpacked)"
	best_plain=$(python3 -c "print(min(float('$best_plain'), $t))")
	read -r steps_packed t <<<"$(epoch packed --packing)"
	best_packed=$(python3 -c "print(min(float('$best_packed'), $t))")
	echo "run $r: unpacked $steps_plain steps, packed $steps_packed steps"
done
python3 - "$steps_plain" "$best_plain" "$steps_packed" "$best_packed" <<'PY'
import sys
sp, tp, sk, tk = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
print(f"unpacked: {sp} steps per epoch, best epoch {tp:.2f} s")
print(f"packed:   {sk} steps per epoch, best epoch {tk:.2f} s")
print(f"steps per epoch ÷ {sp / sk:.2f}; epoch time ÷ {tp / tk:.2f} (CPU backend, this machine, same run)")
PY
