# Sourced by the VM test scripts: check counters and a netdevsim device.
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# new_dev ID: netdevsim device ID with two ports, up, tc offload on,
# clsact; sets p0, p1 (their names) and if0 (p0's ifindex).
new_dev() {
	local dev=$1 p
	echo "$dev 2" >/sys/bus/netdevsim/new_device
	for _ in $(seq 50); do
		[ "$(ls /sys/bus/netdevsim/devices/netdevsim$dev/net 2>/dev/null | wc -l)" = 2 ] && break
		sleep 0.1
	done
	mapfile -t ports < <(ls /sys/bus/netdevsim/devices/netdevsim$dev/net)
	p0=${ports[0]}
	p1=${ports[1]}
	for p in "$p0" "$p1"; do
		ip link set "$p" up
		ethtool -K "$p" hw-tc-offload on
		tc qdisc add dev "$p" clsact
	done
	if0=$(cat /sys/class/net/$p0/ifindex)
}
