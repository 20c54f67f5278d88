#!/usr/bin/env bash
# Functional test of the netdevsim flow offload struct_ops (the kernel patch
# series in bpf/kernel/patches/), run inside the VM by bpf/kernel/tests/run.sh:
#
#   nsim-flow-ops.sh OBJDIR
#
# OBJDIR holds nsim_flow_ops.bpf.o (the test firmware, DEV_ID 10),
# nsim_flow_ops_dev11.bpf.o (same, DEV_ID 11) and the refused programs
# bad_sleepable.bpf.o, bad_write.bpf.o and bad_kfunc_caller.bpf.o.
set -uo pipefail

OBJ=${1:?usage: nsim-flow-ops.sh OBJDIR}
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}

new_dev() { # new_dev ID -> sets ports[]
	echo "$1 2" >/sys/bus/netdevsim/new_device
	local d=/sys/bus/netdevsim/devices/netdevsim$1/net
	for _ in $(seq 50); do
		[ "$(ls "$d" 2>/dev/null | wc -l)" = 2 ] && break
		sleep 0.1
	done
	mapfile -t ports < <(ls "$d")
	for p in "${ports[@]}"; do
		ip link set "$p" up
		ethtool -K "$p" hw-tc-offload on
		tc qdisc add dev "$p" clsact
	done
}

add_rule() { # add_rule DEV PREF DST_IP: a skip_sw drop rule; prints tc's error
	tc filter add dev "$1" ingress protocol ip pref "$2" flower skip_sw \
		dst_ip "$3" action drop 2>&1
}

tc_errno() { # tc_errno DEV PREF DST_IP: the errno of add_rule, from strace
	local f
	f=$(mktemp)
	strace -o "$f" -e trace=recvmsg -e signal=none tc filter add dev "$1" \
		ingress protocol ip pref "$2" flower skip_sw dst_ip "$3" \
		action drop >/dev/null 2>&1
	grep -o 'error=-E[A-Z]*' "$f" | tail -n 1 | sed 's/error=-//'
	rm -f "$f"
}

events() { # events INDEX: a counter of the test firmware's events map
	bpftool -j map lookup name events key "$1" 0 0 0 | python3 -c '
import json, sys
d = json.load(sys.stdin)
if "formatted" in d:
    print(d["formatted"]["value"])
else:
    print(int.from_bytes(bytes(int(x, 16) for x in d["value"]), "little"))'
}

registered() { bpftool struct_ops show 2>/dev/null | grep -c "nsim_flow_ops" || true; }

echo "kernel: $(uname -r)"
new_dev 10
p0=${ports[0]}
p1=${ports[1]}

# ---- No firmware: flower offload refused, as before the series ----------
add_rule "$p0" 1 192.0.2.1 | head -n 1 | sed 's/^/  /'
check "no firmware: skip_sw refused with EOPNOTSUPP" \
	test "$(tc_errno "$p0" 1 192.0.2.1)" = EOPNOTSUPP

# ---- Refused programs -------------------------------------------------------
out=$(bpftool struct_ops register "$OBJ/bad_sleepable.bpf.o" 2>&1)
echo "$out" | grep -iE "error|unsupported|invalid" | head -3 | sed 's/^/  /'
check "sleepable program refused" test "$(registered)" = 0
out=$(bpftool struct_ops register "$OBJ/bad_write.bpf.o" 2>&1)
echo "$out" | grep -E "only read|Error" | head -3 | sed 's/^/  /'
check "verifier rejects a write to the request, with a clear message" \
	grep -q "only read is supported" <<<"$out"
out=$(bpftool struct_ops register "$OBJ/bad_kfunc_caller.bpf.o" 2>&1)
echo "$out" | grep -E "not allowed|rror" | head -3 | sed 's/^/  /'
check "kfunc refused to another struct_ops type" \
	grep -q "calling kernel function bpf_flow_offload_rule_read is not allowed" <<<"$out"
out=$(bpftool struct_ops register "$OBJ/nsim_flow_ops_dev11.bpf.o" 2>&1)
echo "$out" | grep -iE "error" | head -2 | sed 's/^/  /'
check "firmware for a missing device refused" test "$(registered)" = 0

# ---- Attach ---------------------------------------------------------------------
check "firmware registers" bpftool struct_ops register "$OBJ/nsim_flow_ops.bpf.o"
bpftool struct_ops show | sed 's/^/  /'
check "bpftool struct_ops shows it" test "$(registered)" = 1
out=$(bpftool struct_ops register "$OBJ/nsim_flow_ops.bpf.o" 2>&1)
echo "$out" | grep -iE "error" | head -2 | sed 's/^/  /'
check "second firmware on the same device refused" test "$(registered)" = 1

# ---- Rules --------------------------------------------------------------------
out=$(add_rule "$p0" 1 192.0.2.1)
check "skip_sw rule accepted: $out" test -z "$out"
show=$(tc filter show dev "$p0" ingress)
echo "$show" | sed 's/^/  /'
check "rule is in_hw" grep -q "in_hw_count 1" <<<"$show"
check "REPLACE reached the firmware" test "$(events 0)" = 1

# Every dump asks for stats, and the test firmware adds 1 packet of 100
# bytes each time.
stats=$(tc -s filter show dev "$p0" ingress)
echo "$stats" | grep -E "Sent|used_hw_stats" | sed 's/^/  /'
n=$(events 2)
check "STATS counters in tc -s ($n requests)" \
	grep -q "Sent hardware $((n * 100)) bytes $n pkt" <<<"$stats"

out=$(tc filter add dev "$p0" ingress protocol 802.1Q pref 2 flower skip_sw \
	vlan_id 100 vlan_ethtype ip dst_mac 02:00:00:00:00:01 \
	src_ip 198.51.100.0/24 ip_proto tcp dst_port 80 \
	action vlan pop action mirred egress redirect dev "$p1" 2>&1)
check "VLAN + L4 rule with vlan pop and redirect accepted: $out" test -z "$out"
dump=$(bpftool -j map dump name flows 2>/dev/null)
check "decoded: VLAN id, ports, actions" python3 - "$dump" "$(cat /sys/class/net/"$p1"/ifindex)" <<'EOF'
import json, sys
flows = [e.get("formatted", e)["value"] for e in json.loads(sys.argv[1])]
r = [f for f in flows if f["vlan_id"] == 100]
assert r, flows
r = r[0]
assert r["ip_version"] == 4 and r["ip_proto"] == 6, r
assert r["dst_port"] == 80 << 8, r["dst_port"]    # network byte order
assert r["num_actions"] == 2, r["num_actions"]
acts = r["actions"][:2]
# FLOW_ACTION_VLAN_POP = 9, FLOW_ACTION_REDIRECT = 4
assert [a["id"] for a in acts] == [9, 4], acts
assert acts[1]["ifindex"] == int(sys.argv[2]), acts
assert r["undecoded_keys"] == 0, r
print("  decoded:", {k: r[k] for k in ("vlan_id", "ip_proto", "dst_port", "num_actions")})
EOF

out=$(tc filter add dev "$p0" ingress protocol ip pref 3 flower skip_sw \
	dst_ip 192.0.2.3 ip_proto udp src_port 1000-2000 action drop 2>&1)
check "rule with an undecoded key (port range) refused by the firmware" \
	grep -q "Operation not supported" <<<"$out"

add_rule "$p0" 4 192.0.2.4 >/dev/null
add_rule "$p1" 5 192.0.2.5 >/dev/null
out=$(add_rule "$p1" 6 192.0.2.6)
check "full flow table: skip_sw refused with ENOSPC" \
	grep -q "No space left on device" <<<"$out"

d0=$(events 1)
tc filter del dev "$p0" ingress pref 4
check "DESTROY reached the firmware" test "$(events 1)" = $((d0 + 1))

# ---- Unregister: back to EOPNOTSUPP -------------------------------------------------
check "firmware unregisters" bpftool struct_ops unregister name nsim_fw
check "after unregister: skip_sw refused with EOPNOTSUPP" \
	test "$(tc_errno "$p1" 7 192.0.2.7)" = EOPNOTSUPP

# ---- Device deletion with the firmware attached ---------------------------------
check "firmware registers again" bpftool struct_ops register "$OBJ/nsim_flow_ops.bpf.o"
add_rule "$p0" 8 192.0.2.8 >/dev/null
d0=$(events 1)
echo 10 >/sys/bus/netdevsim/del_device
check "device deleted with the firmware attached" \
	test ! -e /sys/bus/netdevsim/devices/netdevsim10
check "the device's rules were destroyed in the firmware" \
	test "$(events 1)" -gt "$d0"
check "idle firmware still unregisters" bpftool struct_ops unregister name nsim_fw
new_dev 10
check "a new device 10 takes a firmware" \
	bpftool struct_ops register "$OBJ/nsim_flow_ops.bpf.o"
check "and offloads with it" test -z "$(add_rule "${ports[0]}" 1 192.0.2.1)"
echo 10 >/sys/bus/netdevsim/del_device
bpftool struct_ops unregister name nsim_fw >/dev/null 2>&1

echo "$pass passed, $fail failed"
[ $fail = 0 ]
