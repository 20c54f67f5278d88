#!/usr/bin/env bash
# Builds the DPU agent for one board as a static, stripped
# aarch64-unknown-linux-musl binary: the firmware image.
#
#   cross/build-agent.sh [BOARD]        (default: qemu-virt)
#
# Prints the path of the binary. Uses the rustup target and Debian's
# aarch64-linux-gnu-gcc as the linker (cross/setup.sh installs both); the
# musl C library and start files come with the Rust target.
set -euo pipefail
board=${1:-qemu-virt}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -f "board-configs/$board.toml" ] || { echo "no board-configs/$board.toml" >&2; exit 2; }

target=aarch64-unknown-linux-musl
# One target dir per board: capacities are compile-time constants.
if [ "$board" = qemu-virt ]; then tdir="$root/target"; else tdir="$root/target/boards/$board"; fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static
DPU_BOARD=$board CARGO_TARGET_DIR=$tdir \
    cargo build --quiet --locked --profile firmware --target $target -p dpu-agent --bins >&2
echo "$tdir/$target/firmware/dpu-agent"
