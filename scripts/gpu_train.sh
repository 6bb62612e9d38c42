#!/usr/bin/env bash
# Issue 11's GPU run: three recipes for the bundled model trained side by side on one GPU, on
# procedural pairs rendered on the fly (data.synthetic_pairs), then packed for the trip back.
#
#   bash scripts/gpu_train.sh OUT [SECONDS]   # ≈ SECONDS of training (default 400) on one H100/H200
#   SMOKE=1 bash scripts/gpu_train.sh OUT     # a few CPU steps of every stage: tests this script
#   VARIANTS="warm" bash scripts/gpu_train.sh OUT 220   # some of the recipes (they share 12 data workers)
#
#   warm  — the bundled model, 17-frame clips (configs/small.yaml from its weights)
#   small — the `small` preset from scratch: 5-frame clips (configs/small-stage1.yaml), then 17
#   deep  — the `small-deep` preset (4 blocks) from scratch, the same two stages
#   camouflage — the bundled model, stage 9's recipe (configs/small-gpu-camouflage.yaml: stage 8's dead
#            leaves, objects drawn like their world, faster motion and σ where the one-step sampler looks,
#            at the GPU's batch); packed at the bundle's stored sampling. PHOTOS=P adds stage 10's training
#            photographs (data.photos=P; the GPU image needs mahotas' and PyWavelets' wheels carried too)
#   fine  — the `small-fine` preset (4×4-pixel tokens) from scratch: 5-frame clips with stage 10's data
#            (configs/small-fine-stage1.yaml), then stage 9's GPU recipe on 17-frame clips with the
#            training photographs at stage 3's lr 3e-4 (FINE_STEPS="N1 N2", default "800 2000"; docs/model.md)
#   bundle — the bundled model (small-fine since stage 11) further on the latest CPU recipe
#            (configs/small-fine11.yaml: 17-frame clips, photographs from the wide pool in 0.85 of the scenes,
#            every task with swap and modification drawn twice as often, edited positions weighed 9×)
#            at the GPU's batch and stage 9's lr 3e-4 (BUNDLE_STEPS, default 1500); packed at its stored
#            sampling. The GPU image has neither Gradio nor mahotas: carry the training photos as files,
#            written here by `python -c 'from freeprop.data.photos import copy_train_photos as c; c(".photos")'`
#            (FREEPROP_PHOTO_DIR, default .photos when that folder exists)
# Each stage stops at its step count or, at the latest, its share of SECONDS (SIGTERM: it saves and
# writes its pipeline). OUT gets runs.tgz.part-* (each run's fp16 pipeline, config, summary and
# metrics; cat them to untar) and logs.txt.
set -euo pipefail
OUT=${1:?usage: gpu_train.sh OUT [SECONDS]}
BUDGET=${2:-400}
VARIANTS=(${VARIANTS:-warm small deep})
RUNS=runs/gpu
mkdir -p "$OUT" "$RUNS"
if [[ -z "${FREEPROP_PHOTO_DIR:-}" && -d .photos ]]; then export FREEPROP_PHOTO_DIR=$PWD/.photos; fi

if [[ -n "${SMOKE:-}" ]]; then
  STEPS=(4 3 3) BATCH=(2 2) FINE_STEPS=(3 3) BUNDLE_STEPS=3 COMMON="mixed_precision=no data.num_workers=1"
else  # steps sized for ≈ 7 steps/s at 17 frames (4 render workers ≈ 240 pairs/s) and ≈ 6 at 5 frames (batch 64)
  STEPS=(${WARM_STEPS:-2600} 800 1900) BATCH=(32 64) FINE_STEPS=(${FINE_STEPS:-800 2000}) BUNDLE_STEPS=${BUNDLE_STEPS:-1500} COMMON="mixed_precision=bf16 data.num_workers=$((12 / ${#VARIANTS[@]}))"
fi
COMMON="$COMMON full_finetune=true data.synthetic_pairs=1000000 save_every=500 log_every=50"
train() {  # NAME SECONDS ARGS...: one `freeprop train`, stopped with SIGTERM after SECONDS at the latest
  local name=$1 seconds=$2; shift 2
  timeout -s TERM -k 60 "$seconds" python3 -m freeprop.cli train "$@" output_dir="$RUNS/$name" $COMMON \
    >"$RUNS/$name.log" 2>&1 || echo "$name: exit $?" >>"$RUNS/$name.log"
}
# NAME PRESET CONFIG1 STEPS1 CONFIG2 STEPS2 [ARGS2...]: a 5-frame stage from scratch at the 5-frame batch,
# then the 17-frame stage (CONFIG2 and ARGS2) from its pipeline
two_stages() {
  local name=$1 preset=$2 config1=$3 steps1=$4 config2=$5 steps2=$6 start=$SECONDS
  shift 6
  train "$name-stage1" $((BUDGET / 3)) "$config1" model.preset="$preset" max_steps="$steps1" batch_size="${BATCH[1]}"
  train "$name" $((BUDGET - (SECONDS - start))) "$config2" model.pipeline="$RUNS/$name-stage1/pipeline" \
    max_steps="$steps2" batch_size="${BATCH[0]}" "$@"
}

nvidia-smi --query-gpu=name,memory.total --format=csv >"$RUNS/gpu.txt" 2>&1 || echo "no GPU" >"$RUNS/gpu.txt"
warm() {
  train warm "$BUDGET" configs/small.yaml model.weights=null model.pipeline=src/freeprop/assets/freeprop-small \
    max_steps="${STEPS[0]}" batch_size="${BATCH[0]}" optim.lr=3e-4 optim.warmup_steps=100
}
camouflage() {
  train camouflage "$BUDGET" configs/small-gpu-camouflage.yaml model.pipeline=src/freeprop/assets/freeprop-small \
    max_steps="${STEPS[0]}" batch_size="${BATCH[0]}" data.photos="${PHOTOS:-0}"
}
bundle() {
  train bundle "$BUDGET" configs/small-fine11.yaml model.pipeline=src/freeprop/assets/freeprop-small \
    max_steps="$BUNDLE_STEPS" batch_size="${BATCH[0]}" optim.lr=3e-4 optim.warmup_steps=100
}
# fine's 17-frame stage: stage 9's GPU recipe with the training photographs at stage 3's lr (its start has
# seen 5-frame clips only)
for variant in "${VARIANTS[@]}"; do
  case $variant in
    warm) warm & ;;
    camouflage) camouflage & ;;
    bundle) bundle & ;;
    small) two_stages small small configs/small-stage1.yaml "${STEPS[1]}" configs/small.yaml "${STEPS[2]}" \
      model.weights=null & ;;
    deep) two_stages deep small-deep configs/small-stage1.yaml "${STEPS[1]}" configs/small.yaml "${STEPS[2]}" \
      model.weights=null & ;;
    fine) two_stages fine small-fine configs/small-fine-stage1.yaml "${FINE_STEPS[0]}" \
      configs/small-gpu-camouflage.yaml "${FINE_STEPS[1]}" data.photos=0.5 optim.lr=3e-4 optim.warmup_steps=100 & ;;
  esac
done
wait

# Pack: each final pipeline in fp16 (scripts/bundle_model.py) with its run's files; split under 16 MiB.
pack=$RUNS/pack
rm -rf "$pack" && mkdir -p "$pack"
for run in warm small small-stage1 deep deep-stage1 camouflage bundle fine fine-stage1; do  # stage 1 brings back its files, not its weights
  [[ -d $RUNS/$run ]] || continue  # a variant not run this time
  sampling="--steps 2 --samples 1 --identity-correction 0"
  if [[ $run == camouflage || $run == bundle ]]; then sampling=""; fi  # the sampling its pipeline stores: the bundle's it started from
  [[ $run != *stage1 && -d $RUNS/$run/pipeline ]] && python3 scripts/bundle_model.py "$RUNS/$run" $sampling --out "$pack/$run" >/dev/null
  mkdir -p "$pack/$run" && cp "$RUNS/$run"/{metrics.jsonl,summary.json,config.json} "$pack/$run/" 2>/dev/null || true
done
tar czf - -C "$pack" . | split -b 15M - "$OUT/runs.tgz.part-"
for f in "$RUNS"/gpu.txt "$RUNS"/*.log; do echo "== $f"; tail -c 3000 "$f"; done >"$OUT/logs.txt"
