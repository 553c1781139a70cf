#!/usr/bin/env bash
# ddp-check.sh — data-parallel training over the real NCCL, on a machine
# with at least 2 GPUs: the tiny Llama trained for a few steps by one
# process, then by 2 ranks (`gotune launch --nproc-per-node 2`), LoRA with
# ZeRO 0 and full fine-tuning with ZeRO-2, the same global batch; the
# losses, gradient norms and saved weights must agree (float32, up to the
# order of NCCL's sums). scripts/gpu-check.sh runs it as its stage 8.
#
#   bash scripts/ddp-check.sh OUTDIR
#
# Exit 0: every comparison within tolerance; 1: a run failed or differs;
# 2: skipped (fewer than 2 GPUs, or no libnccl.so.2 found).
#
# Knobs: GOTUNE (build/gpu/gotune), PYTHON (python3), GOTUNE_LIBNCCL (else
# found: a pip wheel's nvidia/nccl/lib, then ldconfig), DDP_CHECK_TIMEOUT
# (s per run, 60). GPU_CHECK_NGPU overrides the GPU count, to dry-run this
# script on gotune's emulator:
#   make emu build && GOTUNE=bin/gotune GPU_CHECK_NGPU=2 GOTUNE_EMU_DEVICES=2 \
#   GOTUNE_LIBCUDA=$PWD/kernels/emu/build/libcuda.so \
#   GOTUNE_LIBNCCL=$PWD/kernels/emu/build/libnccl.so.2 bash scripts/ddp-check.sh /tmp/ddp
set -u
cd "$(dirname "$0")/.."
DIR=${1:?usage: ddp-check.sh OUTDIR}
GOTUNE=${GOTUNE:-build/gpu/gotune}
PY=${PYTHON:-python3}
LIMIT=${DDP_CHECK_TIMEOUT:-60}
mkdir -p "$DIR"

ngpu=${GPU_CHECK_NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')}
if [ "${ngpu:-0}" -lt 2 ]; then
	echo "skipped: ${ngpu:-0} GPU(s); data parallel needs 2"
	exit 2
fi
if [ ! -x "$GOTUNE" ]; then
	echo "$GOTUNE not carried"
	exit 1
fi
if [ -z "${GOTUNE_LIBNCCL:-}" ]; then
	GOTUNE_LIBNCCL=$("$PY" -c '
import os, sys
for p in sys.path:
    f = os.path.join(p or ".", "nvidia", "nccl", "lib", "libnccl.so.2")
    if os.path.isfile(f):
        print(f)
        break' 2>/dev/null)
	[ -z "$GOTUNE_LIBNCCL" ] && GOTUNE_LIBNCCL=$(ldconfig -p 2>/dev/null | awk '/libnccl\.so\.2 /{print $NF; exit}')
fi
if [ -z "$GOTUNE_LIBNCCL" ]; then
	echo "skipped: no libnccl.so.2 (set GOTUNE_LIBNCCL)"
	exit 2
fi
export GOTUNE_LIBNCCL
echo "NCCL: $GOTUNE_LIBNCCL; $ngpu GPUs"

train=(train --model testdata/tiny/llama --data testdata/tiny/data.jsonl --steps 4 --batch-size 8 --seq-len 32
	--lr 3e-3 --max-grad-norm 1 --weight-decay 0.01 --precision fp32 --log-every 1 --device cuda)
status=0
# check NAME METHOD [FLAGS...]: one process, then 2 ranks with FLAGS.
check() {
	local name=$1 method=$2 rc
	shift 2
	timeout "$LIMIT" "$GOTUNE" "${train[@]}" --method "$method" --out "$DIR/$name-1" >"$DIR/$name-1.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "$name: the 1-process run failed (exit $rc): $(tail -1 "$DIR/$name-1.log")"
		status=1
		return
	fi
	timeout "$LIMIT" "$GOTUNE" launch --nproc-per-node 2 -- "${train[@]}" --method "$method" "$@" --out "$DIR/$name-2" \
		>"$DIR/$name-2.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "$name: the 2-rank run failed (exit $rc): $(grep -v '^step' "$DIR/$name-2.log" | tail -2 | tr '\n' ' ')"
		status=1
		return
	fi
	"$PY" - "$name" "$DIR/$name-1" "$DIR/$name-2" <<'PY' || status=1
import glob, json, os, struct, sys

name, one, two = sys.argv[1:4]

def metrics(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip()]

def tensors(path):
    # safetensors: an 8-byte header length, the JSON header, the data.
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, b = v["data_offsets"]
        out[k] = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
    return out

m1, m2 = metrics(one), metrics(two)
worst_loss = max(abs(a["loss"] - b["loss"]) for a, b in zip(m1, m2))
worst_norm = max(abs(a["grad_norm"] - b["grad_norm"]) for a, b in zip(m1, m2))
worst_w, at, n = 0.0, "", 0
for f in sorted(glob.glob(os.path.join(one, "*.safetensors"))):
    t1, t2 = tensors(f), tensors(os.path.join(two, os.path.basename(f)))
    for k, v in t1.items():
        n += len(v)
        d = max(abs(x - y) for x, y in zip(v, t2[k]))
        if d > worst_w:
            worst_w, at = d, k
ok = len(m1) == len(m2) > 0 and n > 0 and worst_loss < 1e-4 and worst_norm < 1e-3 and worst_w < 1e-4
print("%s: 2 ranks vs 1 over %d steps: loss |diff| %.2g, grad norm |diff| %.2g, weights |diff| %.2g (%s, %d values) -> %s"
      % (name, len(m1), worst_loss, worst_norm, worst_w, at or "-", n, "ok" if ok else "MISMATCH"))
sys.exit(0 if ok else 1)
PY
}
check lora lora
check full-zero2 full --zero 2
exit $status
