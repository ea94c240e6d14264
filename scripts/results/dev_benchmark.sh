#!/usr/bin/env bash
# The development benchmark of docs/results.md: shipped defaults against their old defaults
# (robust=none), PCA and PyOD, on the very same splits; then the tables.
# Usage: scripts/results/dev_benchmark.sh [OUT_ROOT] [MNIST_DATA_DIR]
# (seed 0 on a 2-core CPU: about 15 s per job and model; two sweeps run at a time.)
set -euo pipefail
OUT=${1:-/tmp/results/dev}
DATA=${2:-../shared/datasets}
RUN=(python train.py -m experiment=dev_benchmark seed=0 "data.data_dir=$DATA" cpu_threads=1 logger=csv)
# Shipped defaults (trimmed loss; ae and rsrae score l2_cosine; rsrae alternating), PCA, RSRAE
# in joint mode (the mode choice), the trimmed models scored with l2 (the score choice); then the
# old defaults (joint, robust=none, l2).
"${RUN[@]}" model=ae "hydra.sweep.dir=$OUT/new_ae_l2c" &
"${RUN[@]}" model=rsrae "hydra.sweep.dir=$OUT/new_rsrae_alt"
wait
"${RUN[@]}" model=rsrae model.mode=joint "hydra.sweep.dir=$OUT/new_rsrae_l2c" &
"${RUN[@]}" model=ae,pca model/score=l2 "hydra.sweep.dir=$OUT/new_ae_pca"
wait
"${RUN[@]}" model=rsrae model.mode=joint model/score=l2 "hydra.sweep.dir=$OUT/new_rsrae" &
"${RUN[@]}" model=ae robust=none model/score=l2 "hydra.sweep.dir=$OUT/old_ae"
wait
"${RUN[@]}" model=rsrae model.mode=joint robust=none model/score=l2 "hydra.sweep.dir=$OUT/old_rsrae" &
"${RUN[@]}" model=vae "hydra.sweep.dir=$OUT/new_vae"
wait
"${RUN[@]}" model=vae robust=none "hydra.sweep.dir=$OUT/old_vae" &
"${RUN[@]}" model=vae model/score=l2_cosine "hydra.sweep.dir=$OUT/new_vae_l2c"
wait
"${RUN[@]}" model=rae model/score=l2_cosine "hydra.sweep.dir=$OUT/new_rae_l2c" &
"${RUN[@]}" model=cae "hydra.sweep.dir=$OUT/new_cae"
wait
"${RUN[@]}" model=rae "hydra.sweep.dir=$OUT/new_rae" &
"${RUN[@]}" model=cae model/score=l2_cosine "hydra.sweep.dir=$OUT/new_cae_l2c"
wait
python scripts/bench_pyod.py --data-dir "$DATA" --out "$OUT/../pyod_dev.csv" | tee "$OUT/../pyod.log" | tail -n 14
robustad-report "$OUT" --out "$OUT/../dev_report" --average-over inlier_classes \
  --group-by robust.fraction,model.mode --metrics val/auroc,test/auroc,test/ap
