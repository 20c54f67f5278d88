// SPDX-License-Identifier: GPL-2.0
/*
 * host-bridge's netlink event socket, read through a ring buffer.
 *
 * A socket filter (SO_ATTACH_BPF) on host-bridge's NETLINK_ROUTE event
 * socket. The kernel runs it in do_one_broadcast() for every notification
 * it multicasts to that socket, before the skb is queued. It copies the
 * notification's bytes, as the kernel wrote them, into a BPF ring buffer
 * and drops the skb: host-bridge reads the same messages from memory it
 * maps, with no skb queued, no wake per message, no system call and no
 * copy to user space per event. The socket itself stays empty; dumps go
 * through a second, unfiltered socket. Each record starts with the time
 * the kernel sent the notification, where host-bridge's latency
 * histogram (event to DPU acknowledgement) starts.
 *
 * Nothing is lost unseen: a notification the ring has no room for (or that
 * cannot be read) is counted in `loss`, which host-bridge maps and checks
 * after every drain, and answers with a resync, as an ENOBUFS on the
 * socket. What the kernel loses before the filter runs (a failed clone in
 * do_one_broadcast, a notification it could not build) it still reports
 * as the socket's error, which host-bridge polls for too. One longer than NL_EVENT_MAX goes as its header alone.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* host-bridge sets the size (--event-ring) before it loads it. */
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, NL_LOSS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} loss SEC(".maps");

#define NLMSG_HDRLEN 16

static __always_inline int lose(__u32 why)
{
	__u64 *n = bpf_map_lookup_elem(&loss, &why);

	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

/*
 * The message goes straight into its own reservation in the ring, of the
 * smallest size class that holds it: bpf_ringbuf_reserve() takes constant
 * sizes only, and no buffer is shared between runs. A per-CPU copy buffer
 * would be: the filter runs in process context (a route added by `ip`) and
 * in softirq (a neighbour timing out), and a softirq run on the same CPU
 * would overwrite a process-context run's copy halfway.
 */
static __always_inline int emit(struct __sk_buff *skb, __u32 len, const __u32 size)
{
	struct nl_event_hdr *h;

	h = bpf_ringbuf_reserve(&events, size, 0);
	if (!h)
		return lose(NL_LOSS_FULL);
	if (len > size - sizeof(*h) ||
	    bpf_skb_load_bytes(skb, 0, (void *)(h + 1), len)) {
		bpf_ringbuf_discard(h, 0);
		return lose(NL_LOSS_READ);
	}
	h->ts_ns = bpf_ktime_get_ns();
	h->len = len;
	h->pad = 0;
	/* Flags 0: the ring wakes host-bridge only when it had caught up,
	 * so that a burst costs one wake, not one per event.
	 */
	bpf_ringbuf_submit(h, 0);
	/* 0: the socket gets nothing. */
	return 0;
}

#define CLASS(n) ((n) + sizeof(struct nl_event_hdr))

SEC("socket")
int nl_events(struct __sk_buff *skb)
{
	__u32 len = skb->len;

	if (len > NL_EVENT_MAX)
		len = NLMSG_HDRLEN;
	if (len < NLMSG_HDRLEN)
		return lose(NL_LOSS_READ);
	if (len <= 112)
		return emit(skb, len, CLASS(112));
	if (len <= 240)
		return emit(skb, len, CLASS(240));
	if (len <= 496)
		return emit(skb, len, CLASS(496));
	if (len <= 1008)
		return emit(skb, len, CLASS(1008));
	if (len <= 2032)
		return emit(skb, len, CLASS(2032));
	if (len <= 4080)
		return emit(skb, len, CLASS(4080));
	if (len <= 8176)
		return emit(skb, len, CLASS(8176));
	return emit(skb, len, CLASS(NL_EVENT_MAX));
}
