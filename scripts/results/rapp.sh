#!/usr/bin/env bash
# RaPP protocol (Kim et al., ICLR 2020), reduced for a 2-core CPU: one seed, EPOCHS epochs,
# validation only on the last epoch (test_ckpt=last needs none before), models ae,vae,
# scores l2,rapp_nap, the 10 classes. Training is the same for both scores; only the test
# score differs.
# Usage: scripts/results/rapp.sh EXPERIMENT EPOCHS [OUT_ROOT] [extra overrides...]
#   e.g. scripts/results/rapp.sh rapp_mnist_unimodal 5
# Full published-size version on a GPU (3 seeds, trainer default epochs), e.g.:
#   python train.py -m experiment=rapp_mnist_unimodal trainer=gpu data.data_dir=/work/shared/datasets
set -euo pipefail
EXP=$1
EPOCHS=$2
OUT=${3:-/tmp/results}
shift $(( $# < 3 ? $# : 3 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
nice -n 10 python train.py -m "experiment=$EXP" trainer=cpu logger=csv seed=0 resume=true \
  data.data_dir=/work/shared/datasets data.download=false \
  "trainer.max_epochs=$EPOCHS" "trainer.check_val_every_n_epoch=$EPOCHS" \
  "hydra.sweep.dir=$OUT/$EXP" "$@" > "$OUT/$EXP.log" 2>&1 \
  || echo "sweep $EXP: some job failed (see $OUT/$EXP.log)"
