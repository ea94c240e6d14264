#!/usr/bin/env bash
# Print every results table of docs/results.md from the sweep folders under OUT_ROOT
# (written by scripts/results/rsrae_fashion_grid.sh and scripts/results/rapp.sh).
# Usage: scripts/results/tables.sh [OUT_ROOT]
set -uo pipefail
OUT=${1:-/tmp/results}
mean() { python "$(dirname "$0")/class_mean.py" "$@"; }
if [ -d "$OUT/rsrae_grid" ]; then
  echo "### RSRAE Fashion-MNIST grid (transductive), mean over inlier classes"
  echo
  mean "$OUT/rsrae_grid" --group-by model.mode \
    --published "model=rsrae,model.mode=alternating,outlier_ratio=0.5:AUC 0.833 (paper's RSRAE)"
  echo
fi
for exp in rapp_mnist_unimodal rapp_mnist_multimodal rapp_fashion_unimodal rapp_fashion_multimodal; do
  [ -d "$OUT/$exp" ] || continue
  case $exp in
    rapp_mnist_unimodal) pub=("model=ae,score=l2:0.972" "model=vae,score=l2:0.957"
                              "score=rapp_nap:0.979 (NAP)") ;;
    rapp_mnist_multimodal) pub=("model=ae,score=l2:0.825" "model=vae,score=l2:0.864"
                                "score=rapp_nap:0.929 (NAP)") ;;
    rapp_fashion_unimodal) pub=("model=ae,score=l2:0.924" "score=rapp_nap:0.933 (NAP)") ;;
    rapp_fashion_multimodal) pub=("model=ae,score=l2:0.712" "score=rapp_nap:0.734 (NAP)") ;;
  esac
  echo "### $exp, mean AUROC over the 10 classes"
  echo
  mean "$OUT/$exp" --metrics test/auroc,test/ap --published "${pub[@]}"
  echo
done
