#!/usr/bin/env bash
# The development benchmark of docs/results.md: every model at its shipped defaults against PCA
# and PyOD on the very same splits, the alternatives each default was chosen over (by validation
# AUROC), the old defaults; then the tables.
# Usage: scripts/results/dev_benchmark.sh [OUT_ROOT] [MNIST_DATA_DIR]
# (seed 0 on a 2-core CPU: 10 to 30 s per job, 40 jobs per sweep; two sweeps run at a time.)
set -euo pipefail
OUT=${1:-/tmp/results/dev}
DATA=${2:-../shared/datasets}
RUN=(python train.py -m experiment=dev_benchmark seed=0 "data.data_dir=$DATA" cpu_threads=1 logger=csv)
pair() { # two sweeps at a time: pair NAME1 "OVERRIDES1" NAME2 "OVERRIDES2"
  # shellcheck disable=SC2086
  "${RUN[@]}" $2 "hydra.sweep.dir=$OUT/$1" &
  # shellcheck disable=SC2086
  "${RUN[@]}" $4 "hydra.sweep.dir=$OUT/$3"
  wait
}
# Shipped defaults (trimmed loss; rsrae alternating; scores as the model configs say).
pair shipped/rsrae "model=rsrae" shipped/pca "model=pca"
pair shipped/ae "model=ae" shipped/vae "model=vae"
pair shipped/rae "model=rae" shipped/cae "model=cae"
pair shipped/rvae "model=rvae" choices/rvae_l2 "model=rvae model/score=l2"
# The scores shipped until 2026-12-07, unsmoothed (sections 2 to 6 of docs/results.md compare
# with these; rvae still ships l2_cosine).
pair unsmoothed/rsrae "model=rsrae model/score=l2_cosine" unsmoothed/pca "model=pca model/score=l2"
pair unsmoothed/ae "model=ae model/score=l2_cosine" unsmoothed/vae "model=vae model/score=l2_cosine"
pair unsmoothed/rae "model=rae model/score=l2_cosine" unsmoothed/cae "model=cae model/score=l2"
"${RUN[@]}" model=pca model/score=l2_cosine "hydra.sweep.dir=$OUT/unsmoothed/pca_l2_cosine"
# The alternatives the defaults were chosen over.
pair choices/rsrae_joint "model=rsrae model.mode=joint model/score=l2_cosine" \
  choices/ae_l2 "model=ae model/score=l2"
pair choices/vae_l2 "model=vae model/score=l2" choices/rae_l2 "model=rae model/score=l2"
pair choices/cae_l2_cosine "model=cae model/score=l2_cosine" \
  choices/rsrae_joint_l2 "model=rsrae model.mode=joint model/score=l2"
# The old defaults: every sample in the loss, l2, rsrae in joint mode.
pair old/ae "model=ae robust=none model/score=l2" \
  old/rsrae "model=rsrae model.mode=joint robust=none model/score=l2"
pair old/vae "model=vae robust=none model/score=l2" \
  old/rvae "model=rvae robust=none model/score=l2"
pair old/rae "model=rae robust=none model/score=l2" \
  old/cae "model=cae robust=none model/score=l2"
python scripts/bench_pyod.py --data-dir "$DATA" --out "$OUT/pyod.csv" | tee "$OUT/pyod.log" | tail -n 14
# The tables: shipped defaults against PCA, split by split; then everything, by choice (three
# PCA scores among them, so no --versus).
robustad-report "$OUT/shipped" --out "$OUT/shipped_report" --average-over inlier_classes \
  --metrics val/auroc,test/auroc,test/ap --versus pca
robustad-report "$OUT" --out "$OUT/report" --average-over inlier_classes \
  --group-by robust.fraction,model.mode --metrics val/auroc,test/auroc,test/ap
