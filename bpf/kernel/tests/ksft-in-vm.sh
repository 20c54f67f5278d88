#!/usr/bin/env bash
# Inside the VM: runs one installed kselftest through run_kselftest.sh and
# turns its KTAP result into an exit status (run_kselftest.sh itself exits
# 0 whatever the tests do). A skip counts as a failure: CI must run it.
#
#   ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST
set -uo pipefail

ksft=${1:?usage: ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST}
test=${2:?usage: ksft-in-vm.sh KSFT_INSTALL_PATH COLLECTION:TEST}
log=$(mktemp)
"$ksft/run_kselftest.sh" -t "$test" 2>&1 | tee "$log"
want="selftests: ${test%%:*}: ${test#*:}"
if grep -qE "^ok [0-9]+ $want\$" "$log"; then
	exit 0
fi
echo "ksft-in-vm.sh: $test did not pass" >&2
exit 1
