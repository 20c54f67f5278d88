/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The netlink event ring's layout, shared by events.bpf.c and host-bridge's
 * src/netlink/ring.rs (which states the same numbers and checks them
 * against the loaded object's maps).
 */
#ifndef __NL_EVENTS_H__
#define __NL_EVENTS_H__

/* A notification longer than this goes to the ring as its 16-byte header
 * only: host-bridge sees nlmsg_len past the record and re-dumps, as for a
 * datagram cut by its receive slot. Kernel notifications carry one object;
 * a link with a long VF list is the only one known to come near.
 */
#define NL_EVENT_MAX 16384

/* What precedes each message in the ring. */
struct nl_event_hdr {
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) as the filter ran. */
	__u64 ts_ns;
	/* The message's length; the record is of a size class at least
	 * this much larger than the header.
	 */
	__u32 len;
	__u32 pad;
};

/* Slots of the mmapable `loss` array. */
enum nl_loss {
	/* Events the ring had no room for (host-bridge fell behind). */
	NL_LOSS_FULL,
	/* Events that could not be read from their skb. */
	NL_LOSS_READ,
	NL_LOSS_SLOTS,
};

#endif /* __NL_EVENTS_H__ */
