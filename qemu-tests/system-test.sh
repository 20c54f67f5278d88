#!/usr/bin/env bash
# The two-VM system test: a host VM and a DPU VM joined by virtio-serial,
# both under TCG.
#
#   bash qemu-tests/system-test.sh           the test (run by qemu-tests/run.sh)
#   bash qemu-tests/system-test.sh --bench   figures instead: latency from
#       ip route add in the host VM to the DPU hardware (p50, p99 over
#       1,000 adds) and update throughput, over virtio-serial and over
#       vsock between the VMs
#
# It runs twice: over virtio-serial (host VM boots "first" and "second"),
# then over vsock between the two VMs (vhost-device-vsock in its
# sibling-VM mode: host VM CID 3, DPU VM CID 4; host VM boot "vsock").
#
#  - host VM: the test kernel (bpf/kernel/build.sh: netdevsim and the
#    struct_ops series) under virtme-ng, running qemu-tests/vm/system.sh:
#    real ip, bridge and tc, host-bridge with --firmware on a netdevsim
#    device, dialling serial:/dev/vportNpM (its port org.dpu.agent.0);
#  - DPU VM: the qemu-virt DPU image (cross/build-image.sh) in
#    qemu-system-aarch64 -M virt, the agent on the ivshmem BAR over the
#    board's memory file;
#  - between them, system-ctl (outside both): the channel's backend (a
#    relay between the two VMs' virtio-serial chardevs, the tmfifo model),
#    the DPU's power switch, and the reader of the DPU's memory, which it
#    compares with the host kernel's state sent over a second port
#    (org.dpu.test.ctl).
# Scenarios: state reaches the DPU hardware; a tc flower skip_sw rule
# through the firmware reaches the DPU flow table and packets injected into
# the DPU model show in tc -s; DPU reboot with zero rewrites; link cut and
# restore; host VM reboot (a second host VM boot with other state).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$(date +%s)
kernel=$(bash bpf/kernel/build.sh | tail -n 1)
image=$(bash cross/build-image.sh qemu-virt | tail -n 1)
cargo build --quiet --locked -p dpu-hw -p host-bridge -p qemu-tests --bins
# The benchmark runs the release build of what runs in the host VM.
[ "${1:-}" = --bench ] && cargo build --quiet --locked --release -p host-bridge -p qemu-tests --bins
vsock_bin=$(bash qemu-tests/setup-vsock.sh)
echo "system-test: kernel $kernel, image $image ($(( $(date +%s) - t0 )) s)"
rc=0
ctl_pid=
cleanup() {
	[ -n "$ctl_pid" ] && kill "$ctl_pid" 2>/dev/null || true
	for r in /tmp/dpu-system.$$.*; do
		[ -f "$r/dpu/qemu.pid" ] && kill -9 "$(cat "$r/dpu/qemu.pid")" 2>/dev/null || true
		[ -f "$r/vsock.pid" ] && kill "$(cat "$r/vsock.pid")" 2>/dev/null || true
	done
	return 0
}
trap cleanup EXIT

# system RUN_NAME PHASES [--vsock]: one DPU VM and its controller, one host
# VM boot per phase.
system() {
	local name=$1 phases=$2 mode=${3:-} bin_dir=$PWD/target/debug
	case $phases in *bench) bin_dir=$PWD/target/release ;; esac
	local run=/tmp/dpu-system.$$.$name
	mkdir -p "$run"
	local ctl_args=("$run" "$image")
	local opts=(
		--vng-arg "--qemu-opts=-device virtio-serial-pci,id=dpuser"
		--vng-arg "--qemu-opts=-chardev socket,id=dpulink,path=$run/host-serial.sock,server=on,wait=off"
		--vng-arg "--qemu-opts=-device virtserialport,bus=dpuser.0,chardev=dpulink,name=org.dpu.agent.0"
		--vng-arg "--qemu-opts=-chardev socket,id=dpuctl,path=$run/ctl.sock,server=on,wait=off"
		--vng-arg "--qemu-opts=-device virtserialport,bus=dpuser.0,chardev=dpuctl,name=org.dpu.test.ctl"
	)
	if [ "$mode" = --vsock ]; then
		ctl_args+=(--vsock "$vsock_bin")
		# vhost-user needs the guest's memory shared: a memfd, as big as -m.
		opts+=(--memory 1G
			--vng-arg "--qemu-opts=-object memory-backend-memfd,id=hostmem,size=1G,share=on"
			--vng-arg "--qemu-opts=-machine memory-backend=hostmem"
			--vng-arg "--qemu-opts=-chardev socket,id=vsockdev,path=$run/vhost-host.sock"
			--vng-arg "--qemu-opts=-device vhost-user-vsock-pci,chardev=vsockdev")
	fi
	target/debug/system-ctl "${ctl_args[@]}" 2>"$run/system-ctl.log" &
	ctl_pid=$!
	for _ in $(seq 600); do
		grep -q "DPU VM: dpu-vm: up" "$run/system-ctl.log" 2>/dev/null && break
		kill -0 $ctl_pid 2>/dev/null || { cat "$run/system-ctl.log"; return 1; }
		sleep 0.1
	done
	grep "DPU VM\|vhost-device" "$run/system-ctl.log"
	local phase
	for phase in $phases; do
		echo "system-test: host VM boot ($phase)"
		# Through a pipe, as vm-tests.sh does.
		if ! bash bpf/vm/run.sh --kernel "$kernel" --name host-vm --out "$run/host-$phase" \
			"${opts[@]}" qemu-tests/vm/system.sh "$phase" "$bin_dir" 2>&1 | cat; then
			rc=1
		fi
	done
	kill $ctl_pid 2>/dev/null || true
	wait $ctl_pid 2>/dev/null || true
	ctl_pid=
	[ -f "$run/dpu/qemu.pid" ] && kill -9 "$(cat "$run/dpu/qemu.pid")" 2>/dev/null || true
	[ -f "$run/vsock.pid" ] && kill "$(cat "$run/vsock.pid")" 2>/dev/null || true
	echo "system-test: system-ctl log ($name):"
	sed 's/^/  /' "$run/system-ctl.log"
	echo "system-test: DPU console ($name, last lines):"
	tail -n 12 "$run/dpu/console.log" | sed 's/^/  /'
	return 0
}

if [ "${1:-}" = --bench ]; then
	system bench-serial bench
	system bench-vsock vsock-bench --vsock
else
	system serial "first second"
	system vsock vsock --vsock
fi
echo "system-test: $([ $rc = 0 ] && echo ok || echo FAILED) in $(( $(date +%s) - t0 )) s"
exit $rc
