// SPDX-License-Identifier: GPL-2.0
/* A firmware the verifier must refuse (it writes to the kernel's request):
 * the VM test loads it through host-bridge's HOST_BRIDGE_FIRMWARE and
 * expects a clear error.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

SEC("struct_ops/flow_replace")
int BPF_PROG(bad_replace, struct net_device *dev, struct flow_cls_offload *cls)
{
	cls->cookie = 0;
	return 0;
}

SEC("struct_ops/flow_destroy")
int BPF_PROG(bad_destroy, struct net_device *dev, struct flow_cls_offload *cls)
{
	return 0;
}

SEC("struct_ops/flow_stats")
int BPF_PROG(bad_stats, struct net_device *dev, struct flow_cls_offload *cls)
{
	return 0;
}

SEC(".struct_ops.link")
struct nsim_flow_ops bad_fw = {
	.flow_replace = (void *)bad_replace,
	.flow_destroy = (void *)bad_destroy,
	.flow_stats = (void *)bad_stats,
};

char LICENSE[] SEC("license") = "GPL";
