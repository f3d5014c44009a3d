#!/usr/bin/env bash
# The GPU results in docs/training.md: train specs on the real CIFAR-10 and keep, per spec,
# the log and summary.json (in $OUT when run through the device tool, else ./gpu-results).
#   bash bench/gpu_train.sh specs/resnet18_cifar.yaml specs/elexnet.yaml specs/shallow_cnn.yaml
# Data root: $CIFAR10 (default .gpu/data/cifar10, where ../shared/gpu/prepare.sh stages it, or
# unpacked from .gpupack/cifar10.npz, which bench/cifar_pack.py makes: one file travels lighter).
# Extra --set options for every spec: $SETS (e.g. SETS="--set train.epochs=2").
set -u
. bench/gpu_env.sh  # $out, $data, $out/gpu.txt
for spec in "$@"; do
  name=$(basename "$spec" .yaml)
  rm -rf "runs/gpu-$name"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  PYTHONUNBUFFERED=1 python3 -m netspec train "$spec" --device cuda --out "runs/gpu-$name" \
      --set "train.dataset.root=$data" ${SETS:-} 2>&1 | tee "$out/$name.log"
  end=$(date +%s.%N)
  echo "command wall: $(python3 -c "print(round($end - $start, 1))") s (process start, imports and data decode included)" \
      | tee -a "$out/$name.log"
  cp "runs/gpu-$name/summary.json" "$out/$name.summary.json" 2>/dev/null || true
done
