// SPDX-License-Identifier: GPL-2.0
/* Minimal netdevsim flow offload firmware for the kernel series' own tests
 * (bpf/kernel/tests/nsim-flow-ops.sh). Not the project's firmware: it keeps
 * the decoded rules in a hash map, refuses rules once CAPACITY are held,
 * and reports 1 packet of 100 bytes per stats request.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>

#ifndef DEV_ID
#define DEV_ID 10
#endif
#define CAPACITY 4
#define ENOSPC 28
#define EINVAL 22
#define EOPNOTSUPP 95

extern int bpf_flow_offload_rule_read(struct flow_cls_offload *cls,
				      void *buf, __u32 buf__sz) __ksym;
extern int bpf_flow_offload_stats_update(struct flow_cls_offload *cls,
					 const struct bpf_flow_offload_stats *stats) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CAPACITY);
	__type(key, __u64);
	__type(value, struct bpf_flow_offload_rule);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bpf_flow_offload_rule);
} scratch SEC(".maps");

/* What happened, for the test script: [0] replace, [1] destroy, [2] stats,
 * [3] refused replace.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} events SEC(".maps");

static void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&events, &i);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("struct_ops/flow_replace")
int BPF_PROG(flow_replace, struct net_device *dev, struct flow_cls_offload *cls)
{
	struct bpf_flow_offload_rule *r;
	__u32 zero = 0;

	r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		return -EINVAL;
	if (bpf_flow_offload_rule_read(cls, r, sizeof(*r)))
		return -EINVAL;
	if (r->undecoded_keys) {
		count(3);
		return -EOPNOTSUPP;
	}
	if (bpf_map_update_elem(&flows, &r->cookie, r, BPF_ANY)) {
		count(3);
		return -ENOSPC;
	}
	bpf_printk("nsim_flow_ops: replace %s cookie %llx proto %x",
		   dev->name, r->cookie, bpf_ntohs(r->n_proto));
	bpf_printk("nsim_flow_ops:   dst %pI4 actions %u act0 %u",
		   r->dst_ip, r->num_actions, r->actions[0].id);
	count(0);
	return 0;
}

SEC("struct_ops/flow_destroy")
int BPF_PROG(flow_destroy, struct net_device *dev, struct flow_cls_offload *cls)
{
	__u64 cookie = cls->cookie;

	bpf_map_delete_elem(&flows, &cookie);
	count(1);
	return 0;
}

SEC("struct_ops/flow_stats")
int BPF_PROG(flow_stats, struct net_device *dev, struct flow_cls_offload *cls)
{
	struct bpf_flow_offload_stats s = {
		.bytes = 100,
		.packets = 1,
		.lastused = bpf_jiffies64(),
		.used_hw_stats = 2, /* FLOW_ACTION_HW_STATS_DELAYED */
	};
	__u64 cookie = cls->cookie;

	if (!bpf_map_lookup_elem(&flows, &cookie))
		return -EINVAL;
	count(2);
	return bpf_flow_offload_stats_update(cls, &s);
}

SEC(".struct_ops")
struct nsim_flow_ops nsim_fw = {
	.flow_replace = (void *)flow_replace,
	.flow_destroy = (void *)flow_destroy,
	.flow_stats = (void *)flow_stats,
	.dev_id = DEV_ID,
};

char LICENSE[] SEC("license") = "GPL";
