#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh): the whole offload loop on a
# netdevsim device with the BPF firmware attached by host-bridge.
#
#   netdevsim-firmware.sh BAD_OBJECT
#
# tc flower skip_sw rule -> netdevsim -> firmware (struct_ops) -> ring
# buffer -> host-bridge -> agent -> DPU hardware model; packets injected
# into the model -> agent stats -> host-bridge -> firmware counters map ->
# tc -s. BAD_OBJECT is a firmware the verifier refuses. Expects
# target/debug/{dpu-agent,host-bridge,dpu-hw} built on the host.
set -uo pipefail
bin=$PWD/target/debug
bad_obj=${1:?usage: netdevsim-firmware.sh BAD_OBJECT}
work=$(mktemp -d)
. "$(dirname "$0")/common.sh"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

dev=20
new_dev $dev

# A firmware the verifier refuses: host-bridge says so and exits.
out=$(HOST_BRIDGE_FIRMWARE=$bad_obj timeout 60 $bin/host-bridge run --firmware $dev \
	--agent $work/none.sock --status $work/bad.sock 2>&1)
rc=$?
echo "$out" | grep -E "host-bridge: firmware|only read|R1" | head -3 | sed 's/^/  /'
check "refused firmware: host-bridge exits with an error" test "$rc" != 0
check "refused firmware: the verifier's reason is shown" grep -q "only read is supported" <<<"$out"

start_agent() {
	$bin/dpu-agent --listen unix:$work/agent.sock --hw $work/hw --stats-interval 500 >/dev/null 2>>$work/agent.log &
	agent=$!
	for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
}
start_agent
status() { $bin/host-bridge status --status $work/status.sock --json 2>/dev/null; }
cap() { status | python3 -c 'import json,sys; f=json.load(sys.stdin)["firmware"]; print(f["capacity"] if f else "")' 2>/dev/null; }
start_hb() { # start_hb [ARGS...]: host-bridge with the firmware; waits for its capacity
	$bin/host-bridge run --firmware $dev --agent $work/agent.sock --status $work/status.sock "$@" \
		>/dev/null 2>>$work/hb.log &
	hb=$!
	for _ in $(seq 100); do [ -n "$(cap)" ] && [ "$(cap)" != None ] && break; sleep 0.2; done
}
start_hb
capacity=$(cap)
echo "  DPU flow capacity published to the firmware: $capacity"

bpftool struct_ops show | sed 's/^/  /'
check "bpftool struct_ops shows the firmware" bash -c "bpftool struct_ops show | grep -q 'nsim_flow_ops'"

out=$(tc filter add dev $p0 ingress protocol ip prio 1 flower skip_sw dst_ip 192.0.2.1 ip_proto udp action drop 2>&1)
check "skip_sw drop rule accepted: $out" test -z "$out"
check "rule is in_hw" bash -c "tc -j filter show dev $p0 ingress | grep -q '\"in_hw\":true'"
hw_has() { # hw_has PATTERN: the DPU hardware holds a flow line matching it, within 10 s
	for _ in $(seq 50); do
		$bin/dpu-hw dump $work/hw | grep '^flow\[' | grep -q -- "$1" && return 0
		sleep 0.2
	done
	return 1
}
check "the DPU hardware holds the rule" hw_has "dev $p0 chain 0 prio 1 actions drop"
$bin/dpu-hw dump $work/hw | grep '^flow\[' | sed 's/^/  /'

$bin/dpu-hw inject $work/hw --in $if0 --dst 192.0.2.1 --proto 17 --len 100 --count 5 | tail -n 1 | sed 's/^/  /'
t0=$(date +%s%N) # the hardware has counted them
hw_stats() { # the first action's hardware packets and bytes, from tc -s -j
	tc -s -j filter show dev $p0 ingress | python3 -c '
import json, sys
for f in json.load(sys.stdin):
    o = f.get("options", {})
    for a in o.get("actions", []):
        s = a.get("stats", {})
        if "hw_packets" in s or "packets" in s:
            print(s.get("hw_packets", s.get("packets")), s.get("hw_bytes", s.get("bytes")))
            sys.exit()
'
}
# Poll with plain tc and grep: a python start per poll costs more than the
# stats interval under TCG, and would be measured with it.
for _ in $(seq 200); do
	tc -s filter show dev $p0 ingress | grep -q "Sent hardware 500 bytes 5 pkt" && break
	sleep 0.05
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
got=$(hw_stats)
tc -s filter show dev $p0 ingress | grep -E "Sent|used_hw" | sed 's/^/  /'
check "5 packets / 500 bytes counted by the DPU show in tc -s (after $ms ms; stats interval 500 ms)" \
	test "$got" = "5 500"
# The agent reports every 500 ms and host-bridge writes the map when the
# frame arrives, so one interval; the rest is this loop's polling with tc,
# itself slow under TCG (200-700 ms measured alone; 1.7 s with another VM
# running beside this one). A figure, not a check: timing belongs in the
# benchmarks, and a loaded CI host must not fail a correct run.
echo "  figure: counters reached tc -s $ms ms after the traffic (stats interval 500 ms)"

tc filter del dev $p0 ingress prio 1
gone() { for _ in $(seq 50); do $bin/dpu-hw dump $work/hw | grep -q '^flow\[' || return 0; sleep 0.2; done; return 1; }
check "deleting the rule removes it from the hardware" gone

# hw-tc-offload turned off with a rule offloaded (netdevsim allows it): the
# rule's delete still reaches the firmware and the DPU.
tc filter add dev $p0 ingress protocol ip prio 4 flower skip_sw dst_ip 192.0.2.4 action drop
check "rule for the hw-tc-offload case on the DPU" hw_has "dev $p0 chain 0 prio 4 actions drop"
ethtool -K $p0 hw-tc-offload off
tc filter del dev $p0 ingress prio 4
check "hw-tc-offload off, then tc filter del: the DPU drops the rule" gone
ethtool -K $p0 hw-tc-offload on

# A rule on a tc block shared by both ports: one flow per port on the DPU.
for p in $p0 $p1; do
	tc qdisc del dev $p clsact
	tc qdisc add dev $p ingress_block 7 clsact
done
tc filter add block 7 protocol ip prio 5 flower skip_sw dst_ip 192.0.2.5 action drop
tc filter show block 7 | grep -E "in_hw" | sed 's/^/  /'
check "shared block: the rule is in_hw on both ports" bash -c "tc filter show block 7 | grep -q 'in_hw_count 2'"
check "shared block: the DPU holds it on $p0" hw_has "dev $p0 chain 0 prio 5 actions drop"
check "shared block: ... and on $p1" hw_has "dev $p1 chain 0 prio 5 actions drop"
$bin/dpu-hw inject $work/hw --in $(cat /sys/class/net/$p1/ifindex) --dst 192.0.2.5 --proto 17 --len 100 --count 2 >/dev/null
$bin/dpu-hw inject $work/hw --in $if0 --dst 192.0.2.5 --proto 17 --len 100 --count 1 >/dev/null
for _ in $(seq 40); do
	tc -s filter show block 7 | grep -q "Sent hardware 300 bytes 3 pkt" && break
	sleep 0.05
done
check "shared block: tc -s sums both ports' hardware counters" \
	bash -c "tc -s filter show block 7 | grep -q 'Sent hardware 300 bytes 3 pkt'"
tc filter del block 7 prio 5
check "shared block: deleting the rule removes both flows" gone
for p in $p0 $p1; do
	tc qdisc del dev $p clsact
	tc qdisc add dev $p clsact
done

# ---- host-bridge restarts with a pinned firmware ----------------------------
# Unpinned, the firmware goes with host-bridge; pinned, it stays attached
# while host-bridge is down and the next one adopts it with its flows.
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
pin=/sys/fs/bpf/dpu-test
kill $hb; wait $hb 2>/dev/null
check "unpinned: the firmware detaches when host-bridge exits" \
	bash -c "! bpftool struct_ops show | grep -q nsim_flow_ops"
start_hb --firmware-pin $pin
tc filter add dev $p0 ingress protocol ip prio 2 flower skip_sw dst_ip 192.0.2.2 action drop
check "pinned firmware: rule A reaches the hardware" hw_has "dev $p0 chain 0 prio 2 actions drop"
kill -9 $hb; wait $hb 2>/dev/null
check "host-bridge killed: the pinned firmware stays attached" \
	bash -c "bpftool struct_ops show | grep -q nsim_flow_ops"
# The firmware leaves tc waiting for the DPU's answer while host-bridge's
# heartbeat is under 2 s old; then it answers at once, as without host-bridge.
sleep 2.5
out=$(tc filter add dev $p0 ingress protocol ip prio 3 flower skip_sw dst_ip 192.0.2.3 action drop 2>&1)
check "rule B added while host-bridge is down is accepted: $out" \
	bash -c "[ -z '$out' ] && tc -j filter show dev $p0 ingress | grep -q '\"in_hw\":true'"
start_hb --firmware-pin $pin
grep -E "adopted" $work/hb.log | sed 's/^/  /'
check "the restarted host-bridge adopts the pinned firmware" grep -q "adopted from $pin" $work/hb.log
check "after the restart the hardware holds A" hw_has "dev $p0 chain 0 prio 2 actions drop"
check "... and B, added while it was down" hw_has "dev $p0 chain 0 prio 3 actions drop"
$bin/dpu-hw inject $work/hw --in $if0 --dst 192.0.2.3 --proto 17 --len 100 --count 3 >/dev/null
for _ in $(seq 40); do
	tc -s filter show dev $p0 ingress | grep -q "Sent hardware 300 bytes 3 pkt" && break
	sleep 0.05
done
check "B's counters reach tc -s through the adopted firmware" \
	bash -c "tc -s filter show dev $p0 ingress | grep -q 'Sent hardware 300 bytes 3 pkt'"
tc filter del dev $p0 ingress prio 2
tc filter del dev $p0 ingress prio 3
check "deleting A and B removes them from the hardware" gone

# Fill the DPU's flow table: the next skip_sw rule fails with ENOSPC.
n=0
err=
for i in $(seq 1 $((capacity + 1))); do
	err=$(tc filter add dev $p1 ingress protocol ip prio $((i + 10)) flower skip_sw \
		dst_ip 198.51.100.$((i % 250 + 1)) ip_proto tcp dst_port $((1000 + i)) action drop 2>&1) || break
	n=$((n + 1))
done
echo "  $n rules accepted; then: $err"
check "a full DPU flow table refuses skip_sw with ENOSPC" \
	bash -c "[ $n = $capacity ] && grep -q 'No space left on device' <<<'$err'"
check "the DPU hardware holds all $capacity" \
	bash -c "for _ in \$(seq 50); do [ \$($bin/dpu-hw dump $work/hw | grep -c '^flow\[') = $capacity ] && exit 0; sleep 0.2; done; exit 1"
tc filter del dev $p1 ingress prio 11
out=$(tc filter add dev $p1 ingress protocol ip prio 9 flower skip_sw dst_ip 203.0.113.9 action drop 2>&1)
check "a delete makes room again: $out" test -z "$out"

# The DPU unreachable (its agent gone): tc waits for the DPU's answer, and
# without one the rule is refused, not shown in_hw (--tc-answer dpu, the
# default). With --tc-answer now it would be in_hw at once.
# Room for the rule first: the table is full again, and a full table is
# refused by the firmware at once (ENOSPC), before any wait.
tc filter del dev $p1 ingress prio 9
for _ in $(seq 50); do [ "$($bin/dpu-hw dump $work/hw | grep -c '^flow\[')" -lt "$capacity" ] && break; sleep 0.2; done
kill $agent; wait $agent 2>/dev/null
rm -f $work/agent.sock
t0=$(date +%s%N)
out=$(tc filter add dev $p0 ingress protocol ip prio 30 flower skip_sw dst_ip 192.0.2.30 action drop 2>&1)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "  $out (after $ms ms)"
check "DPU unreachable: the skip_sw rule is refused after the 2 s wait" \
	bash -c "grep -q 'no answer from the flow offload firmware in time' <<<'$out' && [ $ms -ge 1900 ]"
check "... and tc holds no such rule" bash -c "! tc filter show dev $p0 ingress | grep -q 192.0.2.30"
start_agent

# Device deletion with the firmware attached and rules in place.
echo $dev >/sys/bus/netdevsim/del_device
sleep 1
check "host-bridge survives the device's removal" kill -0 $hb
status | python3 -c 'import json,sys; print("  firmware:", json.load(sys.stdin)["firmware"])'
kill $hb; wait $hb 2>/dev/null
# The pinned firmware is idle now (its device is gone). A new device with
# the same id: host-bridge attaches a new firmware and replaces the pin.
new_dev $dev
start_hb --firmware-pin $pin
check "a new device under a stale pin gets a new firmware" grep -q "was stale: replaced" $work/hb.log
out=$(tc filter add dev $p0 ingress protocol ip prio 1 flower skip_sw dst_ip 192.0.2.1 action drop 2>&1)
check "... which offloads: $out" test -z "$out"
kill $hb; wait $hb 2>/dev/null
echo $dev >/sys/bus/netdevsim/del_device
$bin/host-bridge detach-firmware --firmware-pin $pin | sed 's/^/  /'
check "detach-firmware unpins: no struct_ops left" \
	bash -c "for _ in \$(seq 20); do bpftool struct_ops show | grep -q nsim_flow_ops || exit 0; sleep 0.2; done; exit 1"

grep -E "firmware|refused" $work/hb.log | head -5 | sed 's/^/  /'
echo "netdevsim-firmware: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
