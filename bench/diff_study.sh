#!/usr/bin/env bash
# Model diffing on the synthetic cohorts: the commands behind every number in docs/diffing.md.
#
#   BASE=/work/runs/baseline OUT=/work/runs/diffing bash bench/diff_study.sh
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
ms() { echo "+ medseglens $*" >&2; "$PY" -m MedSegLensLib "$@"; }
todo() { [ ! -e "$1" ]; }

mkdir -p "$OUT/unet" "$OUT/segformer"
all_cohorts=$(for p in $POPS; do printf '%s ' "$C/${p}_test"; done)

# 1. One SAE on the pooled cohorts; shared vs population-specific latents.
todo "$OUT/unet/sae_pooled" && ms sae train --model "$M/unet" --layer $UNET_LAYER --data $all_cohorts \
  --store "$OUT/unet/store_pooled" --out "$OUT/unet/sae_pooled" --latents 1024 --k 16 --seed 0
todo "$OUT/unet/populations" && ms diff populations --sae "$OUT/unet/sae_pooled" --store "$OUT/unet/store_pooled" \
  --out "$OUT/unet/populations" --seed 0

# 2. One SAE per population on the same backbone and layer; matching, orphans, feature swapping.
for p in adult pediatric ssa; do
  todo "$OUT/unet/sae_$p" && ms sae train --model "$M/unet" --layer $UNET_LAYER --data "$C/${p}_test" \
    --store "$OUT/unet/store_$p" --out "$OUT/unet/sae_$p" --latents 1024 --k 16 --seed 0
done
for p in pediatric ssa; do
  todo "$OUT/unet/saes_adult_$p" && ms diff saes --a "$OUT/unet/sae_adult" --b "$OUT/unet/sae_$p" \
    --store-a "$OUT/unet/store_adult" --store-b "$OUT/unet/store_$p" --name-a adult --name-b $p \
    --out "$OUT/unet/saes_adult_$p" --seed 0
done

# 3. A pooled SegFormer SAE, then U-Net vs SegFormer latents on the same volumes.
todo "$OUT/segformer/sae_pooled" && ms sae train --model "$M/segformer" --layer $SEG_LAYER --data $all_cohorts \
  --store "$OUT/segformer/store_pooled" --out "$OUT/segformer/sae_pooled" --latents 1024 --k 16 --seed 0
todo "$OUT/archs" && ms diff archs --model-a "$M/unet" --sae-a "$OUT/unet/sae_pooled" \
  --model-b "$M/segformer" --sae-b "$OUT/segformer/sae_pooled" --data "$C/adult_test" "$C/pediatric_test" \
  "$C/ssa_test" --max-cases 48 --permutations 50 --out "$OUT/archs" --seed 0
echo "done: $OUT" >&2
