#!/usr/bin/env bash
# Builds the test kernel for the netdevsim BPF firmware: Debian's pinned
# linux-source-6.12, plus the series in bpf/kernel/patches/, configured with
# virtme-ng's default config plus config.fragment and trim.fragment (and debug.fragment with
# --debug), everything built in.
#
#   bpf/kernel/build.sh [--debug] [--force]
#
# The result is cached in $DPU_KERNEL_CACHE/<hash>/ (default
# /var/cache/dpu-kernel), where <hash> is a sha256 over the exact source
# package version, the virtme-ng version, the patches (not the cover
# letter), the fragments and this script. A second run with the same inputs finds it and returns at once.
# Compiler output is also cached (ccache, in $DPU_KERNEL_CACHE/ccache), so a
# rebuild after a change to the series recompiles only what the change
# touches. The cache entry holds bzImage, config, System.map, vmlinux.btf (raw BTF,
# for `bpftool btf dump file vmlinux.btf format c`) and inputs.txt. The build
# tree stays in $DPU_KERNEL_CACHE/build-<hash>/linux (the kselftest is built
# from it) for the newest build of each variant; older trees are removed.
#
# stdout: the bzImage path, as the last (only) line. Everything else: stderr.
#
# Environment:
#   DPU_KERNEL_CACHE           cache root (default /var/cache/dpu-kernel)
#   DPU_KERNEL_SOURCE_VERSION  linux-source-6.12 version (default: the pin)
#   DPU_KERNEL_STRICT_PIN=1    fail instead of falling back to the newest
#                              linux-source-6.12 when the pin is gone from apt
#   DPU_KERNEL_JOBS            make -j (default: nproc)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${DPU_KERNEL_CACHE:-/var/cache/dpu-kernel}
SRC_PKG=linux-source-6.12
SRC_TARBALL=/usr/src/linux-source-6.12.tar.xz
PIN=6.12.117-1~deb12u1
SRC_VERSION=${DPU_KERNEL_SOURCE_VERSION:-$PIN}
JOBS=${DPU_KERNEL_JOBS:-$(nproc)}
SETUP_VNG=$HERE/../vm/setup-vng.sh

exec 3>&1 1>&2 # stdout is for the result only

debug=0
force=0
for arg in "$@"; do
	case $arg in
	--debug) debug=1 ;;
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

log() { echo "build.sh: $*" >&2; }

fragments=("$HERE/config.fragment" "$HERE/trim.fragment")
variant=default
if [ $debug = 1 ]; then
	fragments+=("$HERE/debug.fragment")
	variant=debug
fi
shopt -s nullglob
patches=("$HERE"/patches/*.patch)
shopt -u nullglob
# Glob order is locale-dependent; apply in byte order of the file names.
if [ ${#patches[@]} -gt 0 ]; then
	mapfile -t patches < <(printf '%s\n' "${patches[@]}" | LC_ALL=C sort)
fi

# The manifest of everything the kernel depends on; its sha256 names the
# cache entry.
manifest() {
	local f
	echo "variant $variant"
	echo "source $SRC_PKG $1"
	echo "virtme-ng $("$SETUP_VNG" --version)"
	echo "script $(sha256sum <"$0" | cut -d' ' -f1)"
	for f in "${fragments[@]}"; do
		echo "fragment $(basename "$f") $(sha256sum <"$f" | cut -d' ' -f1)"
	done
	# A cover letter (no diff) changes nothing that is built.
	for f in ${patches[@]+"${patches[@]}"}; do
		grep -q '^diff --git ' "$f" || continue
		echo "patch $(basename "$f") $(sha256sum <"$f" | cut -d' ' -f1)"
	done
}
hash_of() { manifest "$1" | sha256sum | cut -d' ' -f1; }

cached() {
	local out=$CACHE/$1
	if [ $force = 0 ] && [ -f "$out/bzImage" ]; then
		log "cache hit: $out ($variant, $SRC_PKG $2)"
		echo "$out/bzImage" >&3
		exit 0
	fi
}

hash=$(hash_of "$SRC_VERSION")
cached "$hash" "$SRC_VERSION"

# ---- Cache miss: install what the build needs -------------------------------
installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

need=()
for p in build-essential bc bison flex libelf-dev libssl-dev dwarves \
	python3-venv python3-pip rsync cpio kmod xz-utils patch binutils ccache; do
	is_installed "$p" || need+=("$p")
done
if [ "$(installed_version $SRC_PKG)" != "$SRC_VERSION" ] || [ ${#need[@]} -gt 0 ]; then
	log "apt-get update"
	apt-get update >&2
	if ! apt-cache madison "$SRC_PKG" | awk '{print $3}' | grep -qxF "$SRC_VERSION"; then
		avail=$(apt-cache madison "$SRC_PKG" | awk '{print $3}' | head -1)
		if [ -z "$avail" ]; then
			log "$SRC_PKG is not available from apt (bookworm-security carries it)"
			exit 1
		fi
		if [ "${DPU_KERNEL_STRICT_PIN:-0}" = 1 ]; then
			log "$SRC_PKG $SRC_VERSION is no longer available (newest: $avail)"
			exit 1
		fi
		log "WARNING: $SRC_PKG $SRC_VERSION is no longer available;" \
			"building $avail instead (patches may need a refresh)"
		SRC_VERSION=$avail
		hash=$(hash_of "$SRC_VERSION")
		cached "$hash" "$SRC_VERSION"
	fi
	log "apt-get install $SRC_PKG=$SRC_VERSION ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		--allow-downgrades "$SRC_PKG=$SRC_VERSION" ${need[@]+"${need[@]}"} >&2
fi
VNG=$("$SETUP_VNG")
CONFIGKERNEL=$(dirname "$VNG")/virtme-configkernel

# ---- One build per hash at a time -------------------------------------------
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock-$hash"
flock 9
cached "$hash" "$SRC_VERSION" # another run may have finished it meanwhile

out=$CACHE/$hash
build=$CACHE/build-$hash
tree=$build/linux
log "building $variant kernel $hash"
log "  source $SRC_PKG $SRC_VERSION, ${#patches[@]} patch(es), tree $tree"
start=$(date +%s)

# ---- Unpack and patch (redone from scratch unless it completed before) ------
if [ ! -f "$build/.prepared" ]; then
	rm -rf "$build"
	mkdir -p "$tree"
	log "unpacking $SRC_TARBALL"
	tar -xf "$SRC_TARBALL" -C "$tree" --strip-components=1
	for p in ${patches[@]+"${patches[@]}"}; do
		if ! grep -q '^diff --git ' "$p"; then
			log "skipping $(basename "$p") (no diff: cover letter)"
			continue
		fi
		log "applying $(basename "$p")"
		patch -d "$tree" -p1 --forward --batch --fuzz=0 \
			--no-backup-if-mismatch <"$p" >&2
	done
	manifest "$SRC_VERSION" >"$build/inputs.txt"
	touch "$build/.prepared"
fi

# ccache: paths inside the tree are relative, so entries are shared between
# build trees of different hashes.
export CCACHE_DIR=$CACHE/ccache CCACHE_BASEDIR=$tree CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-8G}
CC_ARG="CC=ccache gcc"

# ---- Configure: virtme-ng's defconfig + our fragments + olddefconfig -------
if [ ! -f "$build/.configured" ]; then
	log "configuring"
	custom=()
	for f in "${fragments[@]}"; do custom+=(--custom "$f"); done
	rm -f "$tree/.config"
	# Run from the tree; HOME is neutralised so no ~/.config/virtme-ng leaks in.
	(cd "$tree" && HOME=/nonexistent "$CONFIGKERNEL" --defconfig "${custom[@]}") >&2
	# Every option a fragment sets must have survived olddefconfig. A later
	# fragment overrides an earlier one, so only an option's last setting
	# counts.
	bad=0
	declare -A want=()
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*) want[${line%%=*}]=$line ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			want[${opt%% *}]=$line
			;;
		esac
	done < <(cat "${fragments[@]}")
	for opt in "${!want[@]}"; do
		line=${want[$opt]}
		case $line in
		CONFIG_*=*)
			if ! grep -qxF "$line" "$tree/.config"; then
				got=$(grep -E "^(# )?$opt[= ]" "$tree/.config" || echo "absent")
				log "config: wanted $line, got: $got"
				bad=1
			fi
			;;
		*)
			if grep -q "^$opt=" "$tree/.config"; then
				log "config: wanted $opt unset, got: $(grep "^$opt=" "$tree/.config")"
				bad=1
			fi
			;;
		esac
	done
	if [ $bad = 1 ]; then
		log "the config fragments did not apply cleanly (see above)"
		exit 1
	fi
	touch "$build/.configured"
fi

# ---- Build --------------------------------------------------------------------
log "make -j$JOBS bzImage (log: $build/build.log)"
if ! (cd "$tree" && nice -n 10 make -j"$JOBS" "$CC_ARG" bzImage) >"$build/build.log" 2>&1; then
	tail -n 60 "$build/build.log" >&2
	log "kernel build failed; full log in $build/build.log"
	exit 1
fi
tail -n 3 "$build/build.log" >&2
ccache --show-stats 2>/dev/null | grep -Ei '^ *(hits|misses|cacheable)' >&2 || true

# ---- Publish the cache entry atomically -----------------------------------------
tmp=$out.tmp.$$
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$tree/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$tree/.config" "$tmp/config"
cp "$tree/System.map" "$tmp/System.map"
objcopy --only-section=.BTF --dump-section .BTF="$tmp/vmlinux.btf" \
	"$tree/vmlinux" "$tmp/vmlinux.discard" 2>/dev/null
rm -f "$tmp/vmlinux.discard"
cp "$build/inputs.txt" "$tmp/inputs.txt"
echo "$tree" >"$tmp/build-tree"
rm -rf "$out"
mv "$tmp" "$out"
log "built in $(($(date +%s) - start)) s: $out"

# ---- Keep one build tree per variant ------------------------------------------
# A tree is ~5 GB; the cache entries (bzImage, BTF: ~20 MB) stay. Older
# trees of this variant go (ccache still holds their objects), unless a
# build of theirs is running.
for old in "$CACHE"/build-*; do
	[ "$old" = "$build" ] && continue
	grep -qx "variant $variant" "$old/inputs.txt" 2>/dev/null || continue
	h=${old##*/build-}
	exec 8>"$CACHE/.lock-$h"
	if flock -n 8; then
		log "removing the older $variant build tree $old"
		rm -rf "$old"
		rm -f "$CACHE/$h/build-tree"
	fi
	exec 8>&-
done
echo "$out/bzImage" >&3
