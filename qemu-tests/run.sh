#!/usr/bin/env bash
# The project's test command: installs what it needs (cross/setup.sh), then
# formatting, clippy, and every test of the workspace, including the
# aarch64 agent under qemu-aarch64-static (qemu-tests/), then the tests
# that need the test kernel, in a VM (qemu-tests/vm-tests.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash cross/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash cross/build-agent.sh qemu-virt >/dev/null
cargo test --workspace --locked
bash qemu-tests/vm-tests.sh
