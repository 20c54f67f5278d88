#!/usr/bin/env bash
# Inside the VM: runs installed kselftests through run_kselftest.sh and
# turns their KTAP results into an exit status (run_kselftest.sh itself
# exits 0 whatever the tests do). A skip counts as a failure: CI must run
# them.
#
#   ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST...
set -uo pipefail

ksft=${1:?usage: ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST...}
shift
[ $# -gt 0 ] || { echo "usage: ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST..." >&2; exit 2; }
log=$(mktemp)
args=()
for t in "$@"; do args+=(-t "$t"); done
"$ksft/run_kselftest.sh" "${args[@]}" 2>&1 | tee "$log"
rc=0
for t in "$@"; do
	want="selftests: ${t%%:*}: ${t#*:}"
	if ! grep -qE "^ok [0-9]+ $want\$" "$log"; then
		echo "ksft-in-vm.sh: $t did not pass" >&2
		rc=1
	fi
done
exit $rc
