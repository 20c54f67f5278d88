#!/usr/bin/env bash
# Runs inside the test VM (bpf/vm/run.sh): a real routing suite reads the
# DPU's answers. FRR's zebra (Debian's frr 8.4, started with --asic-offload:
# an ASIC offloads the kernel's routes) installs the static routes of staticd, and
# bgpd learns more from a peer in another netns over a veth; the kernel's
# netdevsim device has host-bridge's FIB firmware, the DPU (qemu-virt:
# 1,024 IPv4 routes) holds fewer than the route set.
#
#   frr-offload.sh [STATIC] [BGP]
#
# vtysh's `show ip route json` must mark the routes the DPU hardware holds
# "offloaded": true and the refused ones "offloaded": false, and ip -j route
# flags must equal the DPU table; deletes free room and refused routes flip
# to offloaded, in FRR too. Expects target/debug/{dpu-agent,host-bridge,dpu-hw}.
set -uo pipefail
bin=$PWD/target/debug
ns=${1:-1000}
nb=${2:-200}
work=$(mktemp -d)
# The daemons run as user frr: it must reach their directories.
chmod 755 $work
here=$(dirname "$0")
. "$here/common.sh"
frr=/usr/lib/frr
cleanup() {
	for p in "$work"/frr*/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
	kill $(jobs -p) 2>/dev/null
	ip netns del frrpeer 2>/dev/null
}
trap cleanup EXIT
for d in zebra staticd bgpd; do
	[ -x $frr/$d ] || { echo "FAIL: $frr/$d missing (apt-get install frr)"; exit 1; }
done

ip link set lo up
dev=50
new_dev $dev
ip addr add 192.0.2.1/24 dev $p0
sysctl -qw net.ipv4.fib_notify_on_flag_change=1

$bin/dpu-agent --listen unix:$work/agent.sock --hw $work/hw >/dev/null 2>$work/agent.log &
for _ in $(seq 100); do [ -S $work/agent.sock ] && break; sleep 0.1; done
status() { $bin/host-bridge status --status $work/status.sock --json 2>/dev/null; }
$bin/host-bridge run --fib-firmware $dev --agent $work/agent.sock --status $work/status.sock \
	>/dev/null 2>>$work/hb.log &
for _ in $(seq 150); do
	status | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["dpu"]["snapshots"] < 1)' 2>/dev/null && break
	sleep 0.2
done

# FRR in this netns: zebra (-A), staticd with STATIC routes, bgpd peering
# with a bgpd in netns frrpeer that announces BGP more.
mkdir -p $work/frr $work/frrpeer
chown frr:frr $work/frr $work/frrpeer
python3 -c "
for i in range($ns):
    print(f'ip route 10.{i // 256}.{i % 256}.0/24 192.0.2.2')
" >$work/frr/staticd.conf
ip netns add frrpeer
ip link add vfrr type veth peer name vfrr-peer
ip link set vfrr-peer netns frrpeer
ip addr add 198.51.100.1/30 dev vfrr
ip link set vfrr up
ip -n frrpeer addr add 198.51.100.2/30 dev vfrr-peer
ip -n frrpeer link set vfrr-peer up
ip -n frrpeer link set lo up
cat >$work/frr/bgpd.conf <<EOF
router bgp 65001
 bgp router-id 198.51.100.1
 no bgp ebgp-requires-policy
 neighbor 198.51.100.2 remote-as 65002
EOF
python3 -c "
print('router bgp 65002')
print(' bgp router-id 198.51.100.2')
print(' no bgp ebgp-requires-policy')
print(' no bgp network import-check')
print(' neighbor 198.51.100.1 remote-as 65001')
print(' address-family ipv4 unicast')
for i in range($nb):
    print(f'  network 172.16.{i}.0/24')
print(' exit-address-family')
" >$work/frrpeer/bgpd.conf
# In the foreground, in the background: frr 8.4's -d exits early in this VM.
# No TCP vty (-P 0): only the Unix sockets in DIR.
daemon() { # daemon DIR NAME ARGS...: an FRR daemon with its sockets and pid in DIR
	local d=$1 name=$2
	shift 2
	$frr/$name -P 0 -i $d/$name.pid --vty_socket $d "$@" >>$d/$name.log 2>&1 &
}
# frr 8.4 has no -A: the long option, with its argument.
daemon $work/frr zebra --asic-offload=notify_on_ack -z $work/frr/zserv.api -f /dev/null
for _ in $(seq 100); do [ -S $work/frr/zserv.api ] && break; sleep 0.1; done
daemon $work/frr staticd -z $work/frr/zserv.api -f $work/frr/staticd.conf
daemon $work/frr bgpd -z $work/frr/zserv.api -f $work/frr/bgpd.conf -p 179
# The peer needs no zebra: it only announces (-Z), on its own port 179.
ip netns exec frrpeer $frr/bgpd -P 0 -Z -i $work/frrpeer/bgpd.pid \
	--vty_socket $work/frrpeer -f $work/frrpeer/bgpd.conf -p 179 >>$work/frrpeer/bgpd.log 2>&1 &
vtysh() { /usr/bin/vtysh --vty_socket $work/frr "$@"; }

# frr_compare: vtysh's offloaded marks, ip -j route flags and the DPU table.
frr_compare() {
	vtysh -c "show ip route json" >$work/frr.json 2>/dev/null || return 1
	ip -j -4 route show table all >$work/r4.json
	ip -j -6 route show table all >$work/r6.json
	$bin/dpu-hw dump $work/hw >$work/hw.txt
	python3 "$here/fib_compare.py" $work/r4.json $work/r6.json $work/hw.txt quiet >/dev/null || {
		[ "${1:-}" = verbose ] && python3 "$here/fib_compare.py" $work/r4.json $work/r6.json $work/hw.txt
		return 1
	}
	python3 - $work/frr.json $work/hw.txt "$ns" "$nb" "${1:-}" <<'EOF'
import json, re, sys
routes = json.load(open(sys.argv[1]))
held = set()
for line in open(sys.argv[2]):
    m = re.match(r"^route\[\d+\] table 254 (\S+)/(\d+) metric (\d+)", line)
    if m:
        held.add(f"{m[1]}/{m[2]}")
want = int(sys.argv[3]) + int(sys.argv[4])
verbose = sys.argv[5] == "verbose"
counts = {"static": 0, "bgp": 0, "offloaded": 0, "failed": 0}
bad = []
for prefix, entries in routes.items():
    for r in entries:
        if r.get("protocol") not in ("static", "bgp") or not r.get("selected"):
            continue
        counts[r["protocol"]] += 1
        if "offloaded" not in r:
            bad.append(f"{prefix}: no offload mark yet")
            continue
        counts["offloaded" if r["offloaded"] else "failed"] += 1
        if r["offloaded"] != (prefix in held):
            bad.append(f"{prefix}: FRR offloaded {r['offloaded']}, DPU {'holds' if prefix in held else 'lacks'} it")
print(" ".join(f"{k} {v}" for k, v in counts.items()))
if counts["static"] + counts["bgp"] != want:
    bad.append(f"{counts['static'] + counts['bgp']} FRR routes, want {want}")
if bad:
    if verbose:
        print("\n".join("  " + b for b in bad[:20]))
    sys.exit(1)
EOF
}
settled() { # settled SECONDS: waits until frr_compare passes
	local end=$(($(date +%s) + $1))
	while [ "$(date +%s)" -lt $end ]; do
		frr_compare >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	frr_compare verbose
}

t0=$(date +%s)
check "FRR: $ns static and $nb BGP routes, offloaded as the DPU holds them" settled 400
echo "  (settled after $(( $(date +%s) - t0 )) s)"
frr_compare | sed 's/^/  /'
vtysh -c "show bgp summary" 2>/dev/null | grep -E "^198\.51\.100\.2|Neighbor" | sed 's/^/  /'
failed=$(frr_compare | sed -n 's/.* failed \([0-9]*\).*/\1/p')
check "the DPU refused some ($failed): FRR marks them offloaded false" test "${failed:-0}" -gt 0
vtysh -c "show ip route 10.0.0.0/24" 2>/dev/null | sed 's/^/  /' | head -5

# Room frees: 300 static routes go, refused ones flip to offloaded.
mapfile -t del < <(python3 -c "
print('configure terminal')
for i in range(300):
    print(f'no ip route 10.{i // 256}.{i % 256}.0/24 192.0.2.2')
")
args=()
for c in "${del[@]}"; do args+=(-c "$c"); done
vtysh "${args[@]}" >/dev/null 2>&1
ns=$((ns - 300))
t0=$(date +%s)
check "300 static routes deleted: FRR, the kernel and the DPU agree again" settled 300
echo "  (settled after $(( $(date +%s) - t0 )) s)"
frr_compare | sed 's/^/  /'
after=$(frr_compare | sed -n 's/.* failed \([0-9]*\).*/\1/p')
check "refused routes flipped to offloaded in FRR ($failed -> ${after:-?} refused)" \
	test "${after:-99999}" -lt "${failed:-0}"

echo "frr-offload: $pass passed, $fail failed"
[ "$fail" = 0 ]
