#!/usr/bin/env bash
# Model diffing on the synthetic cohorts: the commands behind every number in docs/diffing.md.
#
#   BASE=/work/runs/baseline OUT=/work/runs/diffing bash bench/diff_study.sh
#
# Sizes (env): ARCH_POPS (populations of the architecture comparison, default "adult ssa"), ARCH_CASES
# (the first this many cases of each, copied to $OUT/subset; default 3: the SegFormer forward takes
# minutes per case on the shared CPUs), PERMS (permutation null replicates, default 30). The SegFormer
# SAE is trained on the same subset cases it is compared on. STEPS (which of the numbered
# steps to run, default 123; e.g. STEPS=12 and STEPS=3 in two shells run in parallel).
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
ARCH_POPS=${ARCH_POPS:-adult ssa}
ARCH_CASES=${ARCH_CASES:-3}
PERMS=${PERMS:-30}
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
step 1 && todo "$OUT/unet/populations" && ms diff populations --sae "$OUT/unet/sae_pooled" --store "$OUT/unet/store_pooled" \
  --out "$OUT/unet/populations" --seed 0

# 2. One SAE per population on the same backbone and layer; matching, orphans, feature swapping.
for p in adult pediatric ssa; do
  step 2 && todo "$OUT/unet/sae_$p" && ms sae train --model "$M/unet" --layer $UNET_LAYER --data "$C/${p}_test" \
    --store "$OUT/unet/store_$p" --out "$OUT/unet/sae_$p" --latents 1024 --k 16 --seed 0
done
for p in pediatric ssa; do
  step 2 && todo "$OUT/unet/saes_adult_$p" && ms diff saes --a "$OUT/unet/sae_adult" --b "$OUT/unet/sae_$p" \
    --store-a "$OUT/unet/store_adult" --store-b "$OUT/unet/store_$p" --name-a adult --name-b $p \
    --out "$OUT/unet/saes_adult_$p" --seed 0
done

# 3. A SegFormer SAE, then U-Net vs SegFormer latents on the same volumes (a few cases of each population).
subset() {  # the first ARCH_CASES cases of cohort $1, copied with their manifest rows
  local src="$C/${1}_test" dst="$OUT/subset/${1}_test"
  mkdir -p "$dst" && head -n $((ARCH_CASES + 1)) "$src/manifest.csv" > "$dst/manifest.csv"
  tail -n +2 "$dst/manifest.csv" | cut -d, -f1 | while read -r case; do cp -r "$src/$case" "$dst/"; done
}
arch_cohorts=$(for p in $ARCH_POPS; do printf '%s ' "$OUT/subset/${p}_test"; done)
if step 3 && todo "$OUT/subset"; then for p in $ARCH_POPS; do subset "$p"; done; fi
step 3 && todo "$OUT/segformer/sae_pooled" && ms sae train --model "$M/segformer" --layer $SEG_LAYER --data $arch_cohorts \
  --store "$OUT/segformer/store_pooled" --out "$OUT/segformer/sae_pooled" --latents 1024 --k 16 --seed 0
step 3 && todo "$OUT/archs" && ms diff archs --model-a "$M/unet" --sae-a "$OUT/unet/sae_pooled" \
  --model-b "$M/segformer" --sae-b "$OUT/segformer/sae_pooled" --data $arch_cohorts \
  --permutations "$PERMS" --threads 1 --out "$OUT/archs" --seed 0
echo "done: $OUT" >&2
