/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * What the FIB offload firmware shares with user space (host-bridge's
 * src/fib_fw.rs mirrors every struct here and asserts its size).
 */
#ifndef __FIB_FW_H__
#define __FIB_FW_H__

#define FIB_FW_RINGBUF_BYTES (1 << 21)
/* Routes per call of the set_flags program (its context: 8 + 28 each). */
#define FIB_FW_BATCH 1024
/* Nexthop objects per call of set_nh_flags (8 + 8 each). */
#define FIB_FW_NH_BATCH 1024

/*
 * One ring buffer record per route_event: the route as netdevsim decoded
 * it (struct bpf_nsim_fib_route, 40 bytes), plus the device's bus id.
 */
struct fib_fw_event {
	struct bpf_nsim_fib_route rt;
	__u32 dev_id;
	__u32 __pad;
};

/*
 * One record per nexthop_event (replace or bucket move; deletes are only
 * counted): struct bpf_nsim_nexthop (48 bytes) and the device's bus id.
 * User space tells the two records apart by their size (48 and 56).
 */
struct fib_fw_nh_event {
	struct bpf_nsim_nexthop nh;
	__u32 dev_id;
	__u32 __pad;
};

/* The firmware's counters: the "fib_state" map, key 0. */
struct fib_fw_state {
	/* Route events seen: replace or append, and delete. */
	__u64 routes;
	__u64 deletes;
	/* Nexthop events seen: replace or bucket move, and delete. */
	__u64 nexthops;
	__u64 nexthop_deletes;
	/* Records that did not fit the ring buffer: user space must send the
	 * flags of every route again.
	 */
	__u64 lost_events;
};

/*
 * The context of the set_flags program: a struct
 * bpf_nsim_fib_hw_flags_batch with room for FIB_FW_BATCH routes.
 */
struct fib_fw_batch {
	__u32 dev_id;
	__u32 count;
	struct bpf_nsim_fib_hw_flags routes[FIB_FW_BATCH];
};

/* The context of set_nh_flags: a struct bpf_nsim_nexthop_hw_flags_batch. */
struct fib_fw_nh_batch {
	__u32 dev_id;
	__u32 count;
	struct bpf_nsim_nexthop_hw_flags nhs[FIB_FW_NH_BATCH];
};

#endif /* __FIB_FW_H__ */
