#!/usr/bin/env bash
# Builds the DPU image for a board: the thing a user flashes onto the
# DPU's SoC, in the manner of a BlueField BFB bundle.
#
#   cross/build-image.sh [BOARD] [--force]      (default board: qemu-virt)
#
# The image is Debian's arm64 cloud kernel (pinned in the board config's
# [image] section) and an initramfs holding busybox, the static agent
# built for the board (cross/build-agent.sh), the board config, the
# modules for virtio, virtio-serial and vsock, and a small init
# (cross/image/init) that finds the channels and the hardware BAR and
# supervises the agent.
#
# Output, in $DPU_IMAGE_CACHE/<board>-<hash>/ (default /var/cache/dpu-image):
#   dpu-image-<board>.tar   the bundle: manifest.json, Image.gz, initramfs.cpio.gz
#   manifest.json           board, agent and protocol version, kernel, boot
#                           command line, hardware and channels, and the
#                           sha256 of every file and input
#   Image.gz, initramfs.cpio.gz, cmdline   the same, unpacked (for QEMU)
# <hash> is a sha256 over the inputs: the two .debs, the agent binary, the
# board config, the init and this script. A second run with the same
# inputs returns at once (the agent build is incremental).
#
# stdout: the image directory, as the last (only) line. Everything else:
# stderr. Needs root (apt-get, mknod) and what cross/setup.sh installs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
exec 3>&1 1>&2

board=qemu-virt
force=0
for arg in "$@"; do
	case $arg in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	-*) echo "build-image.sh: unknown option $arg" >&2; exit 2 ;;
	*) board=$arg ;;
	esac
done
conf=board-configs/$board.toml
[ -f "$conf" ] || { echo "build-image.sh: no $conf" >&2; exit 2; }
CACHE=${DPU_IMAGE_CACHE:-/var/cache/dpu-image}
log() { echo "build-image.sh: $*" >&2; }

# The board's [image] and [channel] sections, as shell variables.
eval "$(python3 - "$conf" <<'EOF'
import shlex, sys, tomllib
b = tomllib.load(open(sys.argv[1], "rb"))
img = b.get("image")
if img is None:
    sys.exit(f"{sys.argv[1]}: no [image] section: this board has no DPU image")
ch = b.get("channel", {})
v = {
    "BOARD": b["board"]["name"],
    "KERNEL_PACKAGE": img["kernel_package"],
    "KERNEL_VERSION": img["kernel_version"],
    "BUSYBOX_VERSION": img["busybox_version"],
    "CONSOLE": img.get("console", "ttyAMA0"),
    "MODULES": " ".join(img.get("modules", [])),
    "HW_PCI_ID": img["hw_pci_id"],
    "HW_BAR": str(img["hw_bar"]),
    "HW_SIZE_MIB": str(img["hw_size_mib"]),
    "SERIAL_PORT_NAME": ch.get("serial_port_name", "org.dpu.agent.0"),
    "VSOCK_PORT": str(ch.get("vsock_port", 5000)),
    "VSOCK_HOST_CID": str(ch.get("vsock_host_cid", 2)),
}
for k, x in v.items():
    print(f"{k}={shlex.quote(x)}")
EOF
)"

# ---- Inputs ------------------------------------------------------------------
agent=$(bash cross/build-agent.sh "$board" | tail -n 1)
agent_version=$(sed -n 's/^version = "\(.*\)"/\1/p' agent/Cargo.toml | head -1)
protocol=$(sed -n 's/^pub const VERSION: Version = Version { major: \([0-9]*\), minor: \([0-9]*\) };/\1.\2/p' \
	agent/wire/src/lib.rs)

debs=$CACHE/debs
mkdir -p "$debs"
dpkg --print-foreign-architectures | grep -qx arm64 || {
	log "dpkg --add-architecture arm64"
	dpkg --add-architecture arm64
	apt-get update -qq
}
for p in cpio gzip kmod python3; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >&2
done
# The cached .deb of PACKAGE:arm64 at VERSION, if there is one.
cached_deb() {
	ls "$debs/${1}_"*"_arm64.deb" 2>/dev/null | while read -r d; do
		[ "$(dpkg-deb -f "$d" Version)" = "$2" ] && echo "$d"
	done | head -1
}
# Downloads PACKAGE:arm64 at VERSION into the cache (once); falls back to
# the newest version apt has, with a warning, when the pin is gone.
# Prints the .deb's path (and nothing else on stdout).
fetch_deb() {
	local pkg=$1 ver=$2 f versions
	f=$(cached_deb "$pkg" "$ver")
	if [ -z "$f" ]; then
		versions=$(apt-cache madison "$pkg:arm64" 2>/dev/null | awk '{print $3}')
		if ! grep -qxF "$ver" <<<"$versions"; then
			apt-get update -qq >&2
			versions=$(apt-cache madison "$pkg:arm64" | awk '{print $3}')
		fi
		if ! grep -qxF "$ver" <<<"$versions"; then
			local newest=${versions%%$'\n'*}
			[ -n "$newest" ] || { log "$pkg:arm64 is not in apt"; exit 1; }
			log "WARNING: $pkg:arm64 $ver is gone from apt; using $newest (update the board config's pin)"
			ver=$newest
		fi
		(cd "$debs" && apt-get download -qq "$pkg:arm64=$ver" >&2 2>/dev/null) ||
			(cd "$debs" && apt-get download "$pkg:arm64=$ver" >&2) ||
			{ log "apt-get download $pkg:arm64=$ver failed"; exit 1; }
		f=$(cached_deb "$pkg" "$ver")
	fi
	[ -n "$f" ] || { log "no $pkg:arm64 $ver in $debs after the download"; exit 1; }
	echo "$f"
}
kdeb=$(fetch_deb "$KERNEL_PACKAGE" "$KERNEL_VERSION")
bdeb=$(fetch_deb busybox-static "$BUSYBOX_VERSION")
[ -f "$kdeb" ] && [ -f "$bdeb" ] || { log "the arm64 packages are missing"; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
inputs() {
	echo "board $BOARD $(sha "$conf")"
	echo "kernel $(basename "$kdeb") $(sha "$kdeb")"
	echo "busybox $(basename "$bdeb") $(sha "$bdeb")"
	echo "agent $agent_version $(sha "$agent")"
	echo "init $(sha cross/image/init)"
	echo "script $(sha "$0")"
}
hash=$(inputs | sha256sum | cut -d' ' -f1)
out=$CACHE/$board-$hash
if [ $force = 0 ] && [ -f "$out/manifest.json" ]; then
	log "cache hit: $out"
	echo "$out" >&3
	exit 0
fi

# ---- Build -------------------------------------------------------------------
start=$(date +%s.%N)
work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$kdeb" "$work/k"
kver=$(ls "$work/k/lib/modules")
depmod -b "$work/k" "$kver"

r=$work/root
mkdir -p "$r"/{bin,sbin,dev,proc,sys,run,tmp,etc/dpu,lib/modules}
dpkg-deb -x "$bdeb" "$work/bb"
cp "$work/bb/bin/busybox" "$r/bin/busybox"
# The applet links, made here rather than by `busybox --install` at every
# boot (a few hundred syscalls under TCG).
qemu-aarch64-static "$r/bin/busybox" --list | while read -r applet; do
	[ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
done
cp cross/image/init "$r/init"
cp "$agent" "$r/sbin/dpu-agent"
cp "$conf" "$r/etc/dpu/board.toml"
mknod -m 600 "$r/dev/console" c 5 1

# The modules and their dependencies, in load order, each once.
: >"$r/etc/dpu/modules"
for m in $MODULES; do
	/sbin/modprobe -d "$work/k" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
	rel=${ko#"$work/k/lib/modules/$kver/"}
	mkdir -p "$r/lib/modules/$(dirname "$rel")"
	cp "$ko" "$r/lib/modules/$rel"
	echo "$rel" >>"$r/etc/dpu/modules"
done
[ -s "$r/etc/dpu/modules" ] || { log "no modules resolved from: $MODULES"; exit 1; }

cat >"$r/etc/dpu/image.conf" <<EOF
BOARD='$BOARD'
AGENT_VERSION='$agent_version'
SERIAL_PORT_NAME='$SERIAL_PORT_NAME'
VSOCK_PORT='$VSOCK_PORT'
VSOCK_HOST_CID='$VSOCK_HOST_CID'
HW_PCI_ID='$HW_PCI_ID'
HW_BAR='$HW_BAR'
EOF

# Reproducible archives: fixed times, sorted names, numeric owners.
find "$r" -exec touch -h -d @0 {} +
(cd "$r" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --reproducible -R 0:0) |
	gzip -9n >"$work/initramfs.cpio.gz"
gzip -9nc "$work/k/boot/vmlinuz-$kver" >"$work/Image.gz"
# cryptomgr.notests: the kernel's crypto self-tests took 0.45 s of a
# 2.5 s boot under TCG (initcall_debug); nothing on the DPU's path to the
# agent uses kernel crypto.
cmdline="console=$CONSOLE rdinit=/init quiet panic=-1 cryptomgr.notests"
echo "$cmdline" >"$work/cmdline"

python3 - "$work" <<EOF
import json, hashlib, os, sys
w = sys.argv[1]
def f(name):
    p = os.path.join(w, name)
    return {"size": os.path.getsize(p), "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
inputs = {}
for line in """$(inputs)""".splitlines():
    k, *rest = line.split()
    inputs[k] = " ".join(rest)
m = {
    "board": "$BOARD",
    "agent_version": "$agent_version",
    "protocol": "$protocol",
    "image_hash": "$hash",
    "kernel": {"package": "$(basename "$kdeb")", "release": "$kver"},
    "cmdline": "$cmdline",
    "files": {n: f(n) for n in ["Image.gz", "initramfs.cpio.gz"]},
    "modules": open(os.path.join(w, "root/etc/dpu/modules")).read().split(),
    "hardware": {"pci_id": "$HW_PCI_ID", "bar": $HW_BAR, "size_mib": $HW_SIZE_MIB},
    "channels": {
        "serial_port_name": "$SERIAL_PORT_NAME",
        "vsock_port": $VSOCK_PORT,
        "vsock_host_cid": $VSOCK_HOST_CID,
    },
    "inputs": inputs,
}
json.dump(m, open(os.path.join(w, "manifest.json"), "w"), indent=2)
open(os.path.join(w, "manifest.json"), "a").write("\n")
EOF
touch -d @0 "$work/manifest.json" "$work/Image.gz" "$work/initramfs.cpio.gz"
tar -C "$work" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
	-cf "$work/dpu-image-$board.tar" manifest.json Image.gz initramfs.cpio.gz

tmp=$out.tmp.$$
rm -rf "$tmp"
mkdir -p "$tmp"
mv "$work/dpu-image-$board.tar" "$work/manifest.json" "$work/Image.gz" "$work/initramfs.cpio.gz" \
	"$work/cmdline" "$tmp/"
rm -rf "$out"
mv "$tmp" "$out"
# Keep the three newest images of this board (each is ~22 MB).
ls -dt "$CACHE/$board"-* 2>/dev/null | grep -v '\.tmp\.' | tail -n +4 | xargs -r rm -rf
size=$(stat -c %s "$out/dpu-image-$board.tar")
log "built $out in $(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)") s:" \
	"dpu-image-$board.tar $size bytes ($((size / 1024)) KiB)"
echo "$out" >&3
