#!/usr/bin/env bash
# Runs the series' kernel selftests in the VM:
#
#   bpf/kernel/tests/run.sh [--debug | --kernel BZIMAGE]
#
# The selftests are part of the series (patches 3, 5, 7 and 9:
# tools/testing/selftests/drivers/net/netdevsim/bpf-flow-ops.sh,
# bpf-fib-ops.sh and their BPF programs); netdevsim's own fib.sh and
# nexthop.sh run too, to show that without a FIB firmware netdevsim behaves
# as before. This
# builds the test kernel (or takes it from the cache), builds and installs
# the netdevsim selftests from the kernel's patched source tree
# with kselftest's own `make install` (BPF programs compiled with clang
# against the kernel's BTF), then boots the kernel with bpf/vm/run.sh and
# runs them there through run_kselftest.sh (ksft-in-vm.sh).
#
# --debug uses the lockdep kernel; --kernel a kernel built elsewhere, either
# in a cache entry (<cache>/<hash>/bzImage: source tree in
# <cache>/build-<hash>/linux, BTF from vmlinux.btf) or in a build tree
# (<tree>/arch/x86/boot/bzImage: BTF from <tree>/vmlinux).
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
for p in clang bpftool make strace ethtool python3 jq netsniff-ng; do
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
dir=$(dirname "$kernel")
if [ -f "$dir/vmlinux.btf" ]; then # a cache entry
	btf=$dir/vmlinux.btf
	tree=$(dirname "$dir")/build-$(basename "$dir")/linux
else # a build tree's arch/<arch>/boot/bzImage
	tree=$(realpath "$dir/../../..")
	btf=$tree/vmlinux
fi
if [ ! -f "$tree/tools/testing/selftests/drivers/net/netdevsim/bpf-flow-ops.sh" ]; then
	echo "run.sh: no patched source tree at $tree (rebuild it: bpf/kernel/build.sh --force)" >&2
	exit 1
fi

out=$(mktemp -d /tmp/nsim-flow-ops.XXXXXX)
echo "run.sh: building the selftest from $tree" >&2
# net/forwarding: the libraries netdevsim's fib.sh sources (which also wants
# mausezahn, from netsniff-ng, and jq).
make -s -C "$tree/tools/testing/selftests" TARGETS="drivers/net/netdevsim net/forwarding" \
	O="$out/build" KSFT_INSTALL_PATH="$out/ksft" VMLINUX_BTF="$btf" \
	install >&2

# nexthop.sh without its resilient-group timer cases: they sleep a few
# seconds against idle and unbalanced timers of a few seconds more, and
# under TCG the commands between the sleeps take longer than the margin
# (three of them failed so here, with no firmware attached). Its other
# cases, bucket replace and force-migration included, run.
nh_tests=$(sed -n '/^ALL_TESTS="/,/^"/p' "$tree/tools/testing/selftests/drivers/net/netdevsim/nexthop.sh" |
	grep -v '^ALL_TESTS\|^"\|_timer_' | tr -d '\t' | tr '\n' ' ')
[ -n "$nh_tests" ] || { echo "run.sh: no cases found in nexthop.sh" >&2; exit 1; }

# Four kselftests, fib.sh the longest (netdevsim sleeps 1 ms per route).
exec "$HERE/../../vm/run.sh" --kernel "$kernel" --out "$out/vm" --timeout 1800 \
	"$HERE/ksft-in-vm.sh" "$out/ksft" drivers/net/netdevsim:bpf-flow-ops.sh \
	drivers/net/netdevsim:bpf-fib-ops.sh drivers/net/netdevsim:fib.sh \
	"TESTS=$nh_tests" drivers/net/netdevsim:nexthop.sh
