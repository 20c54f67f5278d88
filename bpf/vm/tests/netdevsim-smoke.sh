#!/usr/bin/env bash
# Smoke test for the test kernel, run inside the VM by bpf/vm/run.sh:
# a netdevsim device with two ports, tc flower on one of them.
#
# With no flow offload firmware attached, netdevsim must refuse a skip_sw
# flower rule with EOPNOTSUPP (the behaviour of the unpatched kernel, and of
# the patched one until a struct_ops program is attached), and a plain rule
# must stay in software only (not_in_hw). The device is then deleted.
set -euo pipefail

ID=${NSIM_ID:-10}
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

echo "kernel: $(uname -r)"
modprobe netdevsim 2>/dev/null || true
[ -e /sys/bus/netdevsim/new_device ] || { echo "FAIL: no netdevsim bus"; exit 1; }

echo "$ID 2" >/sys/bus/netdevsim/new_device
sysdir=/sys/bus/netdevsim/devices/netdevsim$ID/net
for _ in $(seq 50); do
	[ "$(ls "$sysdir" 2>/dev/null | wc -l)" = 2 ] && break
	sleep 0.1
done
mapfile -t ports < <(ls "$sysdir")
[ ${#ports[@]} = 2 ] && ok "netdevsim$ID has 2 ports: ${ports[*]}" ||
	bad "netdevsim$ID ports: ${ports[*]:-none}"
p=${ports[0]}

ip link set "$p" up
ethtool -K "$p" hw-tc-offload on
tc qdisc add dev "$p" clsact

# The errno, from the netlink ack as strace decodes it (tc prints the
# extack message instead when there is one).
tc_errno() {
	local f
	f=$(mktemp)
	strace -o "$f" -e trace=recvmsg -e signal=none tc "$@" >/dev/null 2>&1
	grep -o 'error=-E[A-Z]*' "$f" | tail -n 1 | sed 's/error=-//'
	rm -f "$f"
}
rule=(filter add dev "$p" ingress protocol ip pref 1 flower skip_sw
	dst_ip 192.0.2.1 action drop)
echo "  tc said: $(tc "${rule[@]}" 2>&1 | head -n 1)"
errno=$(tc_errno "${rule[@]}")
[ "$errno" = EOPNOTSUPP ] && ok "skip_sw flower rule refused with EOPNOTSUPP" ||
	bad "skip_sw flower rule: ${errno:-accepted}, not EOPNOTSUPP"

tc filter add dev "$p" ingress protocol ip pref 2 flower \
	dst_ip 192.0.2.2 action drop
show=$(tc filter show dev "$p" ingress)
echo "$show" | sed 's/^/  /'
grep -q not_in_hw <<<"$show" && ok "plain flower rule is not_in_hw" ||
	bad "plain flower rule: no not_in_hw"

tc qdisc del dev "$p" clsact
echo "$ID" >/sys/bus/netdevsim/del_device
[ ! -e "/sys/bus/netdevsim/devices/netdevsim$ID" ] && ok "netdevsim$ID deleted" ||
	bad "netdevsim$ID still there"

echo "$pass passed, $fail failed"
[ $fail = 0 ]
