#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh): the notifier taps on the test
# kernel (kprobes, fentry/fexit, switchdev). Each tap's records, printed by
# `host-bridge notifiers --json`, are checked against what `ip -j`,
# `bridge -j` and sysctl say; then host-bridge mirrors into the agent and
# a link going down with routes on it leaves the DPU equal to the kernel
# with no re-dump, and a tiny ring buffer that overflows is counted and
# repaired. Expects target/debug/{dpu-agent,host-bridge,mirror-check}.
set -euo pipefail
bin=$PWD/target/debug
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
ns=tn
peer=tp
work=$(mktemp -d)
ip netns add $ns
ip netns add $peer
x() { ip netns exec $ns sh -ec "$1"; }
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

x "
ip link set lo up
ip link add br0 type bridge vlan_filtering 1
ip link set br0 up
for p in p1 p2; do
	ip link add \$p type veth peer name \${p}x
	ip link set \${p}x netns $peer
	ip link set \$p master br0
	ip link set \$p up
done
ip link add d1 type veth peer name d1x
ip link set d1 up; ip link set d1x up
ip addr add 192.0.2.1/24 dev d1
"
ip -n $peer link set p1x up
ip -n $peer link set p2x up
ifx() { ip -n $ns -j link show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["ifindex"])'; }
p1=$(ifx p1)
p2=$(ifx p2)
d1=$(ifx d1)
br0=$(ifx br0)

# ---- The stream: which mechanism each tap got -----------------------------
$bin/host-bridge notifiers --netns $ns --json >$work/taps.json 2>$work/taps.err &
ntf=$!
for _ in $(seq 100); do grep -q "^tap netevent" $work/taps.err 2>/dev/null && break; sleep 0.1; done
cat $work/taps.err
for t in fib nexthop switchdev switchdev-blocking netdevice netevent; do
	check "tap $t attached" grep -qE "^tap $t \(.*\): (fexit|fentry|kprobe)" $work/taps.err
done

# want DESCRIPTION PYTHON-PREDICATE: waits for a record r (the JSON object)
# for which the predicate holds; `e` is r["event"].
want() {
	local what=$1 pred=$2
	local file=${stream:-$work/taps.json}
	if python3 - "$file" "$pred" <<'EOF'; then ok "$what"; else bad "$what"; tail -n 20 "$file"; fi
import json, sys, time
path, pred = sys.argv[1], sys.argv[2]
deadline = time.time() + 10
while time.time() < deadline:
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            e = r["event"]
            if eval(pred):
                sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
EOF
}
route() { ip -n $ns -j route show "$@"; }
gw_of() { route "$@" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["gateway"])'; }

# ---- FIB: add, replace, alias takeover, delete ----------------------------
x "ip route add 10.20.0.0/16 via 192.0.2.2 dev d1 metric 20"
g=$(gw_of 10.20.0.0/16)
want "fib add (ip route: via $g)" "e['type']=='fib' and e['event'] in ('add','replace') and e['dst']=='10.20.0.0' and e['dst_len']==16 and e['metric']==20 and e['table']==254 and e['nexthops'][0]['gateway']=='$g' and e['nexthops'][0]['ifindex']==$d1 and r['ret']==0"
x "ip route replace 10.20.0.0/16 via 192.0.2.3 dev d1 metric 20"
g=$(gw_of 10.20.0.0/16 metric 20)
want "fib replace (ip route: via $g)" "e['type']=='fib' and e['event']=='replace' and e['dst']=='10.20.0.0' and e['nexthops'][0]['gateway']=='$g'"
x "ip route add 10.20.0.0/16 via 192.0.2.4 dev d1 metric 30
ip route del 10.20.0.0/16 metric 20"
g=$(gw_of 10.20.0.0/16)
want "fib alias takeover: the metric 30 route replaces (ip route: via $g)" "e['type']=='fib' and e['event']=='replace' and e['dst']=='10.20.0.0' and e['metric']==30 and e['nexthops'][0]['gateway']=='$g'"
x "ip route del 10.20.0.0/16 metric 30"
check "ip route: 10.20.0.0/16 gone" test "$(route 10.20.0.0/16)" = "[]"
want "fib delete" "e['type']=='fib' and e['event']=='del' and e['dst']=='10.20.0.0' and e['metric']==30"
x "ip route add 10.30.0.0/24 via 192.0.2.2 dev d1 tos 0x10"
want "fib tos" "e['type']=='fib' and e['dst']=='10.30.0.0' and e['tos']==0x10"
x "ip rule add pref 100 fwmark 0x7 table 100"
want "fib rule add" "e['type']=='fib_rule' and e['add'] and e['pref']==100 and e['table']==100 and e['mark']==7"

# ---- Nexthop objects --------------------------------------------------------
x "ip nexthop add id 5 via 192.0.2.2 dev d1
ip nexthop replace id 5 via 192.0.2.5 dev d1"
g=$(ip -n $ns -j nexthop show id 5 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["gateway"])')
want "nexthop replace (ip nexthop: via $g)" "e['type']=='nexthop' and e['event']=='replace' and e['id']==5 and e['path']['gateway']=='$g' and e['path']['ifindex']==$d1"
x "ip nexthop add id 6 via 192.0.2.6 dev d1; ip nexthop add id 7 group 5/6,3"
want "nexthop group" "e['type']=='nexthop' and e['id']==7 and e['group'] and e['members']==[[5,1],[6,3]]"

# ---- switchdev: FDB station move, VLAN, STP state, ageing time ------------
# send IF MAC: a broadcast frame from MAC out of IF (in the peer netns),
# for the bridge to learn MAC behind the port IF is cabled to.
send() {
	ip netns exec $peer python3 -c "import socket,sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(b'\xff' * 6 + bytes.fromhex(sys.argv[2].replace(':', '')) + b'\x88\xb5' + bytes(46))" "$1" "$2"
}
mac=02:00:00:00:aa:01
send p1x $mac
want "fdb learned on p1" "e['type']=='fdb' and e['event']=='add_to_device' and e['mac']=='$mac' and e['ifindex']==$p1 and not e['added_by_user']"
# A move, not a flush: p1 stays up, the station shows up behind p2.
sleep 0.2
send p2x $mac
on=$(bridge -n $ns -j fdb show br br0 | python3 -c "import json,sys; print(([f['ifname'] for f in json.load(sys.stdin) if f['mac']=='$mac' and 'vlan' in f] + ['none'])[0])")
check "bridge fdb: $mac moved to p2" test "$on" = p2
want "fdb station move: deleted from p1" "e['type']=='fdb' and e['event']=='del_to_device' and e['mac']=='$mac' and e['ifindex']==$p1"
want "fdb station move: added on p2" "e['type']=='fdb' and e['event']=='add_to_device' and e['mac']=='$mac' and e['ifindex']==$p2"
x "bridge vlan add vid 42 dev p1"
check "bridge vlan: 42 on p1" sh -c "bridge -n $ns -j vlan show dev p1 | grep -q '\"vlan\":42'"
want "port vlan add" "e['type']=='port_obj' and e['add'] and e['obj']=='vlan' and e['vid']==42 and e['ifindex']==$p1"
# Listening: with STP off the kernel itself moves a port set to blocking
# on to forwarding at once (br_port_state_selection); listening stays.
x "bridge link set dev p2 state 1"
st=$(bridge -n $ns -j link show dev p2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["state"])')
check "bridge link: p2 $st" test "$st" = listening
want "stp state listening" "e['type']=='port_attr' and e['ifindex']==$p2 and e['attr']=={'stp_state':1}"
x "bridge link set dev p2 state 3"
x "ip link set br0 type bridge ageing_time 12345"
at=$(ip -n $ns -j -d link show br0 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["linkinfo"]["info_data"]["ageing_time"])')
want "ageing time $at" "e['type']=='port_attr' and e['ifindex']==$br0 and e['attr']=={'ageing_time':$at}"

# ---- netdevice and netevent -------------------------------------------------
x "ip link set d1 mtu 1400"
want "netdev changemtu" "e['type']=='netdev' and e['event']=='change_mtu' and e['ifindex']==$d1 and e['mtu']==1400 and e['old_mtu']==1500"
x "ip link set d1x master br0"
want "netdev changeupper" "e['type']=='netdev' and e['event']=='change_upper' and e['upper'][0]==$br0 and e['upper'][1]"
x "ip neigh add 192.0.2.77 lladdr 02:00:00:00:00:77 dev d1"
want "neigh update" "e['type']=='neigh' and e['dst']=='192.0.2.77' and e['lladdr']=='02:00:00:00:00:77' and e['ifindex']==$d1 and e['state']==0x80"
x "sysctl -qw net.ipv4.fib_multipath_hash_policy=1"
p=$(ip netns exec $ns sysctl -n net.ipv4.fib_multipath_hash_policy)
want "ipv4 multipath hash policy $p" "e['type']=='mpath_hash' and not e['v6'] and e['policy']==$p"
x "sysctl -qw net.ipv6.fib_multipath_hash_policy=3; sysctl -qw net.ipv6.fib_multipath_hash_fields=0x37"
f=$(ip netns exec $ns sysctl -n net.ipv6.fib_multipath_hash_fields)
want "ipv6 multipath hash fields $f" "e['type']=='mpath_hash' and e['v6'] and e['policy']==3 and e['fields']==$f"

# The kprobe fallbacks, forced: every tap attaches with kprobes, and their
# records carry the chain's result as the fexit ones do.
HOST_BRIDGE_TAPS_SKIP=fexit,fentry $bin/host-bridge notifiers --netns $ns --json \
	>$work/kp.json 2>$work/kp.err &
kpn=$!
for _ in $(seq 100); do grep -q "^tap netevent" $work/kp.err 2>/dev/null && break; sleep 0.1; done
cat $work/kp.err
for t in fib nexthop nexthop-bucket switchdev switchdev-blocking netdevice netevent; do
	check "tap $t attached as kprobe" grep -qE "^tap $t \(.*\): kprobe" $work/kp.err
done
x "ip route add 10.40.0.0/24 via 192.0.2.2 dev d1 metric 7
ip nexthop add id 8 via 192.0.2.8 dev d1
bridge vlan add vid 43 dev p1
ip link set d1 mtu 1450
sysctl -qw net.ipv4.fib_multipath_hash_policy=0"
stream=$work/kp.json
want "kprobe: fib add" "e['type']=='fib' and e['dst']=='10.40.0.0' and e['metric']==7 and r['ret']==0"
want "kprobe: nexthop" "e['type']=='nexthop' and e['id']==8 and e['path']['gateway']=='192.0.2.8' and r['ret']==0"
want "kprobe: port vlan" "e['type']=='port_obj' and e['vid']==43 and e['ifindex']==$p1 and r['ret'] is not None"
want "kprobe: changemtu" "e['type']=='netdev' and e['event']=='change_mtu' and e['mtu']==1450"
want "kprobe: hash policy" "e['type']=='mpath_hash' and not e['v6'] and e['policy']==0"
unset stream
kill $kpn 2>/dev/null || true

# Only the tapped netns passes.
ip link add other0 type veth peer name other1
ip link set other0 mtu 1300
sleep 0.5
check "other netns filtered" sh -c "! grep -q other0 $work/taps.json"
kill $ntf 2>/dev/null || true

# ---- The mirror: link down with routes on it, no re-dump ------------------
$bin/dpu-agent --listen unix:$work/agent.sock --hw $work/hw >/dev/null 2>$work/agent.log &
for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
x "ip link add d2 type veth peer name d2x; ip link set d2 up; ip link set d2x up
ip addr add 198.18.0.1/24 dev d2
for i in \$(seq 1 200); do echo \"route add 10.100.\$i.0/24 via 198.18.0.2\"; done | ip -batch -
ip route add 10.101.0.0/24 via 198.18.0.2 metric 50
ip route add 10.101.0.0/24 via 192.0.2.9 metric 60
ip nexthop add id 20 via 198.18.0.3 dev d2
ip route add 10.102.0.0/24 nhid 20"
$bin/host-bridge run --netns $ns --agent $work/agent.sock --status $work/status.sock >/dev/null 2>$work/hb.log &
hb1=$!
status() { $bin/host-bridge status --status $work/status.sock --json; }
counter() { status | python3 -c "import json,sys; print(json.load(sys.stdin)['host_bridge']['counters']['$1'])"; }
mc() { $bin/mirror-check $ns $work/hw 30; }
check "mirror: initial sync" mc

# ---- Settings netlink has no event for: the DPU follows them --------------
# 16 flows that differ only in their source port, through a two-path route:
# how many paths the DPU's model spreads them over.
x "ip neigh replace 192.0.2.2 lladdr 02:00:00:00:00:02 dev d1
ip neigh replace 198.18.0.2 lladdr 02:00:00:00:00:03 dev d2
ip route add 10.120.0.0/24 nexthop via 192.0.2.2 dev d1 nexthop via 198.18.0.2 dev d2"
check "mirror: a two-path route" mc
spread() {
	for p in $(seq 1000 1015); do
		$bin/dpu-hw inject $work/hw --in $d1 --src 192.0.2.50 --dst 10.120.0.5 --sport $p
	done | grep -o 'ifindex: [0-9]*' | sort -u | wc -l
}
hashcfg() { $bin/dpu-hw dump $work/hw | grep 'ecmp hash ipv4' || echo "ecmp hash ipv4: none (policy 0)"; }
x "sysctl -qw net.ipv4.fib_multipath_hash_policy=0"
check "mirror: hash policy 0 (L3)" mc
n0=$(spread)
check "policy 0 (L3): one path for flows that differ in ports only ($n0; $(hashcfg))" test "$n0" = 1
x "sysctl -qw net.ipv4.fib_multipath_hash_policy=1"
check "mirror: hash policy 1 (L4) on the DPU" mc
n1=$(spread)
check "policy 1 (L4): the flows spread over both paths ($n1; $(hashcfg))" test "$n1" = 2
x "sysctl -qw net.ipv4.fib_multipath_hash_policy=3; sysctl -qw net.ipv4.fib_multipath_hash_fields=0x3"
check "mirror: hash policy 3, fields 0x3" mc
n3=$(spread)
check "policy 3, fields src/dst IP: one path again ($n3; $(hashcfg))" test "$n3" = 1
check "hash settings from the taps" test "$(counter tap_settings)" -gt 0
x "bridge link set dev p1 state 1; ip link set br0 type bridge ageing_time 23456"
check "mirror: STP listening on p1, ageing time 23456" mc
v=$($bin/dpu-hw inject $work/hw --in $p1 --smac 02:00:00:00:cc:01 --dmac 02:00:00:00:aa:01 | head -1)
check "model: a listening port forwards nothing ($v)" sh -c "echo '$v' | grep -q StpBlocked"
x "bridge link set dev p1 state 3"
check "mirror: p1 forwarding again" mc
v=$($bin/dpu-hw inject $work/hw --in $p1 --smac 02:00:00:00:cc:01 --dmac 02:00:00:00:aa:01 | head -1)
check "model: forwarding again ($v)" sh -c "! echo '$v' | grep -q StpBlocked"

r0=$(counter redumps)
x "ip link set d2 down"
check "mirror: link down with 203 routes on it" mc
check "ip route: the routes on d2 are gone" test "$(route 10.100.7.0/24)" = "[]"
check "ip nexthop: id 20 is gone" sh -c "! ip -n $ns nexthop show id 20 2>/dev/null | grep -q ."
r1=$(counter redumps)
check "no re-dump for the link down ($r0 -> $r1)" test "$r1" = "$r0"
mac2=02:00:00:00:aa:02
send p1x $mac2
check "mirror: $mac2 learned on p1" mc
send p2x $mac2
check "mirror: station move of $mac2 to p2" mc
check "dead routes deleted by the tap rule" test "$(counter dead_routes)" -gt 0
x "ip link set d2 up; ip addr add 198.18.1.1/24 dev d2; ip route add 10.103.0.0/24 via 198.18.1.2 src 198.18.1.1"
check "mirror: routes back" mc
x "ip addr del 198.18.1.1/24 dev d2"
check "mirror: a route flushed with its source address" mc
check "tap deletes counted" test "$(counter tap_deletes)" -gt 0
kill $hb1 2>/dev/null || true
wait $hb1 2>/dev/null || true

# ---- A tiny ring buffer overflows: counted, resynced, equal ----------------
x "for i in \$(seq 1 600); do echo \"route add 10.110.\$((i / 250)).\$((i % 250))/32 via 198.18.0.2\"; done | ip -batch -"
$bin/host-bridge run --netns $ns --agent $work/agent.sock --status $work/status2.sock --tap-ring 4K >/dev/null 2>$work/hb2.log &
for _ in $(seq 100); do [ -S $work/status2.sock ] && break; sleep 0.1; done
check "mirror: 600 more routes" mc
x "ip link set d2 down"
check "mirror: after the overflow" mc
drops=$($bin/host-bridge status --status $work/status2.sock --json | python3 -c "import json,sys; print(json.load(sys.stdin)['taps']['counts']['drops'])")
lossr=$($bin/host-bridge status --status $work/status2.sock --json | python3 -c "import json,sys; print(json.load(sys.stdin)['host_bridge']['counters']['tap_loss_resyncs'])")
check "ring buffer drops counted ($drops)" test "$drops" -gt 0
check "loss repaired by a resync ($lossr)" test "$lossr" -gt 0

echo "notifier-taps: $pass passed, $fail failed"
if [ "$fail" -ne 0 ]; then
	cat $work/taps.err $work/hb.log $work/hb2.log $work/agent.log
	exit 1
fi
