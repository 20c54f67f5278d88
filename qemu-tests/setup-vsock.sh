#!/usr/bin/env bash
# Installs vhost-device-vsock (pinned, from crates.io) into a cache and
# prints the binary's path: the vsock device backend of the VM tests. This
# build host has no vhost-vsock, so the virtio-vsock device of a VM is a
# vhost-user device served by it; a host process reaches the guest through
# its Unix socket (uds-path, hybrid vsock), and guests in one group reach
# each other (sibling VMs).
set -euo pipefail
VERSION=0.3.0
root=${DPU_TOOLS_CACHE:-/var/cache/dpu-tools}/vhost-device-vsock-$VERSION
bin=$root/bin/vhost-device-vsock
if [ ! -x "$bin" ]; then
	echo "setup-vsock: cargo install vhost-device-vsock $VERSION" >&2
	cargo install --quiet --locked --root "$root" vhost-device-vsock --version "$VERSION" >&2
fi
echo "$bin"
