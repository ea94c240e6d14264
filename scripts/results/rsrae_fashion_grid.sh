#!/usr/bin/env bash
# RSRAE paper's Fashion-MNIST grid (transductive, each class in turn the inliers, c = outliers
# per inlier), reduced for a 2-core CPU: one seed, 20 epochs (trainer default), c in RATIOS.
# Usage: scripts/results/rsrae_fashion_grid.sh [OUT_ROOT] [RATIOS]
# Full published-size grid on a GPU (3 seeds, c = 0.1..0.9):
#   python train.py -m experiment=rsrae_fashion_grid trainer=gpu \
#     model=rsrae,ae,cae,pca,rsrae_conv data.outlier_ratio=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9
#   python train.py -m experiment=rsrae_fashion_grid trainer=gpu model=rsrae,rsrae_conv \
#     model.mode=alternating data.outlier_ratio=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9
set -euo pipefail
OUT=${1:-/tmp/results/rsrae_grid}
RATIOS=${2:-0.1,0.5,0.9}
EPOCHS=${EPOCHS:-20}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(experiment=rsrae_fashion_grid trainer=cpu logger=csv seed=0 "trainer.max_epochs=$EPOCHS"
        "data.outlier_ratio=$RATIOS" resume=true)
run() {  # run <sweep name> <overrides...>
  local name=$1; shift
  nice -n 10 python train.py -m "${common[@]}" "$@" "hydra.sweep.dir=$OUT/$name" \
    > "$OUT/$name.log" 2>&1 || echo "sweep $name: some job failed (see $OUT/$name.log)"
}
mkdir -p "$OUT"
run rsrae_joint model=rsrae model.mode=joint
run rsrae_alternating model=rsrae model.mode=alternating
run pca model=pca
run ae model=ae
run cae model=cae
