#!/usr/bin/env bash
# The main job, end to end on this machine: builds the static aarch64 DPU
# agent (qemu-virt board) and host-bridge, runs the agent under
# qemu-aarch64-static on a Unix socket and host-bridge against this
# machine's own networking state, then changes routes with `ip` and shows
# the DPU's hardware tables (read by the independent reader) following.
#
#   bash qemu-tests/demo.sh            # scripted changes, then exit
#   bash qemu-tests/demo.sh --live     # keep running; change routes yourself
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh
agent=$(bash cross/build-agent.sh qemu-virt)
cargo build --quiet --locked -p dpu-hw -p host-bridge --bins
work=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    ip route del blackhole 203.0.113.0/24 2>/dev/null || true
    ip route del 198.18.0.0/15 2>/dev/null || true
    ip nexthop del id 4242 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
hw() { target/debug/dpu-hw dump "$work/hw"; }
show() {
    echo "-- DPU hardware: $(hw | grep -E '^  route4') "
    hw | grep -E "^route\[" | grep -E "$1" || echo "   (no route matching $1)"
}

echo "== agent: $(file -b "$agent" | cut -d, -f1-2), $(stat -c %s "$agent") bytes, under qemu-aarch64-static"
qemu-aarch64-static "$agent" --listen "unix:$work/agent.sock" --hw "$work/hw" --stats-interval 1000 2>"$work/agent.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
echo "== host-bridge: mirroring this machine's network namespace"
target/debug/host-bridge run --agent "$work/agent.sock" --status "$work/status.sock" 2>"$work/host-bridge.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "snapshot 1:" "$work/host-bridge.log" 2>/dev/null && break; sleep 0.1; done
target/debug/host-bridge status --status "$work/status.sock" | head -n 3
echo "== the kernel's IPv4 routes (ip -j route show table all | count): $(ip -j route show table all | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
show "."

if [ "${1:-}" = "--live" ]; then
    echo "== live: change routes with ip in another shell; the DPU route table every second (Ctrl-C ends)"
    while sleep 1; do clear; date; hw | grep -E "^  route|^route\["; done
fi

echo "== ip route add blackhole 203.0.113.0/24"
ip route add blackhole 203.0.113.0/24
sleep 1; show "203.0.113"
echo "== ip nexthop add id 4242 blackhole; ip route add 198.18.0.0/15 nhid 4242"
ip nexthop add id 4242 blackhole
ip route add 198.18.0.0/15 nhid 4242
sleep 1; show "198.18"; hw | grep -E "^nexthop.*id 4242" || true
echo "== ip nexthop del id 4242 (the kernel drops its route silently); ip route del blackhole 203.0.113.0/24"
ip nexthop del id 4242
ip route del blackhole 203.0.113.0/24
sleep 1; show "203.0.113|198.18"
echo "== host-bridge status"
target/debug/host-bridge status --status "$work/status.sock" | head -n 3
echo "== logs"
cat "$work/host-bridge.log" "$work/agent.log"
