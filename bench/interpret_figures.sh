#!/bin/bash
# The figures of docs/interpret.md: the baseline U-Net's SAEs (from bench/sae_layers.py) and a SegFormer SAE
# trained here, interpreted on the held-out synthetic cohorts of a baseline folder, one thread.
#   bash bench/interpret_figures.sh [BASELINE_DIR] [SAE_LAYERS_DIR] [OUT]
set -e
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
B=${1:-/work/runs/baseline}
S=${2:-/work/runs/sae_layers}/unet/saes
R=${3:-/work/runs/interpret}
C=$B/cohorts
PY=${PYTHON:-python}  # e.g. PYTHON=/tmp/venv0/bin/python
for layer in model.1.submodule.1.submodule.1.submodule model.1.submodule.1.submodule.2; do
  /usr/bin/time -v "$PY" -m MedSegLensLib interpret --model $B/models/unet \
    --sae $S/$layer-batchtopk --data $C/adult_test $C/pediatric_test $C/ssa_test $C/healthy_test \
    --out $R/unet-$layer --device cpu --overwrite
done
# SegFormer: no SAE existed at its default layer; bench/interpret_baseline.py trains one on adult_train and interprets
"$PY" bench/interpret_baseline.py --work $B --out $R/bench \
  --archs segformer --train-cohorts adult_train --threads 1
"$PY" -m MedSegLensLib interpret-compare $R/unet-model.1.submodule.1.submodule.1.submodule \
  $R/unet-model.1.submodule.1.submodule.2 $R/bench/segformer-stages.3 \
  --names "unet bottleneck" "unet decoder" "segformer stage 4" --out $R/compare --overwrite
"$PY" bench/interpret_summary.py $R/unet-model.1.submodule.1.submodule.1.submodule \
  $R/unet-model.1.submodule.1.submodule.2 $R/bench/segformer-stages.3
