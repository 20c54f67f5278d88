#!/usr/bin/env bash
# The tests that need the test kernel (bridge, VXLAN, netdevsim and the
# struct_ops series), in a VM under virtme-ng: builds the kernel or takes it
# from the cache (bpf/kernel/build.sh, keyed by a hash of its inputs), then
#  - qemu-tests/vm/mirror-bridge.sh: host-bridge mirrors a VLAN-filtering
#    bridge with FDB entries and a VXLAN port into the agent; the DPU
#    hardware is compared with bridge -j / ip -j after each change;
#  - qemu-tests/vm/notifier-taps.sh: every notifier tap's records against
#    ip -j / bridge -j / sysctl; a link going down with routes on it
#    leaves the DPU equal to the kernel with no re-dump; a tiny tap ring
#    buffer overflows, and the loss is counted and repaired;
#  - qemu-tests/vm/netdevsim-firmware.sh: host-bridge loads the BPF
#    firmware onto a netdevsim device; tc flower skip_sw rules reach the DPU
#    hardware, its counters come back into tc -s, a full DPU table gives
#    ENOSPC, a firmware the verifier refuses gives a clear error, a pinned
#    firmware survives a host-bridge kill and is adopted on restart;
#  - qemu-tests/vm/fib-offload.sh: host-bridge attaches the FIB firmware
#    to a netdevsim device; more routes than the DPU holds: rt_offload on
#    exactly the routes the DPU hardware holds, rt_offload_failed on the
#    refused ones, refused routes flip once room frees (announced with
#    fib_notify_on_flag_change), netdevsim's trap flags once host-bridge
#    stops;
#  - qemu-tests/vm/frr-offload.sh: FRR (zebra -A, staticd, bgpd with a
#    peer in another netns) on the same setup: vtysh's "offloaded" marks
#    equal the DPU hardware table, refused routes flip once room frees;
#  - bpf/kernel/tests/run.sh: the series' kselftests for the netdevsim
#    struct_ops (drivers/net/netdevsim/bpf-flow-ops.sh, bpf-fib-ops.sh) and
#    netdevsim's own fib.sh and nexthop.sh.
#
#   bash qemu-tests/vm-tests.sh [--debug]
#
# --debug runs them on the lockdep kernel (bpf/kernel/build.sh --debug:
# PROVE_LOCKING, PROVE_RCU, DEBUG_ATOMIC_SLEEP, DEBUG_NET, refcount
# trackers), where the VM runner fails a test on any splat in dmesg. That
# kernel is a second ~20 min build on a fresh machine, so it is a separate,
# slower suite, not part of qemu-tests/run.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$(date +%s)
build_args=()
case ${1:-} in
--debug) build_args+=(--debug) ;;
"") ;;
*) echo "vm-tests.sh: unknown argument $1" >&2; exit 2 ;;
esac
kernel=$(bash bpf/kernel/build.sh ${build_args[@]+"${build_args[@]}"} | tail -n 1)
# FRR for frr-offload.sh (the VM shares this machine's root file system).
if ! dpkg-query -W -f='${Status}' frr 2>/dev/null | grep -q 'ok installed'; then
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends frr >&2
fi
echo "vm-tests: kernel $kernel ready after $(( $(date +%s) - t0 )) s"
cargo build --quiet --locked -p dpu-agent -p dpu-hw -p host-bridge -p qemu-tests --bins
# A firmware the verifier must refuse, for netdevsim-firmware.sh.
objs=$(mktemp -d /tmp/dpu-fw-tests.XXXXXX)
clang -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -I bpf/firmware \
    -c bpf/firmware/tests/bad_fw.bpf.c -o "$objs/bad_fw.bpf.o"
passed=0
failed=0
failures=()
# The kselftests first: the series' own checks fail early.
for t in "bpf/kernel/tests/run.sh --kernel $kernel" \
    "bpf/vm/run.sh --kernel $kernel qemu-tests/vm/mirror-bridge.sh" \
    "bpf/vm/run.sh --kernel $kernel qemu-tests/vm/notifier-taps.sh" \
    "bpf/vm/run.sh --kernel $kernel qemu-tests/vm/netdevsim-firmware.sh $objs/bad_fw.bpf.o" \
    "bpf/vm/run.sh --kernel $kernel qemu-tests/vm/fib-offload.sh" \
    "bpf/vm/run.sh --kernel $kernel qemu-tests/vm/frr-offload.sh"; do
    echo "vm-tests: $t"
    # Through a pipe: something in the VM stack reopens its stdout
    # truncating, which wiped earlier output when stdout was a file.
    out=$(mktemp /tmp/vm-test-out.XXXXXX)
    if bash $t 2>&1 | tee "$out"; then
        passed=$((passed + 1))
        rm -f "$out"
    else
        failed=$((failed + 1))
        failures+=("$t:$out")
        echo "vm-tests: FAILED: $t"
    fi
done
# The failures again at the end, where a CI summary that keeps only the
# last part of the output still shows them.
for f in ${failures[@]+"${failures[@]}"}; do
    echo "vm-tests: FAILED: ${f%:*}; its last lines:"
    tail -n 40 "${f##*:}" | sed 's/^/    /'
done
echo "vm-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
