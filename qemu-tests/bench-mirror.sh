#!/usr/bin/env bash
# Benchmark of the mirror at scale (not a test, not in CI): in a fresh
# netns, 1,000,000 IPv4 routes through nexthop objects plus 200,000 IPv6
# routes installed with `ip -batch`, while host-bridge mirrors them into the
# agent built for the dpu-1m board. Prints the kernel's install time, the
# time until the DPU hardware holds every route and their ratio,
# host-bridge and agent peak RSS, bytes per route, wire bytes per route and
# events per second.
#
#   bash qemu-tests/bench-mirror.sh [V4_ROUTES] [V6_ROUTES] [native|qemu|vm|floor]
#
# native: the agent on this machine; qemu: the aarch64 agent under
# qemu-aarch64-static; vm: the dpu-1m DPU image booted in
# qemu-system-aarch64 (TCG, 1 vCPU, 1 GiB), host-bridge over its
# virtio-serial port, the hardware read from the board's memory.
# floor: no mirror at all, only host-bridge's netlink listener throwing
# the events away (examples/netlink_floor.rs): the kernel's share of
# host-bridge's CPU per route, which no change to its code can save.
set -euo pipefail
n4=${1:-1000000}
n6=${2:-200000}
mode=${3:-native}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh >/dev/null
echo "building (release, dpu-1m board)..." >&2
DPU_BOARD=dpu-1m CARGO_TARGET_DIR=target/boards/dpu-1m cargo build --quiet --release -p dpu-agent --bins
cargo build --quiet --release -p host-bridge -p dpu-hw --bins
if [ "$mode" = qemu ]; then agent=(qemu-aarch64-static "$(bash cross/build-agent.sh dpu-1m)"); else agent=(target/boards/dpu-1m/release/dpu-agent); fi
[ "$mode" = vm ] && image=$(bash cross/build-image.sh dpu-1m | tail -n 1)
ns=hb-bench-$$
work=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    [ -f "$work/dpu/qemu.pid" ] && kill "$(cat "$work/dpu/qemu.pid")" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add v0 type veth peer name v1
ip -n "$ns" link set v0 up; ip -n "$ns" link set v1 up
ip -n "$ns" addr add 192.0.2.1/24 dev v0
ip -n "$ns" -6 addr add 2001:db8::1/64 dev v0 nodad
for i in $(seq 1 16); do
    ip -n "$ns" nexthop add id "$i" via "192.0.2.$((100 + i))" dev v0
    ip -n "$ns" nexthop add id "$((100 + i))" via "2001:db8::$((100 + i))" dev v0
done
python3 - "$n4" "$n6" > "$work/batch" <<'PY'
import sys
n4, n6 = int(sys.argv[1]), int(sys.argv[2])
w = sys.stdout.write
for i in range(n4):
    w(f"route add {1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 nhid {1 + i % 16}\n")
for i in range(n6):
    w(f"route add 2001:db8:{(i >> 16) + 1:x}:{i & 0xffff:x}::/64 nhid {101 + i % 16}\n")
PY
# CPU time (user + system, clock ticks) of a process, from /proc.
cpu() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# The install, and the installer's own CPU (user + system) into
# $work/ip-cpu: where the kernel runs the event filter of host-bridge's
# event ring (netlink::ring), and queues the socket's skbs without it.
install() {
    local TIMEFORMAT='%U %S'
    { time ip -n "$ns" -batch "$work/batch" 2>&3; } 3>&2 2> "$work/ip-cpu"
}
ipcpu() { awk '{print $1 + $2}' "$work/ip-cpu"; }
if [ "$mode" = floor ]; then
    cargo build --quiet --release -p host-bridge --example netlink_floor
    ip netns exec "$ns" target/release/examples/netlink_floor $((256 << 20)) &
    fpid=$!; pids+=($fpid)
    sleep 0.5
    f0=$(cpu "$fpid"); t0=$(date +%s.%N)
    install
    t1=$(date +%s.%N)
    # Until the listener has drained its queue: its CPU stops rising.
    f1=$(cpu "$fpid")
    while sleep 0.5; do
        f=$(cpu "$fpid"); [ "$f" = "$f1" ] && break; f1=$f
    done
    python3 -c "
n = $n4 + $n6; c = ($f1 - $f0) / $hz
print(f'routes                  {$n4} IPv4 + {$n6} IPv6 (netlink listener only)')
print(f'kernel install          {$t1 - $t0:8.2f} s  ({n / ($t1 - $t0):,.0f} routes/s)')
print(f'netlink floor CPU       {c:8.2f} s, {c * 1e6 / n:.2f} us/route (receiving the events, nothing else)')
print(f'installer CPU           {$(ipcpu):8.2f} s, {$(ipcpu) * 1e6 / n:.2f} us/route (ip -batch, user + system)')
"
    exit 0
fi
if [ "$mode" = vm ]; then
    bash qemu-tests/dpu-vm.sh --memory 1G --timeout 120 --append dpu.agent_args=--stats-interval,0 "$image" "$work/dpu" >&2
    apid=$(cat "$work/dpu/qemu.pid")
    hwfile=$work/dpu/board.mem
    dial=unix:$work/dpu/serial.sock
else
    "${agent[@]}" --listen "unix:$work/agent.sock" --hw "$work/hw" --stats-interval 0 2>"$work/agent.log" &
    apid=$!; pids+=($apid)
    for _ in $(seq 200); do [ -S "$work/agent.sock" ] && break; sleep 0.05; done
    hwfile=$work/hw
    dial=unix:$work/agent.sock
fi
target/release/host-bridge run --netns "$ns" --agent "$dial" --status "$work/status.sock" --rcvbuf $((256 << 20)) --metrics 127.0.0.1:0 2>"$work/hb.log" &
hpid=$!; pids+=($hpid)
for _ in $(seq 1200); do grep -q "snapshot 1:" "$work/hb.log" 2>/dev/null && break; sleep 0.05; done
base4=$(target/release/dpu-hw usage "$hwfile" | awk '$1=="route4"{print $2}')
base6=$(target/release/dpu-hw usage "$hwfile" | awk '$1=="route6"{print $2}')
rss_idle=$(awk '/VmRSS/{print $2}' /proc/$hpid/status)
# Per thread of a process: tid, name, CPU ticks, context switches.
threads() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s %s\n' "${t##*/}" "$(tr ' ' _ < "$t/comm")" \
            "$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "$t/stat")" \
            "$(awk '/ctxt_switches/{s += $2} END{print s}' "$t/status")"
    done
}
hcpu0=$(cpu "$hpid"); acpu0=$(cpu "$apid")
threads "$hpid" > "$work/threads0"
echo "installing $n4 IPv4 + $n6 IPv6 routes with ip -batch..." >&2
# HB_PERF=FILE: profile host-bridge during the install (perf record, flat;
# HB_PERF_OPTS adds options, e.g. "--call-graph dwarf").
if [ -n "${HB_PERF:-}" ]; then
    # shellcheck disable=SC2086
    perf record -q -F 999 ${HB_PERF_OPTS:-} -p "$hpid" -o "$HB_PERF" 2>/dev/null &
    perfpid=$!
fi
t0=$(date +%s.%N)
install
t1=$(date +%s.%N)
while :; do
    read -r u4 u6 < <(target/release/dpu-hw usage "$hwfile" | awk '$1=="route4"{a=$2} $1=="route6"{b=$2} END{print a, b}')
    [ "$u4" -ge $((base4 + n4)) ] && [ "$u6" -ge $((base6 + n6)) ] && break
    sleep 0.05
done
t2=$(date +%s.%N)
hcpu1=$(cpu "$hpid"); acpu1=$(cpu "$apid")
threads "$hpid" > "$work/threads1"
if [ -n "${HB_PERF:-}" ]; then kill -INT "$perfpid"; wait "$perfpid" || true; fi
sleep 0.5
hb_hwm=$(awk '/VmHWM/{print $2}' /proc/$hpid/status)
ag_hwm=$(awk '/VmHWM/{print $2}' /proc/$apid/status)
status=$(target/release/host-bridge status --json --status "$work/status.sock")
echo "$status" | python3 -c "
import json, sys
t0, t1, t2 = $t0, $t1, $t2; n4, n6 = $n4, $n6; n = n4 + n6
idle, hb, ag = $rss_idle, $hb_hwm, $ag_hwm
s = json.load(sys.stdin)
c = s['host_bridge']['counters']; d = s['dpu']
print(f'routes                  {n4} IPv4 + {n6} IPv6 (agent: $mode, board dpu-1m)')
print(f'kernel install          {t1 - t0:8.2f} s  ({n / (t1 - t0):,.0f} routes/s)')
print(f'DPU holds all           {t2 - t0:8.2f} s  after the batch started')
print(f'ratio                   {(t2 - t0) / (t1 - t0):8.2f}  (target <= 1.2)')
print(f'host-bridge peak RSS    {hb / 1024:8.1f} MiB, {(hb - idle) * 1024 / n:.0f} bytes/route above idle (target <= 200)')
print(f'agent peak RSS          {ag / 1024:8.1f} MiB' + (' (the DPU VM: QEMU with 1 GiB of guest RAM)' if '$mode' == 'vm' else ''))
print(f'wire bytes/route        {d[\"wire_bytes\"] / n:8.2f}  (all frames; target <= 24 per IPv4 update)')
hc, ac = ($hcpu1 - $hcpu0) / $hz, ($acpu1 - $acpu0) / $hz
print(f'host-bridge CPU         {hc:8.2f} s, {hc * 1e6 / n:.2f} us/route (user + system, /proc; target <= 2)')
print(f'installer CPU           {$(ipcpu):8.2f} s, {$(ipcpu) * 1e6 / n:.2f} us/route (ip -batch, user + system)')
print(f'agent CPU               {ac:8.2f} s, {ac * 1e6 / n:.2f} us/route' + (' (the whole DPU VM: QEMU under TCG)' if '$mode' == 'vm' else ''))
print(f'events                  {c[\"events\"]} ({c[\"events\"] / (t2 - t0):,.0f}/s), overflows {c[\"overflows\"]}, resyncs {c[\"resyncs\"]}, collapsed {c[\"collapsed\"]}')
"
# Where host-bridge's CPU went, per thread (the netlink reader is the
# main thread, "dpu" sends to the agent).
awk -v hz="$hz" -v n=$((n4 + n6)) 'NR == FNR {c[$1] = $3; x[$1] = $4; next}
    ($3 - c[$1]) > 0 {printf "  thread %-12s %8.2f s, %.2f us/route, %d context switches\n", $2, ($3 - c[$1]) / hz, ($3 - c[$1]) / hz * 1e6 / n, $4 - x[$1]}' \
    "$work/threads0" "$work/threads1"
# The status socket over the whole mirror: how long a full JSON status
# takes, how big it is, and what it does to host-bridge's memory.
t3=$(date +%s.%N)
target/release/host-bridge status --json --status "$work/status.sock" >"$work/status.json"
t4=$(date +%s.%N)
hb_hwm2=$(awk '/VmHWM/{print $2}' /proc/$hpid/status)
echo "status --json           $(echo "$t4 - $t3" | bc | cut -c1-5) s, $(( $(stat -c %s "$work/status.json") >> 20 )) MiB; host-bridge peak RSS after two status calls $((hb_hwm2 >> 10)) MiB"
# A metrics scrape over the whole mirror: its wall time and size, and
# host-bridge's CPU for it.
maddr=$(sed -n 's|.*metrics on http://\([^/]*\)/metrics.*|\1|p' "$work/hb.log" | head -n 1)
c0=$(cpu "$hpid"); t5=$(date +%s.%N)
curl -s "http://$maddr/metrics" >"$work/metrics.txt"
t6=$(date +%s.%N); c1=$(cpu "$hpid")
echo "metrics scrape          $(echo "($t6 - $t5) * 1000" | bc | cut -d. -f1) ms, $(stat -c %s "$work/metrics.txt") bytes, host-bridge CPU $(( (c1 - c0) * 1000 / hz )) ms"
# Kernel event read to DPU acknowledgement, from the metrics' histogram
# (bucket bounds: the quantile lies at or below the bound printed).
python3 - "$work/metrics.txt" <<'PY'
import sys
b = []
for l in open(sys.argv[1]):
    if l.startswith('host_bridge_event_to_ack_seconds_bucket'):
        le = l.split('le="')[1].split('"')[0]
        b.append((float('inf') if le == '+Inf' else float(le), float(l.split()[-1])))
if b and b[-1][1] > 0:
    n = b[-1][1]
    q = lambda p: next(le for le, c in b if c >= p * n)
    print(f'event to DPU ack        p50 <= {q(0.5) * 1e3:.1f} ms, p99 <= {q(0.99) * 1e3:.1f} ms ({int(n)} changes, histogram buckets)')
PY
