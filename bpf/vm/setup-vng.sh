#!/usr/bin/env bash
# Installs what the VM runner needs and prints the path of virtme-ng's `vng`
# on stdout; `--version` prints the pinned virtme-ng version instead.
# Idempotent, and quick when everything is there.
#
# virtme-ng (pinned) goes into a venv under the kernel cache. The apt
# packages are QEMU for the VM; udev, whose udevd the guest runs to name
# virtme-ng's virtio-serial ports (without it the script's output and exit
# status are lost); and ethtool, iproute2, bpftool and strace, which the guest
# scripts run: the guest sees the host's root filesystem, so its tools are
# the host's. Used by bpf/kernel/build.sh (virtme-configkernel) and
# bpf/vm/run.sh (vng).
set -euo pipefail

VNG_VERSION=1.42
CACHE=${DPU_KERNEL_CACHE:-/var/cache/dpu-kernel}
VENV=$CACHE/vng-venv-$VNG_VERSION

if [ "${1:-}" = --version ]; then
	echo "$VNG_VERSION"
	exit 0
fi

need=()
for p in python3-venv python3-pip qemu-system-x86 busybox-static udev strace \
	ethtool iproute2 bpftool; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "setup-vng: apt-get install ${need[*]}" >&2
	apt-get update >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${need[@]}" >&2
fi

if [ ! -f "$VENV/.complete" ]; then
	mkdir -p "$CACHE"
	rm -rf "$VENV"
	/usr/bin/python3 -m venv "$VENV" >&2
	"$VENV/bin/pip" install -q "virtme-ng==$VNG_VERSION" >&2
	touch "$VENV/.complete"
fi
echo "$VENV/bin/vng"
