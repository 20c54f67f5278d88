/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * What the flow offload firmware shares with user space (host-bridge's
 * src/firmware.rs mirrors every struct here; keep the two in step and
 * bump FW_ABI_VERSION when a layout changes).
 */
#ifndef __FLOW_FW_H__
#define __FLOW_FW_H__

#define FW_ABI_VERSION 1
/* Largest number of flows the firmware tracks (the flows map). */
#define FW_MAX_FLOWS 16384
#define FW_RINGBUF_BYTES (1 << 22)

/* fw_event.kind */
#define FW_EV_REPLACE 1
#define FW_EV_DESTROY 2

/*
 * One ring buffer record. REPLACE carries the rule as the kernel's
 * bpf_flow_offload_rule() decoded it (fixed layout, packet fields in
 * network byte order); DESTROY carries only rule.cookie.
 */
struct fw_event {
	__u32 kind;
	__u32 ifindex;
	struct bpf_flow_offload_rule rule;
};

/*
 * The "capacity" map (key 0, a __u32) is written by user space: how many
 * flows the DPU can take in all; 0 until it is known.
 */

/* The firmware's counters: the "state" map, key 0. User space reads it. */
struct fw_state {
	/* Flows held now. */
	__u32 flows;
	__u32 __pad;
	__u64 replaced;
	__u64 destroyed;
	__u64 stats_calls;
	__u64 refused_full;
	__u64 refused_unsupported;
	/* Ring buffer records that did not fit: user space must reconcile
	 * with the flows map.
	 */
	__u64 lost_events;
};

/*
 * Absolute DPU counters of one flow, written by user space into the
 * "counters" map (key: the kernel's cookie). last_hit_ns is the
 * CLOCK_MONOTONIC time of the last hit, 0 if never.
 */
struct fw_counters {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
	__u64 last_hit_ns;
};

/* The firmware's own record of a flow: the "flows" map, key: cookie. */
struct fw_flow {
	__u32 ifindex;
	__u32 __pad;
	/* What tc has been told so far (tc adds the deltas it is given). */
	__u64 reported_packets;
	__u64 reported_bytes;
	__u64 reported_drops;
	/* jiffies of the last hit, as last reported */
	__u64 lastused;
	struct bpf_flow_offload_rule rule;
};

#endif /* __FLOW_FW_H__ */
