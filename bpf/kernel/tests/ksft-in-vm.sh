#!/usr/bin/env bash
# Inside the VM: runs installed kselftests through run_kselftest.sh and
# turns their KTAP results into an exit status (run_kselftest.sh itself
# exits 0 whatever the tests do). A skip counts as a failure: CI must run
# them.
#
#   ksft-in-vm.sh KSFT_INSTALL_PATH [NAME=VALUE] COLLECTION:TEST...
#
# A NAME=VALUE argument is put in the environment of the next test only
# (the forwarding library's TESTS, say, which picks a test's cases); that
# test runs directly, not through run_kselftest.sh, and its exit status is
# its result.
set -uo pipefail

usage="usage: ksft-in-vm.sh KSFT_INSTALL_PATH [NAME=VALUE] COLLECTION:TEST..."
ksft=${1:?$usage}
shift
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
rc=0
env=()
for t in "$@"; do
	if [[ $t != *:* && $t == *=* ]]; then
		env+=("$t")
		continue
	fi
	log=$(mktemp)
	if [ ${#env[@]} -gt 0 ]; then
		# Not through run_kselftest.sh, which sets TESTS for itself and
		# so for the test: run it directly, its exit status the result.
		(cd "$ksft/${t%%:*}" && env "${env[@]}" "./${t#*:}") 2>&1 | tee "$log"
		st=${PIPESTATUS[0]}
		env=()
		if [ "$st" != 0 ]; then
			echo "ksft-in-vm.sh: $t did not pass (exit $st)" >&2
			rc=1
		fi
		continue
	fi
	"$ksft/run_kselftest.sh" -t "$t" 2>&1 | tee "$log"
	want="selftests: ${t%%:*}: ${t#*:}"
	# Not anchored at the start: a test's last line without a newline
	# may precede run_kselftest.sh's own.
	if ! grep -E "(^|[^t] )ok [0-9]+ $want\$" "$log" | grep -qv "not ok"; then
		echo "ksft-in-vm.sh: $t did not pass" >&2
		rc=1
	fi
done
exit $rc
