# Sourced by bench/gpu_train.sh and bench/gpu_sweeps.sh: sets $out (results folder: $OUT from
# the device tool, else ./gpu-results) and $data (CIFAR-10 ImageFolder root: $CIFAR10, else
# .gpu/data/cifar10 as ../shared/gpu/prepare.sh stages it, else unpacked once from
# .gpupack/cifar10.npz, the one-file copy bench/cifar_pack.py makes), and writes $out/gpu.txt.
out=${OUT:-gpu-results}
mkdir -p "$out"
data=${CIFAR10:-.gpu/data/cifar10}
if [ ! -d "$data" ] && [ -f .gpupack/cifar10.npz ]; then
  data=/tmp/cifar10
  [ -d "$data" ] || python3 bench/cifar_pack.py unpack .gpupack/cifar10.npz "$data"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')" 2>&1
} > "$out/gpu.txt"
cat "$out/gpu.txt"
