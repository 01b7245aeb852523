#!/usr/bin/env bash
# Model diffing on the synthetic cohorts: the commands behind every number in docs/diffing.md.
#
#   BASE=/work/runs/baseline OUT=/work/runs/diffing bash bench/diff_study.sh
#
# Sizes (env): SEG_POPS (populations whose first ARCH_CASES cases, copied to $OUT/subset, train the
# SegFormer SAE; default "adult ssa" and 3: its capture took 3-5 minutes per case while the shared CPUs
# were overloaded), ARCH_POPS (cohorts both networks are compared on, default "adult pediatric ssa"),
# COMPARE_CASES (all of their cases, or the first N of each, copied to $OUT/compare; default all),
# PERMS (permutation null replicates, default 50). STEPS (which of the numbered
# steps to run, default 123; step 3 needs the pooled U-Net SAE and labels of step 1, then STEPS=2 and
# STEPS=3 can run in two shells at once).
#
# BASE holds the baseline run (bench/baseline_failure_map.py): cohorts/{adult,pediatric,ssa,healthy}_test
# and the adult-trained models/{unet,segformer}. Each step is skipped when its output exists, so the
# script can be rerun after an interruption. Layers: U-Net decoder 2 (32 channels, stride 4) and the
# SegFormer's fused decoder features (64 channels, stride 2): fine enough to compare tumour subregions
# (the bottlenecks have 16-32 mm voxels, about 15 of them per tumour).
set -euo pipefail
BASE=${BASE:-/work/runs/baseline}
OUT=${OUT:-/work/runs/diffing}
PY=${PY:-python}
C=$BASE/cohorts
M=$BASE/models
UNET_LAYER=model.1.submodule.1.submodule.2
SEG_LAYER=decoder.fuse_act
POPS="adult pediatric ssa healthy"
SEG_POPS=${SEG_POPS:-adult ssa}
ARCH_CASES=${ARCH_CASES:-3}
ARCH_POPS=${ARCH_POPS:-adult pediatric ssa}
COMPARE_CASES=${COMPARE_CASES:-all}
PERMS=${PERMS:-50}
STEPS=${STEPS:-123}
ms() { echo "+ medseglens $*" >&2; "$PY" -m MedSegLensLib "$@"; }
todo() { [ ! -e "$1" ]; }
step() { [[ $STEPS == *$1* ]]; }

mkdir -p "$OUT/unet" "$OUT/segformer"
cohorts() { for p in "$@"; do printf '%s ' "$C/${p}_test"; done; }
all_cohorts=$(cohorts $POPS)

# 1. One SAE on the pooled cohorts; shared vs population-specific latents.
step 1 && todo "$OUT/unet/sae_pooled" && ms sae train --model "$M/unet" --layer $UNET_LAYER --data $all_cohorts \
  --store "$OUT/unet/store_pooled" --out "$OUT/unet/sae_pooled" --latents 1024 --k 16 --seed 0
LABELS="$OUT/unet/interpret_pooled/latents.json"  # the pooled SAE's latent labels (medseglens interpret)
step 1 && todo "$OUT/unet/interpret_pooled" && OMP_NUM_THREADS=1 ms interpret --model "$M/unet" \
  --sae "$OUT/unet/sae_pooled" --data $all_cohorts --out "$OUT/unet/interpret_pooled" --device cpu
step 1 && todo "$OUT/unet/populations" && ms diff populations --sae "$OUT/unet/sae_pooled" --store "$OUT/unet/store_pooled" \
  --labels "$LABELS" --out "$OUT/unet/populations" --seed 0 --threads 1

# 2. One SAE per population on the same backbone and layer; matching, orphans, feature swapping.
for p in adult pediatric ssa; do
  step 2 && todo "$OUT/unet/sae_$p" && ms sae train --model "$M/unet" --layer $UNET_LAYER --data "$C/${p}_test" \
    --store "$OUT/unet/store_$p" --out "$OUT/unet/sae_$p" --latents 1024 --k 16 --seed 0
done
for p in pediatric ssa; do
  step 2 && todo "$OUT/unet/saes_adult_$p" && ms diff saes --a "$OUT/unet/sae_adult" --b "$OUT/unet/sae_$p" \
    --store-a "$OUT/unet/store_adult" --store-b "$OUT/unet/store_$p" --name-a adult --name-b $p \
    --out "$OUT/unet/saes_adult_$p" --seed 0 --threads 1
done

# 3. A SegFormer SAE, then U-Net vs SegFormer latents on the same volumes (a few cases of each population).
subset() {  # subset SRC DST N: the first N cases of cohort folder SRC, copied with their manifest rows
  mkdir -p "$2" && head -n $(($3 + 1)) "$1/manifest.csv" > "$2/manifest.csv"
  tail -n +2 "$2/manifest.csv" | cut -d, -f1 | while read -r case; do cp -r "$1/$case" "$2/"; done
}
arch_cohorts=$(for p in $SEG_POPS; do printf '%s ' "$OUT/subset/${p}_test"; done)
if step 3 && todo "$OUT/subset"; then for p in $SEG_POPS; do subset "$C/${p}_test" "$OUT/subset/${p}_test" "$ARCH_CASES"; done; fi
if [ "$COMPARE_CASES" = all ]; then
  compare_cohorts=$(cohorts $ARCH_POPS)
else
  compare_cohorts=$(for p in $ARCH_POPS; do printf '%s ' "$OUT/compare/${p}_test"; done)
  if step 3 && todo "$OUT/compare"; then
    for p in $ARCH_POPS; do subset "$C/${p}_test" "$OUT/compare/${p}_test" "$COMPARE_CASES"; done
  fi
fi
step 3 && todo "$OUT/segformer/sae_pooled" && ms sae train --model "$M/segformer" --layer $SEG_LAYER --data $arch_cohorts \
  --store "$OUT/segformer/store_pooled" --out "$OUT/segformer/sae_pooled" --latents 1024 --k 16 --seed 0
step 3 && todo "$OUT/archs" && ms diff archs --model-a "$M/unet" --sae-a "$OUT/unet/sae_pooled" --labels-a "$LABELS" \
  --model-b "$M/segformer" --sae-b "$OUT/segformer/sae_pooled" --data $compare_cohorts \
  --permutations "$PERMS" --threads 1 --out "$OUT/archs" --seed 0
echo "done: $OUT" >&2
