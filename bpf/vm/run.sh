#!/usr/bin/env bash
# Boots the test kernel under virtme-ng (QEMU TCG: no KVM here) and runs one
# script inside it, as root, on a read-only view of the host's root
# filesystem (so the repository is there at its host path).
#
#   bpf/vm/run.sh [options] SCRIPT [ARGS...]
#
#   --kernel BZIMAGE  kernel to boot (default: `bpf/kernel/build.sh`, which
#                     builds it or returns the cached one)
#   --debug           default kernel from `bpf/kernel/build.sh --debug`
#                     (lockdep); ignored with --kernel
#   --out DIR         results directory, writable from the guest
#                     (default: a new /tmp/dpu-vm.XXXXXX)
#   --rwdir DIR       another host directory the guest may write (repeatable)
#   --memory SIZE     guest memory (default 1G)
#   --cpus N          guest CPUs (default 2)
#   --timeout SEC     kill the VM after SEC seconds (default 900)
#   --name NAME       guest hostname (default dpu-vm)
#   --vng-arg ARG     extra argument for vng (repeatable)
#
# Inside the guest the script runs from the caller's working directory with
# VM_OUT set to the results directory (the only writable host path besides
# --rwdir ones; the rest of the host filesystem is read-only, /tmp is a
# guest tmpfs). After it ends, the guest's dmesg is saved to
# $VM_OUT/dmesg.txt and its exit status to $VM_OUT/rc; its output (stdout
# and stderr, merged) goes to this script's stdout and $VM_OUT/output.log.
#
# Exit status: the script's, if it failed; otherwise 1 when dmesg shows a
# kernel splat (WARNING:, BUG:, "possible circular locking", KASAN, "Call
# Trace", Oops, UBSAN, RCU stalls, hung tasks), 124 on timeout, 255 when the
# guest died without reporting (panic). VM_DMESG_IGNORE, an extended regex,
# drops matching dmesg lines from that check.
#
# The last line on stdout is "vm: ok <seconds>s <out dir>" or
# "vm: FAIL ...". The later two-VM system test reuses this runner: it starts
# two instances side by side (each with its own --name, --out and the
# vsock/virtio-serial plumbing passed through --vng-arg), so keep the
# interface stable and the instance state inside --out.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

kernel=
debug=0
out=
rwdirs=()
memory=1G
cpus=2
timeout_s=900
name=dpu-vm
vng_args=()

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift 2 ;;
	--debug) debug=1; shift ;;
	--out) out=$2; shift 2 ;;
	--rwdir) rwdirs+=("$2"); shift 2 ;;
	--memory) memory=$2; shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--vng-arg) vng_args+=("$2"); shift 2 ;;
	-h | --help) usage 0 ;;
	--) shift; break ;;
	-*) echo "run.sh: unknown option $1" >&2; usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
script=$(realpath "$1")
shift
[ -x "$script" ] || { echo "run.sh: $script is not an executable file" >&2; exit 2; }

if [ -z "$kernel" ]; then
	build_args=()
	[ $debug = 1 ] && build_args+=(--debug)
	kernel=$("$HERE/../kernel/build.sh" ${build_args[@]+"${build_args[@]}"} | tail -n 1)
fi
kernel=$(realpath "$kernel")
[ -f "$kernel" ] || { echo "run.sh: no kernel at $kernel" >&2; exit 2; }

vng=$("$HERE/setup-vng.sh")
PATH=$(dirname "$vng"):$PATH # vng runs virtme-run from PATH

if [ -z "$out" ]; then
	out=$(mktemp -d /tmp/dpu-vm.XXXXXX)
else
	mkdir -p "$out"
	out=$(realpath "$out")
fi
rm -f "$out/rc" "$out/dmesg.txt"

# The guest-side wrapper: run the script, then record its status and dmesg.
{
	echo '#!/bin/bash'
	printf 'export VM_OUT=%q DPU_IN_VM=1\n' "$out"
	printf 'cd %q || exit 2\n' "$PWD"
	printf '%q' "$script"
	for a in "$@"; do printf ' %q' "$a"; done
	echo ' 2>&1 | tee "$VM_OUT/output.log"'
	echo 'rc=${PIPESTATUS[0]}'
	echo 'dmesg >"$VM_OUT/dmesg.txt" 2>&1'
	echo 'echo $rc >"$VM_OUT/rc"'
	echo 'sync'
	echo 'exit $rc'
} >"$out/guest.sh"
chmod +x "$out/guest.sh"

rw=(--rwdir "$out")
for d in ${rwdirs[@]+"${rwdirs[@]}"}; do rw+=(--rwdir "$(realpath "$d")"); done

echo "vm: booting $kernel (out: $out)" >&2
start=$(date +%s.%N)
# A boot that fails before the guest script starts is retried, twice at
# most: either vng exits without the script having written anything (seen
# about once in ten back-to-back boots under TCG), or the boot hangs and
# the script has not started within VM_BOOT_LIMIT seconds (default 300;
# a boot takes 8 to 40 s here; a CI run once sat 1800 s on a boot that
# printed nothing). A script that started is never retried.
boot_limit=${VM_BOOT_LIMIT:-300}
for attempt in 1 2 3; do
	rm -f "$out/output.log"
	set +e
	timeout -k 15 "$timeout_s" "$vng" -r "$kernel" --disable-kvm --user root \
		--name "$name" --memory "$memory" --cpus "$cpus" "${rw[@]}" \
		${vng_args[@]+"${vng_args[@]}"} --exec "$out/guest.sh" </dev/null &
	vng_pid=$!
	hung=0
	for ((waited = 0; ; waited++)); do
		[ -f "$out/output.log" ] && break
		kill -0 "$vng_pid" 2>/dev/null || break
		if [ "$waited" -ge "$boot_limit" ]; then
			hung=1
			# timeout passes the signal on to vng's process group.
			kill -TERM "$vng_pid" 2>/dev/null
			break
		fi
		sleep 1
	done
	wait "$vng_pid"
	vng_rc=$?
	set -e
	if [ $hung = 0 ] && { [ -f "$out/rc" ] || [ -f "$out/output.log" ] || [ $vng_rc = 124 ] ||
		[ $vng_rc = 137 ]; }; then
		break
	fi
	if [ $hung = 1 ]; then
		echo "vm: the guest did not start the script within ${boot_limit}s (attempt $attempt)" >&2
	else
		echo "vm: the guest did not start the script (vng exit $vng_rc, attempt $attempt)" >&2
	fi
done
secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")

fail() {
	echo "vm: FAIL ($*) ${secs}s $out"
	exit "$status"
}

if [ $vng_rc = 124 ] || [ $vng_rc = 137 ] || [ $hung = 1 ]; then
	status=124
	if [ -s "$out/output.log" ]; then
		echo "vm: the script's last lines:" >&2
		tail -n 20 "$out/output.log" >&2
	fi
	[ $hung = 1 ] && fail "no boot in ${attempt} attempts"
	fail "timed out after ${timeout_s}s"
fi
if [ ! -f "$out/rc" ]; then
	status=255
	fail "the guest did not report (vng exit $vng_rc: panic or boot failure?)"
fi
rc=$(cat "$out/rc")

splat='WARNING:|BUG:|possible circular locking|KASAN|Call Trace|Oops|UBSAN:'
splat+='|rcu_sched self-detected stall|detected stalls on CPUs|blocked for more than'
hits=$(grep -nE "$splat" "$out/dmesg.txt" || true)
if [ -n "$hits" ] && [ -n "${VM_DMESG_IGNORE:-}" ]; then
	hits=$(grep -vE "$VM_DMESG_IGNORE" <<<"$hits" || true)
fi

if [ "$rc" != 0 ]; then
	status=$rc
	[ -n "$hits" ] && printf 'vm: dmesg also shows:\n%s\n' "$hits" >&2
	fail "script exit $rc"
fi
if [ -n "$hits" ]; then
	printf 'vm: kernel splat in dmesg (%s/dmesg.txt):\n%s\n' "$out" "$hits" >&2
	status=1
	fail "kernel splat in dmesg"
fi
echo "vm: ok ${secs}s $out"
