#!/usr/bin/env bash
# Runs inside the host VM of the two-VM system test (qemu-tests/system-test.sh):
# the test kernel with netdevsim and the struct_ops series, real ip, bridge
# and tc, and host-bridge with the BPF firmware, talking to the DPU VM's
# agent over virtio-serial (the port named org.dpu.agent.0). The DPU's
# hardware is checked by system-ctl outside both VMs, through the control
# port org.dpu.test.ctl (mirror-check --ctl).
#
#   system.sh first    state made, checked, flows and counters, DPU reboot,
#                      link cut and restore
#   system.sh second   after a host VM reboot: new state, the DPU follows
#   system.sh bench    figures (qemu-tests/vm/system-bench.py), no checks
#   system.sh vsock    over vsock to the DPU VM (CID 4) instead: state made
#                      and checked, then a change
#   system.sh vsock-bench  the figures over vsock
set -uo pipefail
phase=${1:?usage: system.sh first|second|bench|vsock|vsock-bench [BIN_DIR]}
bin=${2:-$PWD/target/debug}
agent="serial:"
case $phase in vsock*) agent=vsock:4:5000 ;; esac
work=$(mktemp -d)
. "$(dirname "$0")/common.sh"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

port_named() {
	for n in /sys/class/virtio-ports/*/name; do
		[ "$(cat "$n" 2>/dev/null)" = "$1" ] && { d=${n%/name}; echo "/dev/${d##*/}"; return 0; }
	done
	return 1
}
link=$(port_named org.dpu.agent.0) || { echo "FAIL: no org.dpu.agent.0 port"; exit 1; }
ctlport=$(port_named org.dpu.test.ctl) || { echo "FAIL: no org.dpu.test.ctl port"; exit 1; }
[ "$agent" = serial: ] && agent=serial:$link
echo "  channel to the DPU: $agent; control: $ctlport"
ctl() { $bin/mirror-check --ctl "$ctlport" "$@"; }
# The init netns, by name, for ip -n / bridge -n.
ip netns attach host 1 2>/dev/null || true
dpu_equals() { ctl CHECK "$1" host | sed 's/^/  /'; }

status() { $bin/host-bridge status --status $work/status.sock --json 2>/dev/null; }
st() { status | python3 -c "import json,sys; d=json.load(sys.stdin)['dpu']; print($1)" 2>/dev/null; }
wait_for() { # wait_for SECONDS PYTHON-EXPR-ON-dpu
	local t=$1 expr=$2
	for _ in $(seq $((t * 5))); do
		[ "$(st "$expr")" = True ] && return 0
		sleep 0.2
	done
	return 1
}

dev=20
new_dev $dev

ip link set lo up
ip link add br0 type bridge vlan_filtering 1
ip link set br0 up
for p in s1 s2; do
	ip link add $p type veth peer name ${p}x
	ip link set $p master br0
	ip link set $p up
	ip link set ${p}x up
done
ip addr add 192.0.2.1/24 dev br0
ip addr add 198.51.100.1/24 dev $p0
if [ "$phase" = bench ] || [ "$phase" = vsock-bench ]; then
	$bin/host-bridge run --agent "$agent" --status $work/status.sock 2>$work/hb.log &
	wait_for 60 "d['connected'] and d['snapshots'] >= 1" || { cat $work/hb.log; exit 1; }
	python3 qemu-tests/vm/system-bench.py "$ctlport" br0 1000 "${agent%%:*}"
	exit
elif [ "$phase" = first ] || [ "$phase" = vsock ]; then
	bridge vlan add vid 10 dev s1 pvid untagged
	bridge vlan add vid 20 dev s2
	bridge fdb add 02:00:00:00:01:01 dev s1 master static vlan 10
	ip neigh add 192.0.2.254 lladdr 02:00:00:00:00:fe dev br0
	ip neigh add 198.51.100.254 lladdr 02:00:00:00:00:fd dev $p0
	ip nexthop add id 10 via 192.0.2.254 dev br0
	ip nexthop add id 11 via 198.51.100.254 dev $p0
	ip nexthop add id 20 group 10/11
	ip route add 10.10.0.0/16 nhid 20
	ip route add 10.20.0.0/16 via 192.0.2.254
	ip route add blackhole 10.30.0.0/16
else
	# After the host VM's reboot: other state; what the first boot left
	# on the DPU must go.
	bridge vlan add vid 30 dev s2
	ip neigh add 192.0.2.253 lladdr 02:00:00:00:00:fc dev br0
	ip route add 10.40.0.0/16 via 192.0.2.253
fi

$bin/host-bridge run --firmware $dev --agent "$agent" --status $work/status.sock \
	2>$work/hb.log &
if wait_for 60 "d['connected'] and d['snapshots'] >= 1"; then
	ok "host-bridge connected to the DPU over $agent: $(grep -m1 'agent connected' $work/hb.log | sed 's/.*agent connected: //')"
else
	bad "host-bridge did not reach the DPU"; cat $work/hb.log
fi
check "$phase boot: the DPU equals the kernel" dpu_equals "$phase-boot"

if [ "$phase" = vsock ]; then
	ip route replace 10.20.0.0/16 via 198.51.100.254
	ip nexthop del id 20
	check "over vsock, after changes: the DPU equals the kernel" dpu_equals "vsock-changes"
	echo "system($phase): $pass passed, $fail failed"
	[ $fail = 0 ]
	exit
fi
if [ "$phase" = second ]; then
	echo "  host-bridge: $(grep -m1 'snapshot 1' $work/hb.log)"
	check "the first boot's routes are gone from the DPU" \
		bash -c "! $bin/mirror-check --ctl $ctlport HW dump REGION | grep -qE '10\.(10|30|60)\.0\.0/16'"
	echo "system($phase): $pass passed, $fail failed"
	[ $fail = 0 ]
	exit
fi

# Changes, each checked.
ip route replace 10.20.0.0/16 via 198.51.100.254
ip nexthop replace id 20 group 10,3/11
ip link add vl30 link br0 type vlan id 30
ip route add 10.50.0.0/24 dev br0
bridge fdb add 02:00:00:00:02:02 dev s2 master static vlan 20
check "after route, group, FDB changes: the DPU equals the kernel" dpu_equals "changes"
ip nexthop del id 20
check "nexthop group deleted (its route silently): the DPU equals the kernel" dpu_equals "nexthop-del"

# tc flower through the firmware; packets injected into the DPU's model
# from outside show in tc -s.
out=$(tc filter add dev $p0 ingress protocol ip prio 1 flower skip_sw dst_ip 192.0.2.99 ip_proto udp action drop 2>&1)
check "skip_sw rule accepted through the firmware: $out" test -z "$out"
check "the rule is in_hw" bash -c "tc -j filter show dev $p0 ingress | grep -q '\"in_hw\":true'"
hw_flow() {
	for _ in $(seq 50); do
		ctl HW dump REGION | grep '^flow\[' | grep -q -- "dev $p0 chain 0 prio 1 actions drop" && return 0
		sleep 0.2
	done
	return 1
}
check "the DPU flow table holds the rule (read outside both VMs)" hw_flow
ctl HW inject REGION --in $if0 --dst 192.0.2.99 --proto 17 --len 100 --count 5 | tail -n 1 | sed 's/^/  /'
pk() { tc -s -j filter show dev $p0 ingress | python3 -c '
import json,sys
for f in json.load(sys.stdin):
    o = f.get("options", {})
    for a in o.get("actions", []):
        s = a.get("stats", {})
        if "hw_packets" in s: print(s["hw_packets"]); sys.exit()
print(0)'; }
got=0
for _ in $(seq 50); do got=$(pk); [ "$got" = 5 ] && break; sleep 0.2; done
check "5 packets injected into the DPU show in tc -s in the host VM (got $got)" test "$got" = 5

# DPU reboot (power cut): the agent starts warm on the board's memory and
# host-bridge's next snapshot rewrites nothing.
snaps=$(st "d['snapshots']")
check "mark the DPU's write registers" ctl MARK
echo "  $(ctl REBOOT_DPU)"
if wait_for 90 "d['connected'] and d['snapshots'] > $snaps"; then
	ok "host-bridge resumed with the rebooted DPU: snapshot $(st "d['last_snapshot']")"
else
	bad "no new session after the DPU reboot"; tail -n 5 $work/hb.log
fi
check "the rebooted DPU's resync wrote no entry" test "$(st "d['last_snapshot']['written'] + d['last_snapshot']['removed']")" = 0
check "no hardware entry written since before the reboot" ctl UNCHANGED
check "after the DPU reboot: the DPU equals the kernel" dpu_equals "dpu-reboot"

# Link cut and restore: a route added while the channel is down reaches
# the DPU once it is back, and nothing unchanged is rewritten.
snaps=$(st "d['snapshots']")
check "mark" ctl MARK
check "cut the channel" ctl CUT
ip route add 10.60.0.0/16 via 192.0.2.254
sleep 3
check "restore the channel" ctl RESTORE
if wait_for 60 "d['connected'] and d['snapshots'] > $snaps"; then
	ok "host-bridge resumed after the cut: snapshot $(st "d['last_snapshot']")"
else
	bad "no new session after the restore"; tail -n 5 $work/hb.log
fi
check "after the restore: the DPU equals the kernel" dpu_equals "link-restore"
diff=$(ctl DIFF)
echo "$diff" | sed 's/^/  /'
# The route added while cut, and the agent-owned nexthop of its inline
# path: nothing else.
check "the resync wrote just the route added while cut and its nexthop" \
	test "$(st "d['last_snapshot']['written']")" = 2
check "the write registers agree: route4 +1, nexthop +1" \
	grep -qx "since the mark: route4 +1w/+0i, nexthop +1w/+0i" <<<"$diff"

echo "  host-bridge log:"
sed 's/^/    /' $work/hb.log | tail -n 20
echo "system($phase): $pass passed, $fail failed"
[ $fail = 0 ]
