#!/usr/bin/env bash
# Reruns every measurement of docs/results.md on the bundled demo model
# (testdata/demo), on the CPU, and prints the tables (mean ± sample
# standard deviation over seeds).
#
# Usage: scripts/results.sh [meta|continual|compare|summary|all]...   (default: all)
#
# Environment:
#   SEEDS        seeds to run (default "1 2"; e.g. SEEDS=1 for a quick pass)
#   OUT          where runs and logs go (default runs/results)
#   GOTUNE       the binary (default: bin/gotune, built first)
#   META_STEPS   meta-steps of gotune meta-train (default 100)
#   CL_STEPS     optimizer steps per task of gotune continual (default 150)
#   CMP_STEPS    steps per method of gotune compare (default 60)
#   CL_TASKS     the continual task sequence (default "cipher:5 cipher:6 cipher:7")
#   CL_STRATEGIES  continual strategies (default "naive replay ewc olora per-task joint")
#   EWC_LAMBDAS  EWC penalty strengths λ (default "100 1000 10000")
#
# Each run's output is kept in OUT (…/log.txt, continual.json,
# compare.json, PNGs); "summary" only reads them, so it can be rerun after
# a partial run. Every command is echoed before it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-1 2}
OUT=${OUT:-runs/results}
META_STEPS=${META_STEPS:-100}
CL_STEPS=${CL_STEPS:-150}
CMP_STEPS=${CMP_STEPS:-60}
CL_STRATEGIES=${CL_STRATEGIES:-naive replay ewc olora per-task joint}
EWC_LAMBDAS=${EWC_LAMBDAS:-100 1000 10000}
MODEL=testdata/demo
HELD_OUT=cipher:7,cipher:8,cipher:9,cipher:10
LORA=(--lora-targets all-linear --lora-r 16 --lora-alpha 32)
read -r -a CL_TASKS <<<"${CL_TASKS:-cipher:5 cipher:6 cipher:7}"

if [[ -z ${GOTUNE:-} ]]; then
	go build -o bin/gotune ./cmd/gotune
	GOTUNE=bin/gotune
fi

# fresh DIR: removes what an interrupted run left in DIR (the runs
# below are skipped when their result file exists).
fresh() { rm -rf -- "$1"; }

# run LOG ARGS...: echoes and runs gotune ARGS, output to LOG (and stdout).
run() {
	local log=$1
	shift
	mkdir -p "$(dirname "$log")"
	echo "+ gotune $*" | tee "$log"
	"$GOTUNE" "$@" 2>&1 | tee -a "$log"
}

# meta: Reptile and FOMAML initialisations of LoRA over the cipher family,
# then k-shot adaptation on held-out cipher keys 7-10 from each of them,
# from a fresh LoRA, and in-context prompting of the base model.
meta() {
	for s in $SEEDS; do
		local d=$OUT/meta/s$s
		for algo in reptile fomaml; do
			[[ -f $d/$algo/adapter_model.safetensors ]] && continue
			fresh "$d/$algo"
			run "$d/$algo.log" meta-train --model $MODEL --synth-family cipher --algo $algo \
				--meta-steps "$META_STEPS" --meta-batch 2 --shots 8 --query 8 --inner-steps 8 \
				--eval-tasks 0 --val-synth-tasks= "${LORA[@]}" --seed "$s" --device cpu \
				--log-every 25 --out "$d/$algo"
		done
		for k in 4 8 16; do
			run "$d/eval-fresh-k$k.log" eval --model $MODEL --few-shot $k --adapt-steps 8 \
				--synth-tasks $HELD_OUT --query 30 "${LORA[@]}" --device cpu --seed "$s"
			for algo in reptile fomaml; do
				run "$d/eval-$algo-k$k.log" eval --model $MODEL --init-adapter "$d/$algo" --few-shot $k \
					--adapt-steps 8 --synth-tasks $HELD_OUT --query 30 --device cpu --seed "$s"
			done
		done
		# The demo model's 128 positions hold at most 2 cipher examples
		# in front of a query; k = 4 is run to record the error.
		for k in 1 2 4; do
			run "$d/eval-icl-k$k.log" eval --model $MODEL --few-shot $k --in-context \
				--synth-tasks $HELD_OUT --query 30 --device cpu --seed "$s" || true
		done
	done
}

# continual: a 4-task sequence, every strategy, LoRA.
continual() {
	local data=$OUT/continual/data files=()
	mkdir -p "$data"
	for t in "${CL_TASKS[@]}"; do
		local n=${t/:/}
		"$GOTUNE" data synth --task "$t" --n 1000 --seed 1 --out "$data/$n.jsonl" >/dev/null
		files+=("$data/$n.jsonl")
	done
	local tasks
	tasks=$(IFS=,; echo "${files[*]}")
	local common=(continual --model $MODEL --tasks "$tasks" --steps "$CL_STEPS" --lr 5e-3 --warmup-steps 15 --batch-size 16
		"${LORA[@]}" --device cpu --log-every 0)
	for s in $SEEDS; do
		local d=$OUT/continual/s$s
		for st in $CL_STRATEGIES; do
			if [[ $st == ewc ]]; then
				for l in $EWC_LAMBDAS; do
					[[ -f $d/ewc$l/continual.json ]] && continue
					fresh "$d/ewc$l"
					run "$d/ewc$l.log" "${common[@]}" --strategy ewc --ewc-lambda "$l" --seed "$s" --out "$d/ewc$l"
				done
				continue
			fi
			[[ -f $d/$st/continual.json ]] && continue
			fresh "$d/$st"
			run "$d/$st.log" "${common[@]}" --strategy $st --seed "$s" --out "$d/$st"
		done
	done
}

# compare: every method on a held-out cipher under one budget.
compare() {
	local data=$OUT/compare/data
	mkdir -p "$data"
	"$GOTUNE" data synth --task cipher:7 --n 2000 --eval-n 100 --seed 1 \
		--out "$data/train.jsonl" --eval-out "$data/eval.jsonl" >/dev/null
	for s in $SEEDS; do
		local d=$OUT/compare/s$s
		[[ -f $d/compare.json ]] && continue
		fresh "$d"
		run "$d.log" compare --methods full,freeze,lora,dora,adapter,prefix,ptuning,prompt \
			--model $MODEL --data "$data/train.jsonl" --eval-data "$data/eval.jsonl" \
			--steps "$CMP_STEPS" --eval-every 25 --batch-size 16 --lr 1e-2 \
			--method-lr full=1e-3,freeze=1e-3 "${LORA[@]}" --seed "$s" --device cpu --out "$d"
	done
}

# stats [DIGITS]: mean ± sample std of the numbers on stdin (one a line).
stats() {
	awk -v f="%.${1:-1}f" '{x[NR]=$1; s+=$1} END {if (NR==0) {print "n/a"; exit}
		m=s/NR; v=0; for (i=1;i<=NR;i++) v+=(x[i]-m)^2
		if (NR>1) printf f " ± " f " (n=%d)\n", m, sqrt(v/(NR-1)), NR; else printf f " (n=1)\n", m}'
}

# jnum FILE KEY: a top-level number of a JSON file.
jnum() { grep -o "\"$2\": *[-0-9.eE+]*" "$1" | head -1 | sed 's/.*: *//'; }

summary() {
	echo "== k-shot on held-out ciphers 7-10: exact match % | held-out loss (mean ± std over seeds)"
	for k in 1 2 4 8 16; do
		for init in fresh reptile fomaml icl; do
			local logs=("$OUT"/meta/s*/eval-$init-k$k.log)
			[[ -f ${logs[0]} ]] || continue
			local line
			line=$(grep -h "exact match over" "${logs[@]}" || true)
			[[ -n $line ]] || { echo "k=$k $init: $(grep -h 'more than the model' "${logs[@]}" | head -1 | sed 's/.*: cipher/cipher/')"; continue; }
			echo "k=$k $init: EM $(sed 's/.*: mean \([0-9.]*\)%.*/\1/' <<<"$line" | stats) | loss $(sed 's/.*held-out loss mean \([0-9.]*\).*/\1/' <<<"$line" | stats 2)"
		done
	done
	echo "== continual (${CL_TASKS[*]}), % (mean ± std over seeds)"
	for st in naive replay $(printf 'ewc%s ' $EWC_LAMBDAS) olora per-task joint; do
		local js=("$OUT"/continual/s*/$st/continual.json)
		[[ -f ${js[0]} ]] || continue
		local row="$st:"
		for key in avg_acc bwt forgetting; do
			row+=" $key $(for j in "${js[@]}"; do jnum "$j" $key; done | awk '{print $1*100}' | stats)"
		done
		echo "$row"
	done
	echo "== compare (cipher:7, $CMP_STEPS steps): see $OUT/compare/s*.log"
	for l in "$OUT"/compare/s*.log; do
		[[ -f $l ]] && echo "$l:" && sed -n '/^ *method /,/^ *prompt /p' "$l"
	done
}

sections=("$@")
[[ ${#sections[@]} -gt 0 ]] || sections=(all)
for sec in "${sections[@]}"; do
	case $sec in
	meta | continual | compare | summary) $sec ;;
	all) meta && continual && compare && summary ;;
	*) echo "unknown section $sec (want meta, continual, compare, summary or all)" >&2; exit 2 ;;
	esac
done
