#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh): the kernel's route offload flags
# follow the DPU's real answers, through the FIB firmware host-bridge
# attaches to a netdevsim device (netdevsim's nsim_fib_ops, patch 4).
#
#   fib-offload.sh [ROUTES]
#
# ip route add -> FIB notifier -> netdevsim -> route_event (BPF) -> ring
# buffer -> host-bridge; netlink -> host-bridge -> agent (qemu-virt: 1,024
# IPv4 routes) -> results -> set_flags (BPF syscall program) ->
# bpf_nsim_fib_hw_flags_set -> rt_offload / rt_offload_failed in ip route.
# ROUTES (default 1,200) is more than the DPU holds. Every check compares
# ip -j route with the DPU hardware table read by dpu-hw. Expects
# target/debug/{dpu-agent,host-bridge,dpu-hw} built on the host.
set -uo pipefail
bin=$PWD/target/debug
n=${1:-1200}
work=$(mktemp -d)
here=$(dirname "$0")
. "$here/common.sh"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

dev=30
new_dev $dev
ip addr add 192.0.2.1/24 dev $p0
ip -6 addr add 2001:db8:1::1/64 dev $p0 nodad

# Without firmware, netdevsim flags every route trap itself.
ip route add 203.0.113.0/24 via 192.0.2.2
for _ in $(seq 50); do ip route show 203.0.113.0/24 | grep -q rt_trap && break; sleep 0.1; done
check "no firmware: netdevsim flags the route trap" bash -c "ip route show 203.0.113.0/24 | grep -q rt_trap"

$bin/dpu-agent --listen unix:$work/agent.sock --hw $work/hw >/dev/null 2>$work/agent.log &
for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
status() { $bin/host-bridge status --status $work/status.sock --json 2>/dev/null; }
field() { status | python3 -c "import json,sys; v=json.load(sys.stdin); print($1)" 2>/dev/null; }
$bin/host-bridge run --fib-firmware $dev --agent $work/agent.sock --status $work/status.sock \
	>/dev/null 2>>$work/hb.log &
hb=$!
for _ in $(seq 150); do [ "$(field 'v["dpu"]["snapshots"]')" = 1 ] && break; sleep 0.2; done
grep -E "FIB firmware|snapshot" $work/hb.log | sed 's/^/  /'
check "host-bridge attached the FIB firmware" bash -c "bpftool struct_ops show | grep -q nsim_fib_ops"

# compare [QUIET]: ip -j route (IPv4 and IPv6, every table) and ip -j
# nexthop against the DPU's route, nexthop and group tables. Prints the
# counts; fails unless rt_offload is set on exactly the routes the DPU
# holds, rt_offload_failed only on routes it does not, every test route
# (10.x) carries one of the two, and offload is set on exactly the nexthop
# objects the DPU holds.
compare() {
	ip -j -4 route show table all >$work/r4.json
	ip -j -6 route show table all >$work/r6.json
	ip -j nexthop show >$work/nh.json
	$bin/dpu-hw dump $work/hw >$work/hw.txt
	python3 "$here/fib_compare.py" $work/r4.json $work/r6.json $work/hw.txt $work/nh.json "${1:-}"
}
settled() { # settled SECONDS: waits until compare passes
	local end=$(($(date +%s) + $1))
	while [ "$(date +%s)" -lt $end ]; do
		compare quiet >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	compare
}
check "replayed route: the DPU holds it, rt_offload" settled 30
ip route show 203.0.113.0/24 | sed 's/^/  /'

# More routes than the DPU holds.
t0=$(date +%s%N)
python3 -c "
for i in range($n):
    print(f'route add 10.{i // 256}.{i % 256}.0/24 via 192.0.2.2')
" | ip -batch -
check "$n routes: every flag equals the DPU table" settled 120
echo "  $n routes: final flags after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
compare | sed 's/^/  /'
failed=$(ip route show | grep -c rt_offload_failed)
check "the DPU refused some ($failed): flagged rt_offload_failed" test "$failed" -gt 0
field 'v["fib_firmware"]' | sed 's/^/  fib_firmware: /'

# IPv6: held, flagged.
ip -6 route add 2001:db8:2::/64 via 2001:db8:1::2
check "IPv6 route: rt_offload once the DPU holds it" settled 30
ip -6 route show 2001:db8:2::/64 | sed 's/^/  /'

# Room frees: refused routes flip to rt_offload, and with
# fib_notify_on_flag_change every change is announced.
sysctl -qw net.ipv4.fib_notify_on_flag_change=1
ip -o monitor route >$work/mon.txt 2>&1 &
mon=$!
sleep 0.5
ip route show | grep rt_offload_failed | awk '{print $1}' | sort >$work/failed-before.txt
python3 -c "
for i in range(200):
    print(f'route del 10.{i // 256}.{i % 256}.0/24')
" | ip -batch -
check "200 deletes: every flag equals the DPU table again" settled 60
ip route show | grep rt_offload_failed | awk '{print $1}' | sort >$work/failed-after.txt
flipped=$(comm -23 $work/failed-before.txt $work/failed-after.txt | grep -c . || true)
check "refused routes flipped to rt_offload ($flipped)" test "$flipped" -ge 150
sleep 1
kill $mon 2>/dev/null
missing=0
for p in $(comm -23 $work/failed-before.txt $work/failed-after.txt | grep -v '^10\.0\.[0-9]*\.0/24$' | head -50); do
	grep -E "^$p .*rt_offload( |$)" $work/mon.txt | grep -vq rt_offload_failed || missing=$((missing + 1))
done
check "ip monitor route announced each flip (missing: $missing)" test "$missing" = 0
sysctl -qw net.ipv4.fib_notify_on_flag_change=0

# Nexthop objects (patch 8's nexthop_event): more than the DPU holds
# (qemu-virt: 256 nexthops, 64 groups). ip nexthop shows offload on exactly
# those it holds; a refused one has no flag (nexthops have no failed flag).
python3 -c "
for i in range(300):
    print(f'nexthop add id {1000 + i} via 192.0.2.{2 + i % 200} dev $p0')
print('nexthop add id 2000 group 1000/1001')
" | ip -batch -
check "300 nexthop objects: offload flags equal the DPU table" settled 60
compare | sed 's/^/  /'
nh_none() { ip -j nexthop show | python3 -c 'import json,sys; print(sum("offload" not in n.get("flags", []) for n in json.load(sys.stdin)))'; }
refused=$(nh_none)
check "the DPU refused some nexthops ($refused): no offload flag" test "$refused" -gt 0
python3 -c "
for i in range(2, 62):
    print(f'nexthop del id {1000 + i}')
" | ip -batch -
check "60 nexthop deletes: flags equal the DPU table again" settled 60
left=$(nh_none)
check "refused nexthops flipped to offload (unflagged: $refused -> $left)" test "$left" -lt "$refused"
check "a nexthop group the DPU holds: offload" bash -c "ip nexthop show id 2000 | grep -qw offload"
ip nexthop show id 2000 | sed 's/^/  /'

# host-bridge gone: netdevsim flags routes trap again.
kill $hb
wait $hb 2>/dev/null
for _ in $(seq 50); do ip route show 203.0.113.0/24 | grep -q rt_trap && break; sleep 0.2; done
check "host-bridge stopped: netdevsim flags routes trap again" bash -c "ip route show 203.0.113.0/24 | grep -q rt_trap"
check "and nexthops" bash -c "ip nexthop show id 2000 | grep -qw trap"

echo "fib-offload: $pass passed, $fail failed"
[ "$fail" = 0 ]
