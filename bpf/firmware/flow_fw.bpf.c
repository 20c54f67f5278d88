// SPDX-License-Identifier: GPL-2.0
/*
 * The DPU flow offload firmware: a BPF program behind netdevsim's
 * nsim_flow_ops struct_ops, loaded and attached by host-bridge
 * (src/firmware.rs), one struct_ops per netdevsim device, all sharing
 * these maps.
 *
 *  - flow_replace: decodes the rule (bpf_flow_offload_rule_read), refuses
 *    what the DPU cannot do (EOPNOTSUPP) and what it has no room for
 *    (ENOSPC, from the capacity host-bridge publishes in "capacity", and
 *    the flows map's own size), records it in "flows", then sends it to
 *    user space on "events".
 *    With host-bridge alive and the mode FW_ANSWER_DPU (the "config"
 *    map), it then returns -EINPROGRESS: tc waits until host-bridge
 *    answers with the DPU's result through the answer program, so in_hw
 *    means the DPU holds the rule and a refusal reaches tc.
 *  - flow_destroy: forgets the flow and sends a DESTROY record; netdevsim
 *    also calls it for a rule whose later answer was an error.
 *
 * A flow is a rule on one port (flow_fw.h: a rule on a shared tc block is
 * one flow per port), with an id of the firmware's.
 *  - flow_stats: reports the DPU counters user space wrote into
 *    "counters", as deltas since the last report, with lastused in
 *    jiffies.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "flow_fw.h"

#define EINVAL 22
#define ENOSPC 28
#define ENOBUFS 105
#define EOPNOTSUPP 95
#define NSEC_PER_SEC 1000000000ULL

extern int bpf_flow_offload_rule_read(struct flow_cls_offload *cls, void *buf,
				      __u32 buf__sz) __ksym;
extern int bpf_flow_offload_stats_update(struct flow_cls_offload *cls,
					 const struct bpf_flow_offload_stats *stats) __ksym;
extern int bpf_flow_offload_answer(void *batch, __u32 batch__sz) __ksym;
extern const unsigned int CONFIG_HZ __kconfig __weak;
#define EINPROGRESS 115

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_flow_key);
	__type(value, struct fw_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FW_MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct fw_counters);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_state);
} state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} capacity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FW_RINGBUF_BYTES);
} events SEC(".maps");

/* Too big for the stack: one event per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_event);
} scratch SEC(".maps");

static struct fw_state *fw_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&state, &zero);
}

/* Whether the DPU's flow table can do what the rule asks. */
static bool dpu_can(const struct bpf_flow_offload_rule *r)
{
	__u32 i, n = r->num_actions;

	if (r->undecoded_keys || n == 0 || n > 8)
		return false;
	/* Keys the DPU matches exactly or not at all. */
	if ((r->n_proto_mask && r->n_proto_mask != 0xffff) ||
	    (r->ip_proto_mask && r->ip_proto_mask != 0xff) ||
	    (r->vlan_id_mask && r->vlan_id_mask != 0xfff))
		return false;
	/* Keys it has no field for. */
	if (r->ctrl_flags_mask || r->vlan_tpid_mask || r->vlan_prio_mask ||
	    r->vlan_dei_mask || r->ip_tos_mask || r->ip_ttl_mask ||
	    r->icmp_type_mask || r->icmp_code_mask || r->tcp_flags_mask)
		return false;
	for (i = 0; i < 8; i++) {
		__u32 id;

		if (i >= n)
			break;
		id = r->actions[i].id;
		if (id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_ACCEPT) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_DROP) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_GOTO) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_REDIRECT) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_MIRRED) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_VLAN_PUSH) &&
		    id != bpf_core_enum_value(enum flow_action_id, FLOW_ACTION_VLAN_POP))
			return false;
	}
	return true;
}

SEC("struct_ops/flow_replace")
int BPF_PROG(flow_replace, struct net_device *dev, struct flow_cls_offload *cls)
{
	struct fw_state *st = fw_state();
	struct fw_event *ev;
	struct fw_flow *f;
	struct fw_flow_key key = {};
	__u32 zero = 0, *cap, held;
	struct fw_config *cfg;
	__u64 id = 0;
	bool fresh;

	ev = bpf_map_lookup_elem(&scratch, &zero);
	cap = bpf_map_lookup_elem(&capacity, &zero);
	if (!ev || !st || !cap)
		return -EINVAL;
	/* The ring buffer carries the kernel's layout: it must be ours. */
	if (bpf_core_type_size(struct bpf_flow_offload_rule) != sizeof(ev->rule))
		return -EINVAL;
	if (bpf_flow_offload_rule_read(cls, &ev->rule, sizeof(ev->rule)))
		return -EINVAL;
	if (!dpu_can(&ev->rule)) {
		__sync_fetch_and_add(&st->refused_unsupported, 1);
		return -EOPNOTSUPP;
	}
	key.cookie = ev->rule.cookie;
	key.ifindex = dev->ifindex;
	ev->kind = FW_EV_REPLACE;
	ev->ifindex = dev->ifindex;
	ev->kernel_cookie = ev->rule.cookie;
	f = bpf_map_lookup_elem(&flows, &key);
	fresh = !f;
	if (f)
		id = f->id;
	if (fresh) {
		/* Reserve a place first, so racing replaces cannot overfill;
		 * never more than the flows map holds, whatever the DPU has.
		 */
		held = __sync_fetch_and_add(&st->flows, 1);
		if (held >= *cap || held >= FW_MAX_FLOWS) {
			__sync_fetch_and_sub(&st->flows, 1);
			__sync_fetch_and_add(&st->refused_full, 1);
			return -ENOSPC;
		}
		/* Bit 63 set: the DPU keeps the other half for the flows
		 * host-bridge mirrors from netlink.
		 */
		id = (1ULL << 63) | __sync_fetch_and_add(&st->next_id, 1);
		/* The slot before the event, named from the start (a reader
		 * never sees a slot without its id): a flow user space hears
		 * of always has its record, for its stats and its destroy.
		 */
		if (bpf_map_update_elem(&flows, &key,
					&(struct fw_flow){ .ifindex = key.ifindex,
							   .id = id,
							   .kernel_cookie = key.cookie },
					BPF_NOEXIST)) {
			__sync_fetch_and_sub(&st->flows, 1);
			__sync_fetch_and_add(&st->refused_full, 1);
			return -ENOSPC;
		}
	}
	ev->rule.cookie = id;
	/* Tell user space before tc hears 0: a flow it never hears of must
	 * not be in_hw.
	 */
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0)) {
		if (fresh) {
			bpf_map_delete_elem(&flows, &key);
			__sync_fetch_and_sub(&st->flows, 1);
		}
		__sync_fetch_and_add(&st->lost_events, 1);
		return -ENOBUFS;
	}
	f = bpf_map_lookup_elem(&flows, &key);
	if (f) {
		f->ifindex = ev->ifindex;
		f->id = id;
		f->kernel_cookie = key.cookie;
		__builtin_memcpy(&f->rule, &ev->rule, sizeof(f->rule));
	}
	__sync_fetch_and_add(&st->replaced, 1);
	/* Only a new flow waits: a REPLACE of one held already (a block's
	 * re-offload) changes nothing the DPU would answer, and no answer
	 * would come.
	 */
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (fresh && cfg && cfg->mode == FW_ANSWER_DPU &&
	    bpf_ktime_get_ns() - cfg->alive_ns < FW_ALIVE_NS)
		return -EINPROGRESS;
	return 0;
}

SEC("struct_ops/flow_destroy")
int BPF_PROG(flow_destroy, struct net_device *dev, struct flow_cls_offload *cls)
{
	struct fw_flow_key key = { .cookie = cls->cookie, .ifindex = dev->ifindex };
	struct fw_state *st = fw_state();
	struct fw_event *ev;
	struct fw_flow *f;
	__u32 zero = 0;
	__u64 id;

	f = bpf_map_lookup_elem(&flows, &key);
	if (!st || !f)
		return 0; /* not ours (refused at replace) */
	id = f->id;
	if (bpf_map_delete_elem(&flows, &key))
		return 0;
	bpf_map_delete_elem(&counters, &id);
	__sync_fetch_and_sub(&st->flows, 1);
	__sync_fetch_and_add(&st->destroyed, 1);
	ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return 0;
	ev->kind = FW_EV_DESTROY;
	ev->ifindex = dev->ifindex;
	ev->kernel_cookie = key.cookie;
	ev->rule.cookie = id;
	/* DESTROY cannot fail: a lost record is counted, and user space
	 * reconciles with the flows map.
	 */
	if (bpf_ringbuf_output(&events, ev, sizeof(*ev), 0))
		__sync_fetch_and_add(&st->lost_events, 1);
	return 0;
}

/* How much a counter moved since it was last reported; a counter that
 * went down was reset (the DPU re-created the flow) and counts from 0.
 */
static __u64 delta(__u64 *reported, __u64 now)
{
	__u64 old = __sync_lock_test_and_set(reported, now);

	return now >= old ? now - old : now;
}

SEC("struct_ops/flow_stats")
int BPF_PROG(flow_stats, struct net_device *dev, struct flow_cls_offload *cls)
{
	struct bpf_flow_offload_stats s = {
		.used_hw_stats = FLOW_ACTION_HW_STATS_DELAYED,
	};
	struct fw_flow_key key = { .cookie = cls->cookie, .ifindex = dev->ifindex };
	struct fw_state *st = fw_state();
	struct fw_counters *c;
	struct fw_flow *f;
	__u64 id;

	f = bpf_map_lookup_elem(&flows, &key);
	if (!f)
		return 0;
	if (st)
		__sync_fetch_and_add(&st->stats_calls, 1);
	id = f->id;
	c = bpf_map_lookup_elem(&counters, &id);
	if (c) {
		s.packets = delta(&f->reported_packets, c->packets);
		s.bytes = delta(&f->reported_bytes, c->bytes);
		s.drops = delta(&f->reported_drops, c->drops);
		if (c->last_hit_ns) {
			__u64 now = bpf_ktime_get_ns(), j = bpf_jiffies64();
			__u64 age = now > c->last_hit_ns ? now - c->last_hit_ns : 0;

			/* HZ from the kernel config; without it, the hit is
			 * dated to this report.
			 */
			if (CONFIG_HZ)
				age = age / (NSEC_PER_SEC / CONFIG_HZ);
			else
				age = 0;
			f->lastused = age < j ? j - age : j;
		}
	}
	s.lastused = f->lastused;
	return bpf_flow_offload_stats_update(cls, &s);
}

/* host-bridge runs it with the DPU's answers to waiting requests. */
SEC("syscall")
int answer(void *ctx)
{
	return bpf_flow_offload_answer(ctx, sizeof(struct fw_answer_batch));
}

SEC(".struct_ops.link")
struct nsim_flow_ops flow_fw = {
	.flow_replace = (void *)flow_replace,
	.flow_destroy = (void *)flow_destroy,
	.flow_stats = (void *)flow_stats,
	/* Set per device by host-bridge before loading. */
	.dev_id = 0,
	/* How long tc waits for an answer; host-bridge may change it. */
	.answer_timeout_ms = 2000,
};

char LICENSE[] SEC("license") = "GPL";
