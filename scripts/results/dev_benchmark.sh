#!/usr/bin/env bash
# The development benchmark of docs/results.md: shipped defaults against their old defaults
# (robust=none), PCA and PyOD, on the very same splits; then the tables.
# Usage: scripts/results/dev_benchmark.sh [OUT_ROOT] [MNIST_DATA_DIR]
# (seed 0 on a 2-core CPU: about 15 s per job and model; two sweeps run at a time.)
set -euo pipefail
OUT=${1:-/tmp/results/dev}
DATA=${2:-../shared/datasets}
RUN=(python train.py -m experiment=dev_benchmark seed=0 "data.data_dir=$DATA" cpu_threads=1 logger=csv)
# Shipped defaults (trimmed loss; ae and rsrae score l2_cosine), PCA, and the same trimmed
# models scored with l2 (the score choice); then the old defaults (robust=none, l2).
"${RUN[@]}" model=ae "hydra.sweep.dir=$OUT/new_ae_l2c" &
"${RUN[@]}" model=rsrae "hydra.sweep.dir=$OUT/new_rsrae_l2c"
wait
"${RUN[@]}" model=ae,pca model/score=l2 "hydra.sweep.dir=$OUT/new_ae_pca" &
"${RUN[@]}" model=rsrae model/score=l2 "hydra.sweep.dir=$OUT/new_rsrae"
wait
"${RUN[@]}" model=ae robust=none model/score=l2 "hydra.sweep.dir=$OUT/old_ae" &
"${RUN[@]}" model=rsrae robust=none model/score=l2 "hydra.sweep.dir=$OUT/old_rsrae"
wait
"${RUN[@]}" model=vae "hydra.sweep.dir=$OUT/new_vae" &
"${RUN[@]}" model=vae robust=none "hydra.sweep.dir=$OUT/old_vae"
wait
"${RUN[@]}" model=cae "hydra.sweep.dir=$OUT/new_cae" &
"${RUN[@]}" model=rae "hydra.sweep.dir=$OUT/new_rae"
wait
python scripts/bench_pyod.py --data-dir "$DATA" --out "$OUT/../pyod_dev.csv" | tee "$OUT/../pyod.log" | tail -n 14
robustad-report "$OUT" --out "$OUT/../dev_report" --average-over inlier_classes \
  --group-by robust.fraction --metrics val/auroc,test/auroc,test/ap
