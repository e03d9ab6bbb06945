#!/usr/bin/env bash
# Every check that needs a CUDA GPU, in one run (its parts took about 7 minutes on an
# H200, 2 of them MuJoCo Warp's first kernel compile): the `gpu` tests, offline training
# speed with the sampler on the device and on the host, MuJoCo Warp against raw MuJoCo
# Warp, and BatchedSim on Warp with its safety filter on and off.
# Logs and JSON go to $1 (default benchmarks/results/gpu). Needs torch with CUDA, and
# mujoco-warp + warp-lang (the `warp` extra) for the simulator part.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
py="${PYTHON:-python}"
export PYTHONUNBUFFERED=1
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember a failure
    local name="$1"; shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log" || status=1
}
step pytest_gpu "$py" -m pytest -m gpu tests -q -p no:cacheprovider
step offline_speed "$py" benchmarks/offline_speed.py --device cuda --steps 500 --repeats 3
step offline_speed_host "$py" benchmarks/offline_speed.py --device cuda --steps 300 --repeats 3 --host-sampler
step sim_warp_reach "$py" benchmarks/sim_throughput.py --warp --skip-cpu --warp-device cuda \
    --warp-tasks reach --warp-counts 1024,8192,32768
cp benchmarks/results/sim_throughput_warp.json "$out/sim_throughput_warp_reach.json" 2>/dev/null
step sim_warp_push "$py" benchmarks/sim_throughput.py --warp --skip-cpu --warp-device cuda \
    --warp-tasks push --warp-counts 1024,4096
cp benchmarks/results/sim_throughput_warp.json "$out/sim_throughput_warp_push.json" 2>/dev/null
# The safety filter on the device (torch tensors, no host copies): BatchedSim on Warp with
# the filter off, against the run above (on, the default).
step sim_warp_push_nofilter "$py" benchmarks/sim_throughput.py --warp --skip-cpu \
    --warp-device cuda --warp-tasks push --warp-counts 1024,4096 --safety-filter off
cp benchmarks/results/sim_throughput_warp.json "$out/sim_throughput_warp_push_nofilter.json" \
    2>/dev/null
cp benchmarks/results/offline_speed_cuda*.json "$out/" 2>/dev/null
exit $status
