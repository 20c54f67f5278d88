#!/usr/bin/env bash
# Runs inside the test VM for qemu-tests/bench-taps.sh (see there).
set -euo pipefail
n=$1
m=$2
agent=$PWD/target/boards/dpu-1m/release/dpu-agent
bin=$PWD/target/release
work=$(mktemp -d)
ns=bt
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
now() { date +%s.%N; }
ip netns add $ns
x() { ip netns exec $ns sh -ec "$1"; }
x "ip link set lo up
ip link add d1 type veth peer name d1x; ip link set d1 up; ip link set d1x up
ip link add d2 type veth peer name d2x; ip link set d2 up; ip link set d2x up
ip addr add 192.0.2.1/24 dev d1
ip addr add 198.51.100.1/24 dev d2"
python3 - "$n" "$m" "$work" <<'PY'
import sys
n, m, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with open(f"{work}/on-d1", "w") as f:
    for i in range(n):
        f.write(f"route add 10.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32 via 192.0.2.2\n")
with open(f"{work}/on-d2", "w") as f:
    for i in range(m):
        f.write(f"route add 20.{i >> 16}.{(i >> 8) & 255}.{i & 255}/32 via 198.51.100.2\n")
PY
# route4 entries in use, from the hardware.
used() { $bin/dpu-hw usage $work/hw | awk '$1 == "route4" { print $2 }' | cut -d/ -f1; }

# ---- 1. link down: taps against the re-dump --------------------------------
for mode in on off; do
	x "ip link set d1 up; ip addr replace 192.0.2.1/24 dev d1"
	x "ip -force -batch $work/on-d1 2>/dev/null || true"
	x "ip -force -batch $work/on-d2 2>/dev/null || true"
	rm -f $work/hw $work/agent.sock $work/status.sock
	$agent --listen unix:$work/agent.sock --hw $work/hw --stats-interval 0 >/dev/null 2>$work/agent-$mode.log &
	apid=$!
	for _ in $(seq 200); do [ -S $work/agent.sock ] && break; sleep 0.1; done
	$bin/host-bridge run --netns $ns --agent $work/agent.sock --status $work/status.sock --taps $mode \
		>/dev/null 2>$work/hb-$mode.log &
	hpid=$!
	for _ in $(seq 3000); do
		u=$(used 2>/dev/null || echo 0)
		[ "${u:-0}" -ge "$((n + m))" ] && break
		sleep 0.2
	done
	sleep 2
	before=$(used)
	t0=$(now)
	x "ip link set d1 down"
	t1=$(now)
	# The DPU equals the kernel when the n routes on d1 are gone from it.
	target=$((before - n))
	while :; do
		u=$(used)
		[ "$u" -le "$target" ] && break
		sleep 0.05
	done
	t2=$(now)
	redumps=$($bin/host-bridge status --status $work/status.sock --json |
		python3 -c "import json,sys; print(json.load(sys.stdin)['host_bridge']['counters']['redumps'])")
	python3 - "$mode" "$t0" "$t1" "$t2" "$before" "$u" "$redumps" <<'PY'
import sys
mode, t0, t1, t2 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"taps {mode:3}: link down: kernel {t1 - t0:.2f} s, DPU equal after {t2 - t0:.2f} s "
      f"(route4 {sys.argv[5]} -> {sys.argv[6]}; re-dumps {sys.argv[7]})")
open(f"/tmp/bench-taps-{mode}", "w").write(f"{t2 - t0}\n")
PY
	kill $hpid $apid 2>/dev/null || true
	wait $hpid $apid 2>/dev/null || true
	x "ip route flush table main proto boot" || true
done
python3 -c "
on = float(open('/tmp/bench-taps-on').read()); off = float(open('/tmp/bench-taps-off').read())
print(f'link down with $n routes on it ($m more elsewhere): taps {on:.2f} s, re-dump {off:.2f} s: {off / on:.1f}x faster with taps')"

# ---- 2. records per second with no drop, per MiB --------------------------
x "ip link set d1 up; ip addr replace 192.0.2.1/24 dev d1"
for ring in 1M 4M; do
	$bin/host-bridge notifiers --netns $ns --tap-ring $ring --json >/dev/null 2>$work/ntf-$ring.err &
	npid=$!
	for _ in $(seq 100); do grep -q "^tap netevent" $work/ntf-$ring.err 2>/dev/null && break; sleep 0.1; done
	t0=$(now)
	x "ip -force -batch $work/on-d1"
	t1=$(now)
	sleep 2
	kill $npid 2>/dev/null || true
	wait $npid 2>/dev/null || true
	lost=$({ grep -o '[0-9]* records lost' $work/ntf-$ring.err || true; } | awk '{s += $1} END {print s + 0}')
	python3 -c "
n = $n; t = $t1 - $t0; lost = $lost
print(f'ring $ring: {n} route adds in {t:.2f} s = {n / t:,.0f} records/s into the taps, {lost} lost')"
	x "ip route flush dev d1 proto boot" || true
done
python3 -c "print(f'one MiB of ring buffer holds {(1 << 20) // (272 + 8):,} FIB records (272 bytes + 8 of header each)')"

# ---- 3. the kernel's cost: install with the taps attached against none ----
t0=$(now)
x "ip -force -batch $work/on-d1"
t1=$(now)
x "ip route flush dev d1 proto boot" || true
$bin/host-bridge notifiers --netns $ns --json >/dev/null 2>$work/ntf-cost.err &
npid=$!
for _ in $(seq 100); do grep -q "^tap netevent" $work/ntf-cost.err 2>/dev/null && break; sleep 0.1; done
t2=$(now)
x "ip -force -batch $work/on-d1"
t3=$(now)
kill $npid 2>/dev/null || true
python3 -c "
a = $t1 - $t0; b = $t3 - $t2
print(f'install of $n routes: {a:.2f} s without taps, {b:.2f} s with the taps attached (and read): {b / a:.3f}x')"
