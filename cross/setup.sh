#!/usr/bin/env bash
# Installs what building and testing the aarch64 agent needs on a Debian
# host: the rustup target, Debian's aarch64 cross gcc (used only as the
# linker) and qemu-user-static (runs the binary), plus rustfmt and clippy;
# what building and booting the DPU image needs: cpio, kmod (depmod,
# modprobe --show-depends), bc and qemu-system-arm;
# and what host-bridge's build needs: clang and libbpf's headers (the BPF
# firmware is compiled in its build script), libelf, zlib and pkg-config
# (libbpf-sys links libbpf statically against them); systemd-analyze
# checks the systemd units.
# Idempotent; run as root (CI is root).
set -euo pipefail

need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need_apt+=(qemu-user-static)
for p in clang libbpf-dev libelf-dev zlib1g-dev pkg-config cpio kmod bc qemu-system-arm systemd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
rustup target list --installed | grep -qx aarch64-unknown-linux-musl \
    || rustup target add aarch64-unknown-linux-musl
for c in rustfmt clippy; do
    rustup component list --installed | grep -q "^$c" || rustup component add "$c"
done
