#!/usr/bin/env bash
# Runs the kernel series' functional test in the VM:
#
#   bpf/kernel/tests/run.sh [--debug | --kernel BZIMAGE]
#
# Builds the test kernel (or takes it from the cache), compiles the test
# programs against that kernel's BTF with clang, then boots it with
# bpf/vm/run.sh and runs nsim-flow-ops.sh inside. --debug uses the lockdep
# kernel; --kernel a kernel built elsewhere, either in a cache entry (BTF
# from its vmlinux.btf) or in a build tree (BTF from the tree's vmlinux).
# Exit status: the VM runner's (the test's, or a dmesg splat).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build_args=()
kernel=
case ${1:-} in
--debug) build_args+=(--debug) ;;
--kernel) kernel=$(realpath "$2") ;;
esac

need=()
for p in clang libbpf-dev bpftool; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${need[@]}" >&2
fi

if [ -z "$kernel" ]; then
	kernel=$("$HERE/../build.sh" ${build_args[@]+"${build_args[@]}"} | tail -n 1)
fi
btf=$(dirname "$kernel")/vmlinux.btf
[ -f "$btf" ] || btf=$(dirname "$kernel")/../../../vmlinux
out=$(mktemp -d /tmp/nsim-flow-ops.XXXXXX)
bpftool btf dump file "$btf" format c >"$out/vmlinux.h"

cc() { # cc OUTPUT SOURCE [CFLAGS...]
	local o=$1 src=$2
	shift 2
	clang -g -O2 -target bpf -D__TARGET_ARCH_x86 -I "$out" "$@" \
		-c "$HERE/$src" -o "$out/$o"
}
cc nsim_flow_ops.bpf.o nsim_flow_ops.bpf.c
cc nsim_flow_ops_dev11.bpf.o nsim_flow_ops.bpf.c -DDEV_ID=11
cc bad_sleepable.bpf.o nsim_flow_ops_bad.bpf.c -DBAD_SLEEPABLE
cc bad_write.bpf.o nsim_flow_ops_bad.bpf.c -DBAD_WRITE
cc bad_kfunc_caller.bpf.o nsim_flow_ops_bad.bpf.c -DBAD_KFUNC_CALLER

exec "$HERE/../../vm/run.sh" --kernel "$kernel" --out "$out/vm" \
	"$HERE/nsim-flow-ops.sh" "$out"
