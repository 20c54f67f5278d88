#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh), whose kernel has the bridge and
# VXLAN drivers this host's kernel lacks: host-bridge mirrors a netns with a
# VLAN-filtering bridge, FDB entries and a VXLAN device into the agent, and
# mirror-check compares the DPU hardware with `ip -j` / `bridge -j` after
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
x "ip link del p2"
check "port removal"
x "ip link set br0 down"
check "bridge down"
echo "mirror-bridge: ok"
