#!/usr/bin/env bash
# The main job, end to end on this machine: builds the qemu-virt DPU image
# (cross/build-image.sh: Debian's arm64 kernel, a busybox initramfs with
# the static aarch64 agent) and host-bridge, boots the image in
# qemu-system-aarch64 (TCG) with the forwarding hardware as a PCI BAR over
# the board's memory file, runs host-bridge against this machine's own
# networking state over the DPU's virtio-serial port, then changes routes
# with `ip` and shows the DPU's hardware tables, read from outside the VM
# by the independent reader, following.
#
#   bash qemu-tests/demo.sh              # scripted changes, then exit
#   bash qemu-tests/demo.sh --live       # keep running; change routes yourself
#   bash qemu-tests/demo.sh --user-mode  # the agent under qemu-aarch64-static
#                                        # on a Unix socket instead of the VM
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
live=0 user=0
for a in "$@"; do
    case $a in
    --live) live=1 ;;
    --user-mode) user=1 ;;
    *) echo "demo.sh: unknown option $a" >&2; exit 2 ;;
    esac
done
bash cross/setup.sh
agent=$(bash cross/build-agent.sh qemu-virt)
cargo build --quiet --locked -p dpu-hw -p host-bridge --bins
work=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -f "$work/dpu/qemu.pid" ] && kill "$(cat "$work/dpu/qemu.pid")" 2>/dev/null || true
    ip route del blackhole 203.0.113.0/24 2>/dev/null || true
    ip route del 198.18.0.0/15 2>/dev/null || true
    ip nexthop del id 4242 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
hw() { target/debug/dpu-hw dump "$hwfile"; }
show() {
    echo "-- DPU hardware: $(hw | grep -E '^  route4') "
    hw | grep -E "^route\[" | grep -E "$1" || echo "   (no route matching $1)"
}

if [ $user = 1 ]; then
    echo "== agent: $(file -b "$agent" | cut -d, -f1-2), $(stat -c %s "$agent") bytes, under qemu-aarch64-static"
    hwfile=$work/hw
    agentlog=$work/agent.log
    qemu-aarch64-static "$agent" --listen "unix:$work/agent.sock" --hw "$hwfile" --stats-interval 1000 2>"$agentlog" &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$work/agent.sock" ] && break; sleep 0.1; done
    dial=unix:$work/agent.sock
else
    image=$(bash cross/build-image.sh qemu-virt | tail -n 1)
    echo "== DPU image: $image/dpu-image-qemu-virt.tar, $(stat -c %s "$image/dpu-image-qemu-virt.tar") bytes"
    echo "   agent $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["agent_version"], "protocol", m["protocol"], "kernel", m["kernel"]["release"])' "$image/manifest.json")"
    echo "== booting it: qemu-system-aarch64 -M virt -cpu cortex-a57 (TCG), hardware = ivshmem BAR over $work/dpu/board.mem"
    bash qemu-tests/dpu-vm.sh "$image" "$work/dpu"
    hwfile=$work/dpu/board.mem
    agentlog=$work/dpu/console.log
    dial=unix:$work/dpu/serial.sock
fi
echo "== host-bridge: mirroring this machine's network namespace over $dial"
target/debug/host-bridge run --agent "$dial" --status "$work/status.sock" 2>"$work/host-bridge.log" &
pids+=($!)
for _ in $(seq 600); do grep -q "snapshot 1:" "$work/host-bridge.log" 2>/dev/null && break; sleep 0.1; done
target/debug/host-bridge status --status "$work/status.sock" | head -n 3
echo "== the kernel's IPv4 routes (ip -j route show table all | count): $(ip -j route show table all | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')"
show "."

if [ $live = 1 ]; then
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
echo "-- host-bridge"; cat "$work/host-bridge.log"
echo "-- the DPU (its console)"; cat "$agentlog"
