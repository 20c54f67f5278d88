#!/usr/bin/env bash
# The project's test command: installs what it needs (cross/setup.sh,
# qemu-tests/setup-vsock.sh), then formatting, clippy, and every test of
# the workspace, including the aarch64 agent under qemu-aarch64-static and
# the DPU image booted on the simulated board (qemu-tests/), then the tests
# that need the test kernel, in a VM (qemu-tests/vm-tests.sh), then the
# two-VM system test (qemu-tests/system-test.sh). The test kernel and the
# DPU image are cached by hashes of their inputs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash cross/build-agent.sh qemu-virt >/dev/null
DPU_IMAGE=$(bash cross/build-image.sh qemu-virt | tail -n 1)
export DPU_IMAGE
bash qemu-tests/setup-vsock.sh >/dev/null
cargo test --workspace --locked
bash qemu-tests/vm-tests.sh
bash qemu-tests/system-test.sh
