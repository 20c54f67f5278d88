#!/usr/bin/env bash
# The DPU agent demo: builds the static aarch64 agent for the qemu-virt
# board, runs it under qemu-aarch64-static on a Unix socket, sends it a
# topology from the host side, sends packets through the hardware model and
# prints the hardware tables as the independent reader sees them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh
agent=$(bash cross/build-agent.sh qemu-virt)
cargo build --quiet --locked -p dpu-hw -p host-bridge --examples --bins
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
echo "== agent: $(file -b "$agent" | cut -d, -f1-2), $(stat -c %s "$agent") bytes"
qemu-aarch64-static "$agent" --listen "unix:$work/agent.sock" --hw "$work/hw" --stats-interval 500 2>"$work/agent.log" &
pid=$!
for _ in $(seq 50); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
echo "== host side"
target/debug/examples/demo "$work/agent.sock"
echo "== traffic: 3 packets to 10.7.1.1 arriving on p0"
target/debug/dpu-hw inject "$work/hw" --in 2 --dst 10.7.1.1 --dmac 02:00:00:00:00:02 --count 3
echo "== hardware tables: usage, ports, and the route the packets hit"
target/debug/dpu-hw dump "$work/hw" | grep -E "^board|^  |^port|10\.7\.0\.0/16|^nexthop|^neigh"
echo "== agent log"
cat "$work/agent.log"
