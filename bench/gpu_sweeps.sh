#!/usr/bin/env bash
# Run sweep files on the real CIFAR-10 on a GPU machine and keep their tables: per sweep,
# NAME.log, NAME.results.md and NAME.tgz (results.csv/.png, runs.csv, every run's summary.json,
# report.md and train.log), in $OUT when run through the device tool, else ./gpu-results.
#   bash bench/gpu_sweeps.sh sweeps/elexnet_study.yaml sweeps/elexnet_lr.yaml [-- --set train.epochs=15 ...]
# Arguments after `--` go to every `netspec sweep` as they are. $JOBS runs train at once
# (default 4: small nets leave an H100 mostly idle; see docs/ablations.md); $DEVICE (default
# cuda). Data root: see bench/gpu_env.sh.
set -u
. bench/gpu_env.sh  # $out, $data, $out/gpu.txt
sweeps=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do sweeps+=("$1"); shift; done
[ $# -gt 0 ] && shift  # the rest: options for netspec sweep
status=0
for sweep in "${sweeps[@]}"; do
  name=$(basename "$sweep" .yaml)
  dir="runs/gpu-sweep-$name"
  start=$(date +%s.%N)
  PYTHONUNBUFFERED=1 python3 -m netspec sweep "$sweep" --out "$dir" --jobs "${JOBS:-4}" --device "${DEVICE:-cuda}" \
      --quiet --set "train.dataset.root=$data" "$@" 2>&1 | tee "$out/$name.log"
  code=${PIPESTATUS[0]}
  [ "$code" -ne 0 ] && status=$code
  end=$(date +%s.%N)
  echo "sweep wall: $(python3 -c "print(round($end - $start, 1))") s, exit $code" | tee -a "$out/$name.log"
  # the device tool returns at most 8 files: per sweep its log, results.md, and one archive of
  # the rest (results.csv/.png, runs.csv, each run's summary.json, report.md, train.log)
  cp "$dir/results.md" "$out/$name.results.md" 2>/dev/null
  (cd "$dir" && tar czf - results.csv results.png runs.csv runs/*/summary.json runs/*/report.md runs/*/train.log \
      2>/dev/null) > "$out/$name.tgz"
done
exit $status
