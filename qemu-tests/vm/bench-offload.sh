#!/usr/bin/env bash
# Runs inside the test VM (qemu-tests/bench-offload.sh): figures for the
# kernel hearing the DPU's answers. Not a test.
#
#   bench-offload.sh N_ROUTES N_BASELINE N_RULES
#
#  1. route add -> rt_offload in the kernel, per route, p50 and p99, from
#     `ip -ts monitor route` (fib_notify_on_flag_change=1): the add's
#     notification and the flag's;
#  2. N_ROUTES routes at once: the kernel's install time, and the time
#     until every one carries rt_offload; against netdevsim's own fib.c
#     (no firmware, 1 ms per route, rt_trap) with N_BASELINE routes;
#  3. N_RULES tc flower skip_sw rules, one tc -batch: rules/s and time per
#     rule with --tc-answer dpu (tc waits for the DPU) and now.
# Expects target/release/{host-bridge,dpu-hw} and the dpu-1m agent in
# target/boards/dpu-1m/release/dpu-agent.
set -uo pipefail
nr=${1:-100000}
nb=${2:-20000}
nt=${3:-1000}
bin=$PWD/target/release
agent_bin=$PWD/target/boards/dpu-1m/release/dpu-agent
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

new_dev() { # new_dev ID: sets p0
	echo "$1 1" >/sys/bus/netdevsim/new_device
	for _ in $(seq 50); do
		[ -n "$(ls /sys/bus/netdevsim/devices/netdevsim$1/net 2>/dev/null)" ] && break
		sleep 0.1
	done
	p0=$(ls /sys/bus/netdevsim/devices/netdevsim$1/net)
	ip link set "$p0" up
	ethtool -K "$p0" hw-tc-offload on
	tc qdisc add dev "$p0" clsact
	ip addr add 192.0.2.1/24 dev "$p0"
}
routes() { # routes N VERB: an ip -batch of N /32 routes in 10.0.0.0/8
	python3 -c "
import sys
n, verb = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    print(f'route {verb} 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32 via 192.0.2.2')
" "$1" "$2"
}
# flagged FLAG N TIMEOUT_S: waits until N routes in 10.0.0.0/8 carry FLAG
# in a dump of the main table (the monitor's log of 100,000 changes is too
# slow to count under TCG); the deadline is wall time. Prints how many do.
flagged() {
	local end=$(( $(date +%s) + $3 )) got=0
	while [ "$(date +%s)" -lt $end ]; do
		got=$(ip route show root 10.0.0.0/8 | grep -cw "$1")
		[ "$got" -ge "$2" ] && break
		sleep 1
	done
	echo "$got"
}
start_agent() {
	rm -f $work/agent.sock
	$agent_bin --listen unix:$work/agent.sock --hw $work/hw --cold >/dev/null 2>>$work/agent.log &
	agent=$!
	for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
}
start_hb() { # start_hb ARGS...
	$bin/host-bridge run --agent $work/agent.sock --status $work/status.sock "$@" >/dev/null 2>>$work/hb.log &
	hb=$!
	for _ in $(seq 300); do
		$bin/host-bridge status --status $work/status.sock --json 2>/dev/null |
			python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["dpu"]["snapshots"] < 1)' 2>/dev/null && return 0
		sleep 0.2
	done
	echo "host-bridge did not connect" >&2
	return 1
}
stop_hb() {
	kill $hb
	wait $hb 2>/dev/null || true # SIGTERM's status, not a failure
}

sysctl -qw net.ipv4.fib_notify_on_flag_change=1
dev=40
new_dev $dev

# ---- 1 and 2 with the FIB firmware ----------------------------------------------
start_agent
start_hb --fib-firmware $dev --taps off
ip -ts -o monitor route >$work/mon1.txt 2>&1 &
mon=$!
sleep 1
# One route at a time: 200 adds, 20 ms apart.
for i in $(seq 200); do
	ip route add 10.200.$((i >> 8)).$((i & 255))/32 via 192.0.2.2
	sleep 0.02
done
sleep 2
kill $mon
python3 - $work/mon1.txt <<'EOF'
import re, sys
from datetime import datetime
added, lat = {}, []
for line in open(sys.argv[1]):
    m = re.match(r"\[(\S+)\] (10\.200\.\S+) ", line)
    if not m:
        continue
    t = datetime.fromisoformat(m[1]).timestamp()
    if "rt_offload" in line:
        if m[2] in added:
            lat.append((t - added.pop(m[2])) * 1000)
    else:
        added.setdefault(m[2], t)
lat.sort()
if not lat:
    sys.exit("no flag changes seen")
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print(f"route add -> rt_offload ({len(lat)} routes, one at a time): p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {lat[-1]:.1f} ms")
EOF
ip route flush root 10.200.0.0/16

sysctl -qw net.ipv4.fib_notify_on_flag_change=0
t0=$(now_ms)
routes $nr add | ip -batch -
t1=$(now_ms)
got=$(flagged rt_offload $nr 600)
t2=$(now_ms)
echo "$nr routes with the FIB firmware: kernel install $((t1 - t0)) ms; $got rt_offload after $((t2 - t0)) ms ($(( got * 1000 / (t2 - t0 + 1) )) routes/s)"
$bin/host-bridge status --status $work/status.sock --json | python3 -c 'import json,sys; print("  fib_firmware:", json.load(sys.stdin)["fib_firmware"])'
routes $nr del | ip -batch -
stop_hb

# ---- netdevsim's own fib.c: 1 ms per route, rt_trap ---------------------------------
t0=$(now_ms)
routes $nb add | ip -batch -
t1=$(now_ms)
got=$(flagged rt_trap $nb 600)
t2=$(now_ms)
echo "$nb routes with netdevsim's own fib.c: kernel install $((t1 - t0)) ms; $got rt_trap after $((t2 - t0)) ms ($(( got * 1000 / (t2 - t0 + 1) )) routes/s)"
routes $nb del | ip -batch -

# ---- 3. tc: the DPU's answer, or at once ----------------------------------------------
rules() { # rules N VERB
	python3 -c "
import sys
n, verb = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    if verb == 'add':
        print(f'filter add dev $p0 ingress protocol ip prio {i + 1} flower skip_sw dst_ip 198.18.{i >> 8}.{i & 255} action drop')
    else:
        print(f'filter del dev $p0 ingress prio {i + 1}')
" "$1" "$2"
}
for mode in dpu now; do
	start_hb --firmware $dev --tc-answer $mode --taps off
	rules $nt add >$work/rules.txt
	t0=$(now_ms)
	tc -batch $work/rules.txt
	t1=$(now_ms)
	for _ in $(seq 600); do
		[ "$($bin/dpu-hw dump $work/hw | grep -c '^flow\[')" -ge "$nt" ] && break
		sleep 0.2
	done
	t2=$(now_ms)
	echo "tc --tc-answer $mode: $nt skip_sw rules in $((t1 - t0)) ms ($(( nt * 1000 / (t1 - t0 + 1) )) rules/s, $(( (t1 - t0) * 1000 / nt )) us per rule); the DPU holds all after $((t2 - t0)) ms"
	rules $nt del | tc -batch -
	stop_hb
done
exit 0
