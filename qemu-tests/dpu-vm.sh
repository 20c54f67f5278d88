#!/usr/bin/env bash
# Boots a DPU image in QEMU, as the simulated board: qemu-system-aarch64
# -M virt (TCG), the image's kernel and initramfs, the forwarding hardware
# as an ivshmem-plain PCI BAR over the board's memory file, and the host
# channels.
#
#   qemu-tests/dpu-vm.sh [options] IMAGE_DIR RUN_DIR
#
#   IMAGE_DIR  what cross/build-image.sh printed
#   RUN_DIR    the board's state: board.mem (the hardware, created blank
#              at the manifest's size if missing, kept across boots),
#              console.log, qemu.pid, and the channel sockets: the
#              virtio-serial port's chardev is RUN_DIR/serial.sock, which
#              QEMU listens on; the host side (host-bridge --agent
#              unix:RUN_DIR/serial.sock, or a relay to another VM) connects
#   --vsock    a vsock device: vhost-device-vsock (qemu-tests/setup-vsock.sh)
#              started for this VM, a host process reaching the guest
#              through RUN_DIR/vsock.uds (host-bridge --agent
#              hvsock:RUN_DIR/vsock.uds:PORT); guest memory becomes a
#              shared memfd, as vhost-user needs
#   --vsock-sock PATH  instead, a vhost-user-vsock device over an already
#              running vhost-device-vsock's socket PATH (sibling VMs)
#   --cid N    the guest CID for --vsock (default 3)
#   --cpus N   (default 1)   --memory SIZE (default 256M)
#   --append ARGS  more kernel command line (e.g. dpu.cold=1)
#   --foreground   run QEMU in the foreground (default: daemonised; the
#              script returns once the agent is up, see below)
#   --wait-for REGEX  with the default daemonised start, wait until the
#              console shows REGEX (default: the agent's first "opened" or
#              "listening" line) and print the seconds since QEMU started
#   --timeout SEC  for --wait-for (default 60)
#
# Stop it with: kill $(cat RUN_DIR/qemu.pid) (and RUN_DIR/vsock.pid)
set -euo pipefail

vsock=0 vsock_sock= cid=3 cpus=1 memory=256M append= fg=0
wait_re='(opened serial:|listening on)'
timeout_s=60
while [ $# -gt 0 ]; do
	case $1 in
	--vsock) vsock=1; shift ;;
	--vsock-sock) vsock_sock=$2; shift 2 ;;
	--cid) cid=$2; shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--memory) memory=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--foreground) fg=1; shift ;;
	--wait-for) wait_re=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "dpu-vm.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# = 2 ] || { echo "usage: dpu-vm.sh [options] IMAGE_DIR RUN_DIR" >&2; exit 2; }
img=$(realpath "$1")
run=$2
mkdir -p "$run"
run=$(realpath "$run")
[ -f "$img/manifest.json" ] || { echo "dpu-vm.sh: $img has no manifest.json" >&2; exit 2; }
command -v qemu-system-aarch64 >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-arm >&2
}

size_mib=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hardware"]["size_mib"])' \
	"$img/manifest.json")
port_name=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["channels"]["serial_port_name"])' \
	"$img/manifest.json")
# The board's memory: blank (zero) the first time; the agent formats it.
[ -f "$run/board.mem" ] || truncate -s "${size_mib}M" "$run/board.mem"

machine=virt
if [ $vsock = 1 ]; then
	backend=$(bash "$(dirname "$0")/setup-vsock.sh")
	if ! kill -0 "$(cat "$run/vsock.pid" 2>/dev/null)" 2>/dev/null; then
		rm -f "$run/vhost-vsock.sock" "$run/vsock.uds"
		"$backend" --guest-cid "$cid" --socket "$run/vhost-vsock.sock" --uds-path "$run/vsock.uds" \
			>>"$run/vsock.log" 2>&1 </dev/null &
		echo $! >"$run/vsock.pid"
		for _ in $(seq 100); do [ -S "$run/vhost-vsock.sock" ] && break; sleep 0.05; done
	fi
	vsock_sock=$run/vhost-vsock.sock
fi
[ -z "$vsock_sock" ] || machine=virt,memory-backend=mem
# -nic none: the board has no network card of its own (the virt machine
# would add a virtio-net one, whose option ROM a minimal qemu install lacks).
args=(-M "$machine" -cpu cortex-a57 -smp "$cpus" -m "$memory" -display none -nic none -no-reboot
	-kernel "$img/Image.gz" -initrd "$img/initramfs.cpio.gz"
	-append "$(cat "$img/cmdline") $append"
	-object "memory-backend-file,id=hwmem,mem-path=$run/board.mem,size=${size_mib}M,share=on"
	-device ivshmem-plain,memdev=hwmem
	-device virtio-serial-pci,id=vser)
rm -f "$run/serial.sock"
args+=(-chardev "socket,id=agentport,path=$run/serial.sock,server=on,wait=off")
args+=(-device "virtserialport,bus=vser.0,chardev=agentport,name=$port_name")
if [ -n "$vsock_sock" ]; then
	args+=(-object "memory-backend-memfd,id=mem,size=$memory,share=on"
		-chardev "socket,id=vsockdev,path=$vsock_sock"
		-device "vhost-user-vsock-pci,chardev=vsockdev")
fi

if [ $fg = 1 ]; then
	exec qemu-system-aarch64 "${args[@]}" -serial mon:stdio
fi
: >"$run/console.log"
start=$(date +%s.%N)
qemu-system-aarch64 "${args[@]}" -serial "file:$run/console.log" -monitor none \
	-daemonize -pidfile "$run/qemu.pid" </dev/null
deadline=$(($(date +%s) + timeout_s))
while ! grep -qE "$wait_re" "$run/console.log" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ] || ! kill -0 "$(cat "$run/qemu.pid" 2>/dev/null)" 2>/dev/null; then
		echo "dpu-vm.sh: the console did not show /$wait_re/ within ${timeout_s}s:" >&2
		tail -n 30 "$run/console.log" >&2
		exit 1
	fi
	sleep 0.05
done
printf 'dpu-vm: up %.2f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
