#!/usr/bin/env bash
# Benchmark of the notifier taps (not a test, not in CI), in the test-kernel
# VM (the build host's kernel refuses the FIB taps): builds the dpu-1m agent
# and host-bridge in release, then runs qemu-tests/vm/bench-taps.sh, which
# prints
#  1. a link going down with N routes on it (and M more on another link):
#     the kernel's time, and the time until the DPU's hardware holds
#     exactly the M survivors, with the taps and with the re-dump
#     (--taps off), and their ratio;
#  2. records per second the taps carry with no drop, and records one MiB
#     of ring buffer holds;
#  3. the kernel's install time of N routes with the taps attached
#     against none, as a ratio.
#
#   bash qemu-tests/bench-taps.sh [N] [M]      (default 100000 100000)
set -euo pipefail
n=${1:-100000}
m=${2:-100000}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh >/dev/null
kernel=$(bash bpf/kernel/build.sh | tail -n 1)
echo "building (release, dpu-1m board)..." >&2
DPU_BOARD=dpu-1m CARGO_TARGET_DIR=target/boards/dpu-1m cargo build --quiet --release -p dpu-agent --bins
cargo build --quiet --release -p host-bridge -p dpu-hw --bins
bash bpf/vm/run.sh --kernel "$kernel" --memory 4G --timeout 3000 qemu-tests/vm/bench-taps.sh "$n" "$m" 2>&1 | cat
