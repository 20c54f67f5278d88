#!/usr/bin/env bash
# Benchmark of the kernel hearing the DPU's answers (not a test, not in CI),
# in the test-kernel VM (netdevsim and the series): builds the dpu-1m agent
# and host-bridge in release, then runs qemu-tests/vm/bench-offload.sh,
# which prints
#  1. route add -> rt_offload per route, p50 and p99;
#  2. N routes: the time until all carry rt_offload with the FIB firmware,
#     and netdevsim's own fib.c (1 ms per route, rt_trap) on B routes;
#  3. T tc flower skip_sw rules: rules/s and time per rule with
#     --tc-answer dpu (tc waits for the DPU's answer) and --tc-answer now.
#
#   bash qemu-tests/bench-offload.sh [N] [B] [T]   (default 100000 20000 1000)
set -euo pipefail
n=${1:-100000}
b=${2:-20000}
t=${3:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh >/dev/null
kernel=$(bash bpf/kernel/build.sh | tail -n 1)
echo "building (release, dpu-1m board)..." >&2
DPU_BOARD=dpu-1m CARGO_TARGET_DIR=target/boards/dpu-1m cargo build --quiet --release -p dpu-agent --bins
cargo build --quiet --release -p host-bridge -p dpu-hw --bins
bash bpf/vm/run.sh --kernel "$kernel" --memory 4G --timeout 3000 qemu-tests/vm/bench-offload.sh "$n" "$b" "$t" 2>&1 | cat
