#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh), whose kernel has the bridge and
# VXLAN drivers this host's kernel lacks: host-bridge mirrors a netns with a
# VLAN-filtering bridge, FDB entries, a VXLAN device and tc flower filters
# on clsact/ingress into the agent, and
# mirror-check compares the DPU hardware with `ip -j` / `bridge -j` / `tc -j` after
# each change. Expects target/debug/{dpu-agent,host-bridge,mirror-check}
# built on the host (qemu-tests/vm-tests.sh does that).
set -euo pipefail
bin=$PWD/target/debug
ns=hbv
work=$(mktemp -d)
ip netns add $ns
x() { ip netns exec $ns sh -ec "$1"; }
x "
ip link set lo up
ip link add br0 type bridge vlan_filtering 1
ip link set br0 up
for p in p1 p2 p3; do ip link add \$p type veth peer name \${p}x; ip link set \$p master br0; ip link set \$p up; ip link set \${p}x up; done
ip addr add 192.0.2.1/24 dev br0
ip link add vx100 type vxlan id 100 dstport 4789 local 192.0.2.1 nolearning
ip link set vx100 master br0; ip link set vx100 up
bridge vlan add vid 10 dev p1 pvid untagged
bridge vlan add vid 20-22 dev p2
bridge vlan add vid 10 dev p3
bridge vlan add vid 100 dev vx100 pvid untagged
bridge fdb add 02:00:00:00:01:01 dev p1 master static vlan 10
bridge fdb add 02:00:00:00:02:02 dev p2 master static vlan 21
bridge fdb append 00:00:00:00:00:00 dev vx100 dst 198.51.100.2
bridge fdb add 02:00:00:00:0a:0a dev vx100 dst 198.51.100.3
ip neigh add 192.0.2.254 lladdr 02:00:00:00:00:fe dev br0
ip route add 10.1.0.0/16 via 192.0.2.254
tc qdisc add dev p1 clsact
tc filter add dev p1 ingress protocol ip prio 10 flower ip_proto tcp dst_ip 10.0.0.0/24 dst_port 80 action drop
tc filter add dev p1 ingress protocol ipv6 prio 20 flower src_ip 2001:db8::/64 ip_proto udp src_port 53 action mirred egress redirect dev p3
tc filter add dev p1 ingress protocol 802.1Q prio 30 flower vlan_id 10 vlan_ethtype ip dst_mac 02:00:00:00:00:01 action vlan pop action pass
tc filter add dev p1 ingress protocol all prio 40 chain 3 flower src_mac 02:00:00:00:00:00/ff:ff:ff:00:00:00 action vlan push id 20 action goto chain 4
tc filter add dev p1 ingress protocol ip prio 50 flower ip_ttl 3 action drop
tc filter add dev p1 ingress protocol ip prio 60 flower skip_hw dst_ip 10.9.0.1 action drop
tc qdisc add dev p3 clsact
tc filter add dev p3 ingress protocol ip prio 10 flower dst_ip 10.3.0.0/16 action mirred egress mirror dev p1 pipe action drop
"
# Background processes must not hold the runner's output pipe open.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
$bin/dpu-agent --listen unix:$work/agent.sock --hw $work/hw >/dev/null 2>$work/agent.log &
for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
$bin/host-bridge run --netns $ns --agent $work/agent.sock --status $work/status.sock >/dev/null 2>$work/hb.log &
fail() { echo "FAILED: $*"; cat $work/hb.log $work/agent.log; exit 1; }
check() { $bin/mirror-check $ns $work/hw 30 || fail "$1"; }
check "initial sync"
x "bridge vlan del vid 21 dev p2; bridge vlan add vid 30 dev p3 untagged"
check "vlan changes"
x "bridge fdb del 02:00:00:00:01:01 dev p1 master vlan 10; bridge fdb add 02:00:00:00:03:03 dev p3 master static vlan 30"
check "fdb changes"
x "tc filter del dev p1 ingress protocol ip prio 10 handle 1 flower
tc filter replace dev p1 ingress protocol ipv6 prio 20 handle 1 flower src_ip 2001:db8::/64 ip_proto udp src_port 53 action drop
tc filter add dev p3 ingress protocol ip prio 11 flower ip_proto udp dst_port 4789 action pass"
check "tc filter delete, replace, add"
x "tc filter del dev p1 ingress protocol all prio 40 chain 3"
check "tc priority removed as a whole"
x "tc qdisc del dev p3 clsact"
check "clsact qdisc removed"
x "ip link del p2"
check "port removal"
x "ip link set br0 down"
check "bridge down"
grep -q "not offloaded: flower key IpTtl" $work/hb.log || fail "unoffloadable filter not logged"
echo "mirror-bridge: ok"
