/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * What the flow offload firmware shares with user space (host-bridge's
 * src/firmware.rs mirrors every struct here; keep the two in step and
 * bump FW_ABI_VERSION when a layout changes).
 */
#ifndef __FLOW_FW_H__
#define __FLOW_FW_H__

#define FW_ABI_VERSION 2
/* Largest number of flows the firmware tracks (the flows map). */
#define FW_MAX_FLOWS 16384
#define FW_RINGBUF_BYTES (1 << 22)
/* Answers per run of the answer program. */
#define FW_ANSWER_BATCH 256
/* host-bridge counts as alive this long after its last heartbeat. */
#define FW_ALIVE_NS (2ULL * 1000000000ULL)

/* fw_config.mode */
/* tc hears 0 (in_hw) once the rule is queued to user space. */
#define FW_ANSWER_NOW 0
/* tc waits for the DPU's answer (flow_replace returns -EINPROGRESS and
 * host-bridge answers with the answer program), while host-bridge is
 * alive; without it, as FW_ANSWER_NOW.
 */
#define FW_ANSWER_DPU 1

/* The "config" map, key 0, written by user space. */
struct fw_config {
	__u32 mode;
	__u32 __pad;
	/* CLOCK_MONOTONIC of host-bridge's last heartbeat. */
	__u64 alive_ns;
};

/* The context of the answer program. */
struct fw_answer_batch {
	__u32 count;
	__u32 __pad;
	struct bpf_flow_offload_answer answers[FW_ANSWER_BATCH];
};

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
	/* The kernel's cookie of the rule; rule.cookie is the flow's id. */
	__u64 kernel_cookie;
	struct bpf_flow_offload_rule rule;
};

/*
 * A flow is a rule on one port: a rule on a tc block shared by several
 * ports comes once per port with one cookie, and the DPU needs it on each.
 * The "flows" map is keyed by both; the firmware gives each flow an id
 * (bit 63 set, from fw_state.next_id), which is its cookie on the wire and
 * the key of "counters".
 */
struct fw_flow_key {
	__u64 cookie;
	__u32 ifindex;
	__u32 __pad;
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
	/* The next flow id, less bit 63. */
	__u64 next_id;
};

/*
 * Absolute DPU counters of one flow, written by user space into the
 * "counters" map (key: the flow's id). last_hit_ns is the
 * CLOCK_MONOTONIC time of the last hit, 0 if never.
 */
struct fw_counters {
	__u64 packets;
	__u64 bytes;
	__u64 drops;
	__u64 last_hit_ns;
};

/* The firmware's own record of a flow: the "flows" map, key fw_flow_key. */
struct fw_flow {
	__u32 ifindex;
	__u32 __pad;
	/* The flow's id (rule.cookie too), and the kernel's cookie. */
	__u64 id;
	__u64 kernel_cookie;
	/* What tc has been told so far (tc adds the deltas it is given). */
	__u64 reported_packets;
	__u64 reported_bytes;
	__u64 reported_drops;
	/* jiffies of the last hit, as last reported */
	__u64 lastused;
	struct bpf_flow_offload_rule rule;
};

#endif /* __FLOW_FW_H__ */
