// SPDX-License-Identifier: GPL-2.0
/*
 * The DPU FIB offload firmware: a BPF program behind netdevsim's
 * nsim_fib_ops struct_ops, loaded and attached by host-bridge
 * (src/fib_fw.rs), one struct_ops per netdevsim device, all sharing these
 * maps.
 *
 *  - route_event: takes every route (0: no flag until the DPU answers) and
 *    tells user space on "fib_events" which route netdevsim now holds, so
 *    that it answers with what the DPU did with that route. The DPU's
 *    answer, not the firmware's, decides: the firmware refuses nothing.
 *  - nexthop_event: the same for nexthop objects (and resilient bucket
 *    moves): takes every one, vetoes none, and reports it.
 *  - set_flags: a syscall program host-bridge runs with a batch of routes
 *    and the flags the DPU's results give them (offload, or offload_failed
 *    for a route the DPU refused); the kernel sets them with
 *    fib_alias_hw_flags_set() and fib6_info_hw_flags_set().
 *  - set_nh_flags: the same for nexthop objects (offload, or no flag for
 *    one the DPU refused: nexthops have no offload_failed flag), through
 *    nexthop_set_hw_flags().
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "fib_fw.h"

extern int bpf_nsim_fib_hw_flags_set(void *batch, __u32 batch__sz) __ksym;
extern int bpf_nsim_nexthop_hw_flags_set(void *batch, __u32 batch__sz) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FIB_FW_RINGBUF_BYTES);
} fib_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fib_fw_state);
} fib_state SEC(".maps");

/* Set per copy by host-bridge before loading (the struct_ops' dev_id). */
const volatile __u32 dev_id = 0;

SEC("struct_ops/route_event")
int BPF_PROG(route_event, const struct bpf_nsim_fib_route *rt)
{
	struct fib_fw_event ev = {};
	struct fib_fw_state *st;
	__u32 zero = 0;

	st = bpf_map_lookup_elem(&fib_state, &zero);
	if (!st)
		return 0;
	if (rt->event == FIB_EVENT_ENTRY_DEL) {
		__sync_fetch_and_add(&st->deletes, 1);
		return 0;
	}
	__sync_fetch_and_add(&st->routes, 1);
	/* The layout user space reads: it must be the kernel's. */
	if (bpf_core_type_size(struct bpf_nsim_fib_route) != sizeof(ev.rt))
		return 0;
	__builtin_memcpy(ev.rt.dst, rt->dst, sizeof(ev.rt.dst));
	ev.rt.tb_id = rt->tb_id;
	ev.rt.metric = rt->metric;
	ev.rt.nhs = rt->nhs;
	ev.rt.nh_id = rt->nh_id;
	ev.rt.event = rt->event;
	ev.rt.family = rt->family;
	ev.rt.dst_len = rt->dst_len;
	ev.rt.dscp = rt->dscp;
	ev.rt.type = rt->type;
	ev.dev_id = dev_id;
	/* A lost record is counted: user space then sends every flag again. */
	if (bpf_ringbuf_output(&fib_events, &ev, sizeof(ev), 0))
		__sync_fetch_and_add(&st->lost_events, 1);
	return 0;
}

SEC("struct_ops/nexthop_event")
int BPF_PROG(nexthop_event, const struct bpf_nsim_nexthop *nh)
{
	struct fib_fw_nh_event ev = {};
	struct fib_fw_state *st;
	__u32 zero = 0;

	st = bpf_map_lookup_elem(&fib_state, &zero);
	if (!st)
		return 0;
	if (nh->event == NEXTHOP_EVENT_DEL) {
		__sync_fetch_and_add(&st->nexthop_deletes, 1);
		return 0;
	}
	__sync_fetch_and_add(&st->nexthops, 1);
	if (bpf_core_type_size(struct bpf_nsim_nexthop) != sizeof(ev.nh))
		return 0;
	__builtin_memcpy(ev.nh.gw, nh->gw, sizeof(ev.nh.gw));
	ev.nh.id = nh->id;
	ev.nh.event = nh->event;
	ev.nh.type = nh->type;
	ev.nh.nhs = nh->nhs;
	ev.nh.ifindex = nh->ifindex;
	ev.nh.bucket = nh->bucket;
	ev.nh.bucket_nh_id = nh->bucket_nh_id;
	ev.nh.gw_family = nh->gw_family;
	ev.nh.blackhole = nh->blackhole;
	ev.nh.fdb = nh->fdb;
	ev.dev_id = dev_id;
	if (bpf_ringbuf_output(&fib_events, &ev, sizeof(ev), 0))
		__sync_fetch_and_add(&st->lost_events, 1);
	return 0;
}

SEC("syscall")
int set_flags(void *ctx)
{
	return bpf_nsim_fib_hw_flags_set(ctx, sizeof(struct fib_fw_batch));
}

SEC("syscall")
int set_nh_flags(void *ctx)
{
	return bpf_nsim_nexthop_hw_flags_set(ctx, sizeof(struct fib_fw_nh_batch));
}

SEC(".struct_ops.link")
struct nsim_fib_ops fib_fw = {
	.route_event = (void *)route_event,
	.nexthop_event = (void *)nexthop_event,
	/* Set per device by host-bridge before loading. */
	.dev_id = 0,
};

char LICENSE[] SEC("license") = "GPL";
