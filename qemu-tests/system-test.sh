#!/usr/bin/env bash
# The two-VM system test: a host VM and a DPU VM joined by virtio-serial,
# both under TCG.
#
#   bash qemu-tests/system-test.sh           the test (run by qemu-tests/run.sh)
#   bash qemu-tests/system-test.sh --bench   figures instead: latency from
#       ip route add in the host VM to the DPU hardware (p50, p99 over
#       1,000 adds) and update throughput over virtio-serial between the VMs
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
phases="first second"
[ "${1:-}" = --bench ] && phases=bench
t0=$(date +%s)
kernel=$(bash bpf/kernel/build.sh | tail -n 1)
image=$(bash cross/build-image.sh qemu-virt | tail -n 1)
cargo build --quiet --locked -p dpu-hw -p host-bridge -p qemu-tests --bins
run=$(mktemp -d /tmp/dpu-system.XXXXXX)
echo "system-test: kernel $kernel, image $image, run dir $run ($(( $(date +%s) - t0 )) s)"

target/debug/system-ctl "$run" "$image" 2>"$run/system-ctl.log" &
ctl_pid=$!
cleanup() {
	kill $ctl_pid 2>/dev/null || true
	[ -f "$run/dpu/qemu.pid" ] && kill -9 "$(cat "$run/dpu/qemu.pid")" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 600); do
	grep -q "DPU VM: dpu-vm: up" "$run/system-ctl.log" 2>/dev/null && break
	kill -0 $ctl_pid 2>/dev/null || { cat "$run/system-ctl.log"; exit 1; }
	sleep 0.1
done
grep "DPU VM" "$run/system-ctl.log"

qemu_opts=(
	--vng-arg "--qemu-opts=-device virtio-serial-pci,id=dpuser"
	--vng-arg "--qemu-opts=-chardev socket,id=dpulink,path=$run/host-serial.sock,server=on,wait=off"
	--vng-arg "--qemu-opts=-device virtserialport,bus=dpuser.0,chardev=dpulink,name=org.dpu.agent.0"
	--vng-arg "--qemu-opts=-chardev socket,id=dpuctl,path=$run/ctl.sock,server=on,wait=off"
	--vng-arg "--qemu-opts=-device virtserialport,bus=dpuser.0,chardev=dpuctl,name=org.dpu.test.ctl"
)
rc=0
for phase in $phases; do
	echo "system-test: host VM boot ($phase)"
	# Through a pipe, as vm-tests.sh does.
	if ! bash bpf/vm/run.sh --kernel "$kernel" --name host-vm --out "$run/host-$phase" \
		"${qemu_opts[@]}" qemu-tests/vm/system.sh "$phase" 2>&1 | cat; then
		rc=1
	fi
done
echo "system-test: system-ctl log:"
sed 's/^/  /' "$run/system-ctl.log"
echo "system-test: DPU console (last lines):"
tail -n 15 "$run/dpu/console.log" | sed 's/^/  /'
echo "system-test: $([ $rc = 0 ] && echo ok || echo FAILED) in $(( $(date +%s) - t0 )) s"
exit $rc
