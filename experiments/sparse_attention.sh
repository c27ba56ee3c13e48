#!/usr/bin/env bash
# Issue 15's training runs at L = 512: dense pre-training, indexer warm-up, sparse continued training
# at k/L = 1/4 and 1/8 against a dense control, window+sinks and random-k baselines with the same k,
# and a natively sparse run from scratch. Each arm is one `smoe train`; a finished arm is skipped.
#   experiments/sparse_attention.sh [RUNS_DIR]      (default runs/sparse_attention)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs/sparse_attention}
CONFIG=experiments/configs/sparse_attention.yaml
PY=${PYTHON:-python}
DENSE_STEPS=400
WARMUP_STEPS=100
MORE_STEPS=60    # every continued arm and the control (short: the machine is shared)
CONTINUE=(--set train.learning_rate=0.001 --set train.warmup_steps=10 --set train.eval_every=30
          --set train.checkpoint_every=30)
SPARSE=(--set model.attention=indexer --set train.stage=sparse)

arm() {  # arm NAME ARGS...: one run into $RUNS/NAME, logged to $RUNS/NAME.log
  local name=$1; shift
  if [[ -f $RUNS/$name/finished ]]; then echo "skip $name (finished)"; return; fi
  rm -rf "${RUNS:?}/$name"
  echo "$(date -u +%T) start $name: smoe train $CONFIG --out $RUNS/$name $*"
  "$PY" -m smoe.cli train "$CONFIG" --out "$RUNS/$name" --quiet "$@" > "$RUNS/$name.log" 2>&1
  touch "$RUNS/$name/finished"
  echo "$(date -u +%T) done $name: $(tail -1 "$RUNS/$name.log")"
}

mkdir -p "$RUNS"
arm dense --set train.steps=$DENSE_STEPS
arm warmup --init-from "$RUNS/dense" --set model.attention=indexer --set train.stage=indexer_warmup \
  --set model.attention_topk=64 --set train.steps=$WARMUP_STEPS "${CONTINUE[@]}" --set train.eval_every=50 \
  --set train.checkpoint_every=50
arm control --init-from "$RUNS/dense" --set train.steps=$MORE_STEPS "${CONTINUE[@]}"
for k in 128 64; do
  arm indexer_k$k --init-from "$RUNS/warmup" "${SPARSE[@]}" --set model.attention_topk=$k \
    --set train.steps=$MORE_STEPS "${CONTINUE[@]}"
done
baseline() {  # baseline SELECT K: the same k chosen by a fixed pattern, continued from the dense run
  arm "$1_k$2" --init-from "$RUNS/dense" "${SPARSE[@]}" --set model.attention_select="$1" \
    --set model.attention_topk="$2" --set train.steps=$MORE_STEPS "${CONTINUE[@]}"
}
baseline window 64
baseline random 64
arm native_k64 "${SPARSE[@]}" --set model.attention_topk=64 --set train.steps=$((DENSE_STEPS + MORE_STEPS))
baseline window 128
baseline random 128
