// SPDX-License-Identifier: GPL-2.0
/*
 * Taps on the kernel's notifier chains: what drivers hear, streamed to
 * host-bridge (src/notifier/) through one ring buffer.
 *
 * Each chain has up to three programs, and host-bridge attaches the first
 * the running kernel accepts:
 *   1. fexit (where the chain's result matters: a driver's veto shows in
 *      ntf_hdr.ret) or fentry;
 *   2. kprobe, with a kretprobe for the result (the arguments wait in the
 *      "stash" map between the two);
 *   3. tp_btf on tracepoints that see some of the same events
 *      (neigh_update, bridge br_fdb_*), where neither works.
 * Every program reads the kernel through CO-RE relocations only
 * (BPF_CORE_READ, bpf_core_enum_value), so one object serves every kernel
 * whose BTF has the members read.
 *
 * Records are struct ntf_* (notifier.h), one fixed size per kind. Only the
 * netns named in the "config" map passes; a full ring buffer counts a drop
 * in "counters" for host-bridge to see and repair by a netlink resync.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "notifier.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define NOTIFY_OK 0x0001
#define NOTIFY_STOP_MASK 0x8000
#define NEIGH_VAR_DELAY_PROBE_TIME 6

_Static_assert(sizeof(struct ntf_hdr) == NTF_SIZE_HDR, "ntf_hdr");
_Static_assert(sizeof(struct ntf_nh) == NTF_SIZE_NH, "ntf_nh");
_Static_assert(sizeof(struct ntf_fib4) == NTF_SIZE_FIB4, "ntf_fib4");
_Static_assert(sizeof(struct ntf_fib6) == NTF_SIZE_FIB6, "ntf_fib6");
_Static_assert(sizeof(struct ntf_fib_rule) == NTF_SIZE_FIB_RULE, "ntf_fib_rule");
_Static_assert(sizeof(struct ntf_nexthop) == NTF_SIZE_NEXTHOP, "ntf_nexthop");
_Static_assert(sizeof(struct ntf_nh_bucket) == NTF_SIZE_NH_BUCKET, "ntf_nh_bucket");
_Static_assert(sizeof(struct ntf_fdb) == NTF_SIZE_FDB, "ntf_fdb");
_Static_assert(sizeof(struct ntf_port_obj) == NTF_SIZE_PORT_OBJ, "ntf_port_obj");
_Static_assert(sizeof(struct ntf_port_attr) == NTF_SIZE_PORT_ATTR, "ntf_port_attr");
_Static_assert(sizeof(struct ntf_netdev) == NTF_SIZE_NETDEV, "ntf_netdev");
_Static_assert(sizeof(struct ntf_neigh) == NTF_SIZE_NEIGH, "ntf_neigh");
_Static_assert(sizeof(struct ntf_probe_time) == NTF_SIZE_PROBE_TIME, "ntf_probe_time");
_Static_assert(sizeof(struct ntf_mpath_hash) == NTF_SIZE_MPATH_HASH, "ntf_mpath_hash");

/* Sized by host-bridge before load (--tap-ring MiB). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NTF_KIND_MAX);
	__type(key, __u32);
	__type(value, struct ntf_counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ntf_config);
} config SEC(".maps");

/* kprobe -> kretprobe: the arguments of the call in progress. */
enum tap { TAP_FIB, TAP_NH, TAP_NH_BUCKET, TAP_SDB, TAP_NETDEV };

struct stash_key {
	__u64 pid_tgid;
	__u32 tap;
	__u32 level;	/* the call's depth in this task */
};

struct stash_args {
	__u64 a[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct stash_key);
	__type(value, struct stash_args);
} stash SEC(".maps");

static __always_inline void count(__u32 kind, int what)
{
	struct ntf_counter *c = bpf_map_lookup_elem(&counters, &kind);

	if (!c)
		return;
	if (what == 0)
		c->events++;
	else if (what == 1)
		c->drops++;
	else
		c->filtered++;
}

/* Whether events of @net pass the netns filter. */
static __always_inline bool pass(struct net *net, __u32 kind)
{
	__u32 zero = 0;
	struct ntf_config *c = bpf_map_lookup_elem(&config, &zero);

	if (!c || !c->netns_inum)
		return true;
	if (BPF_CORE_READ(net, ns.inum) == c->netns_inum)
		return true;
	count(kind, 2);
	return false;
}

static __always_inline struct net *dev_net(struct net_device *dev)
{
	return BPF_CORE_READ(dev, nd_net.net);
}

/* Reserves a zeroed record and fills its header; counts a drop if the ring
 * buffer is full. */
#define RESERVE(type, kind_, ev, ret_, flags_, ifindex_)                      \
	({                                                                     \
		type *__r = bpf_ringbuf_reserve(&events, sizeof(type), 0);     \
		if (__r) {                                                     \
			__builtin_memset(__r, 0, sizeof(type));                \
			__r->hdr.kind = kind_;                                 \
			__r->hdr.event = ev;                                   \
			__r->hdr.ret = ret_;                                   \
			__r->hdr.flags = flags_;                               \
			__r->hdr.ifindex = ifindex_;                           \
			__r->hdr.ts_ns = bpf_ktime_get_ns();                   \
			count(kind_, 0);                                       \
		} else {                                                       \
			count(kind_, 1);                                       \
		}                                                              \
		__r;                                                           \
	})

static __always_inline int to_errno(long ret)
{
	ret &= ~NOTIFY_STOP_MASK;
	return ret > NOTIFY_OK ? NOTIFY_OK - ret : 0;
}

static __always_inline void fill_nhc(struct ntf_nh *o, struct fib_nh_common *nhc)
{
	o->ifindex = BPF_CORE_READ(nhc, nhc_dev, ifindex);
	o->gw_family = BPF_CORE_READ(nhc, nhc_gw_family);
	o->flags = BPF_CORE_READ(nhc, nhc_flags);
	o->weight = BPF_CORE_READ(nhc, nhc_weight);
	if (o->gw_family == AF_INET)
		bpf_core_read(o->gw, 4, &nhc->nhc_gw.ipv4);
	else if (o->gw_family == AF_INET6)
		bpf_core_read(o->gw, 16, &nhc->nhc_gw.ipv6);
}

/* ---- FIB: call_fib_notifiers (IPv4 and IPv6 entries, rules) ------------- */

static __always_inline int fib_event(__u32 ev)
{
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_ENTRY_REPLACE))
		return NTF_FIB_REPLACE;
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_ENTRY_APPEND))
		return NTF_FIB_APPEND;
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_ENTRY_ADD))
		return NTF_FIB_ADD;
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_ENTRY_DEL))
		return NTF_FIB_DEL;
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_RULE_ADD))
		return NTF_FIB_RULE_ADD;
	if (ev == bpf_core_enum_value(enum fib_event_type, FIB_EVENT_RULE_DEL))
		return NTF_FIB_RULE_DEL;
	return 0;
}

static __always_inline void emit_fib4(int event, struct fib_entry_notifier_info *ei, int ret, __u32 flags)
{
	struct fib_info *fi = BPF_CORE_READ(ei, fi);
	__u64 base = (__u64)fi + bpf_core_field_offset(struct fib_info, fib_nh) +
		     bpf_core_field_offset(struct fib_nh, nh_common);
	__u32 size = bpf_core_type_size(struct fib_nh);
	struct ntf_fib4 *r;
	int nhs, i;

	r = RESERVE(struct ntf_fib4, NTF_FIB4, event, ret, flags, 0);
	if (!r)
		return;
	/* The trie's key: host order. The record carries network order. */
	r->dst = bpf_htonl(BPF_CORE_READ(ei, dst));
	r->dst_len = BPF_CORE_READ(ei, dst_len);
	if (bpf_core_field_exists(ei->dscp))
		r->dscp = BPF_CORE_READ(ei, dscp);
	r->type = BPF_CORE_READ(ei, type);
	r->tb_id = BPF_CORE_READ(ei, tb_id);
	r->protocol = BPF_CORE_READ(fi, fib_protocol);
	r->scope = BPF_CORE_READ(fi, fib_scope);
	r->priority = BPF_CORE_READ(fi, fib_priority);
	r->nh_id = BPF_CORE_READ(fi, nh, id);
	nhs = BPF_CORE_READ(fi, fib_nhs);
	r->nhs = nhs > 255 ? 255 : nhs;
	if (!r->nh_id) {
		for (i = 0; i < NTF_MAX_NH && i < nhs; i++)
			fill_nhc(&r->nh[i], (struct fib_nh_common *)(base + i * size));
		if (nhs > NTF_MAX_NH)
			r->hdr.flags |= NTF_F_TRUNC;
	}
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void emit_fib6(int event, struct fib6_entry_notifier_info *ei, int ret, __u32 flags)
{
	struct fib6_info *rt = BPF_CORE_READ(ei, rt);
	__u64 nh0 = (__u64)rt + bpf_core_field_offset(struct fib6_info, fib6_nh) +
		    bpf_core_field_offset(struct fib6_nh, nh_common);
	struct ntf_fib6 *r;

	r = RESERVE(struct ntf_fib6, NTF_FIB6, event, ret, flags, 0);
	if (!r)
		return;
	bpf_core_read(r->dst, 16, &rt->fib6_dst.addr);
	r->dst_len = BPF_CORE_READ(rt, fib6_dst.plen);
	bpf_core_read(r->src, 16, &rt->fib6_src.addr);
	r->src_len = BPF_CORE_READ(rt, fib6_src.plen);
	r->tb_id = BPF_CORE_READ(rt, fib6_table, tb6_id);
	r->metric = BPF_CORE_READ(rt, fib6_metric);
	r->type = BPF_CORE_READ(rt, fib6_type);
	r->protocol = BPF_CORE_READ(rt, fib6_protocol);
	r->nsiblings = BPF_CORE_READ(ei, nsiblings);
	r->nh_id = BPF_CORE_READ(rt, nh, id);
	if (!r->nh_id)
		fill_nhc(&r->nh, (struct fib_nh_common *)nh0);
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void emit_rule(int event, struct fib_rule_notifier_info *ri, int family, int ret,
				      __u32 flags)
{
	struct fib_rule *rule = BPF_CORE_READ(ri, rule);
	struct ntf_fib_rule *r;

	r = RESERVE(struct ntf_fib_rule, NTF_FIB_RULE, event, ret, flags, 0);
	if (!r)
		return;
	r->family = family;
	r->table = BPF_CORE_READ(rule, table);
	r->pref = BPF_CORE_READ(rule, pref);
	r->mark = BPF_CORE_READ(rule, mark);
	r->mark_mask = BPF_CORE_READ(rule, mark_mask);
	r->iifindex = BPF_CORE_READ(rule, iifindex);
	r->oifindex = BPF_CORE_READ(rule, oifindex);
	r->action = BPF_CORE_READ(rule, action);
	r->proto = BPF_CORE_READ(rule, proto);
	r->ip_proto = BPF_CORE_READ(rule, ip_proto);
	bpf_ringbuf_submit(r, 0);
}

static __always_inline int on_fib(struct net *net, __u32 ev, struct fib_notifier_info *info, int ret, __u32 flags)
{
	int event = fib_event(ev);
	int family;

	if (!event)
		return 0;
	if (!pass(net, event >= NTF_FIB_RULE_ADD ? NTF_FIB_RULE : NTF_FIB4))
		return 0;
	family = BPF_CORE_READ(info, family);
	if (event >= NTF_FIB_RULE_ADD)
		emit_rule(event, (struct fib_rule_notifier_info *)info, family, ret, flags);
	else if (family == AF_INET)
		emit_fib4(event, (struct fib_entry_notifier_info *)info, ret, flags);
	else if (family == AF_INET6)
		emit_fib6(event, (struct fib6_entry_notifier_info *)info, ret, flags);
	return 0;
}

SEC("fexit/call_fib_notifiers")
int BPF_PROG(fib_fexit, struct net *net, enum fib_event_type ev, struct fib_notifier_info *info, int ret)
{
	return on_fib(net, ev, info, ret, NTF_F_RET);
}

/* Calls of one chain nest (a netdevice handler bringing up an upper device,
 * say): each task's stash is a stack per tap, keyed by depth; kretprobes
 * fire in the reverse order of their kprobes. */
struct depth_key {
	__u64 pid_tgid;
	__u32 tap;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct depth_key);
	__type(value, __u32);
} depth SEC(".maps");

static __always_inline void stash_put(__u32 tap, __u64 a0, __u64 a1, __u64 a2, __u64 a3, __u64 a4)
{
	struct depth_key dk = { .pid_tgid = bpf_get_current_pid_tgid(), .tap = tap };
	struct stash_args v = { .a = { a0, a1, a2, a3, a4 } };
	struct stash_key k = { .pid_tgid = dk.pid_tgid, .tap = tap };
	__u32 *d = bpf_map_lookup_elem(&depth, &dk);
	__u32 n = d ? *d : 0;

	k.level = n;
	bpf_map_update_elem(&stash, &k, &v, BPF_ANY);
	n++;
	bpf_map_update_elem(&depth, &dk, &n, BPF_ANY);
}

/* The arguments of the innermost call of @tap in this task; the caller
 * deletes @k once done. */
static __always_inline struct stash_args *stash_get(__u32 tap, struct stash_key *k)
{
	struct depth_key dk = { .pid_tgid = bpf_get_current_pid_tgid(), .tap = tap };
	__u32 *d = bpf_map_lookup_elem(&depth, &dk);
	__u32 n;

	if (!d || !*d)
		return NULL;
	n = *d - 1;
	if (n)
		bpf_map_update_elem(&depth, &dk, &n, BPF_ANY);
	else
		bpf_map_delete_elem(&depth, &dk);
	k->pid_tgid = dk.pid_tgid;
	k->tap = tap;
	k->level = n;
	return bpf_map_lookup_elem(&stash, k);
}

SEC("kprobe/call_fib_notifiers")
int BPF_KPROBE(fib_kprobe, struct net *net, long ev, struct fib_notifier_info *info)
{
	stash_put(TAP_FIB, (__u64)net, ev, (__u64)info, 0, 0);
	return 0;
}

SEC("kretprobe/call_fib_notifiers")
int BPF_KRETPROBE(fib_kretprobe, int ret)
{
	struct stash_key k;
	struct stash_args *a = stash_get(TAP_FIB, &k);

	if (!a)
		return 0;
	on_fib((struct net *)a->a[0], a->a[1], (struct fib_notifier_info *)a->a[2], ret, NTF_F_RET);
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

/* ---- Nexthop objects: call_nexthop_notifiers ------------------------------ */

static __always_inline int nh_event(__u32 ev)
{
	if (ev == bpf_core_enum_value(enum nexthop_event_type, NEXTHOP_EVENT_DEL))
		return NTF_NH_DEL;
	if (ev == bpf_core_enum_value(enum nexthop_event_type, NEXTHOP_EVENT_REPLACE))
		return NTF_NH_REPLACE;
	if (ev == bpf_core_enum_value(enum nexthop_event_type, NEXTHOP_EVENT_RES_TABLE_PRE_REPLACE))
		return NTF_NH_RES_TABLE_PRE_REPLACE;
	return 0;
}

static __always_inline int on_nh(struct net *net, __u32 ev, struct nexthop *nh, int ret, __u32 flags)
{
	int event = nh_event(ev);
	struct ntf_nexthop *r;
	struct nh_group *grp;
	struct nh_info *nhi;
	__u64 base;
	__u32 size;
	int n, i;

	if (!event || !pass(net, NTF_NEXTHOP))
		return 0;
	r = RESERVE(struct ntf_nexthop, NTF_NEXTHOP, event, ret, flags, 0);
	if (!r)
		return 0;
	r->id = BPF_CORE_READ(nh, id);
	r->protocol = BPF_CORE_READ(nh, protocol);
	r->is_group = BPF_CORE_READ(nh, is_group);
	if (r->is_group) {
		grp = BPF_CORE_READ(nh, nh_grp);
		n = BPF_CORE_READ(grp, num_nh);
		r->members = n;
		r->resilient = BPF_CORE_READ(grp, resilient);
		r->fdb = BPF_CORE_READ(grp, fdb_nh);
		base = (__u64)grp + bpf_core_field_offset(struct nh_group, nh_entries);
		size = bpf_core_type_size(struct nh_grp_entry);
		for (i = 0; i < NTF_MAX_NH && i < n; i++) {
			struct nh_grp_entry *e = (struct nh_grp_entry *)(base + i * size);

			r->nh[i].ifindex = BPF_CORE_READ(e, nh, id);
			r->nh[i].weight = BPF_CORE_READ(e, weight);
		}
		if (n > NTF_MAX_NH)
			r->hdr.flags |= NTF_F_TRUNC;
	} else {
		nhi = BPF_CORE_READ(nh, nh_info);
		r->family = BPF_CORE_READ(nhi, family);
		r->blackhole = BPF_CORE_READ(nhi, reject_nh);
		r->fdb = BPF_CORE_READ(nhi, fdb_nh);
		fill_nhc(&r->nh[0], (struct fib_nh_common *)((__u64)nhi +
				    bpf_core_field_offset(struct nh_info, fib_nhc)));
		r->hdr.ifindex = r->nh[0].ifindex;
		r->members = 1;
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("fexit/call_nexthop_notifiers")
int BPF_PROG(nh_fexit, struct net *net, enum nexthop_event_type ev, struct nexthop *nh,
	     struct netlink_ext_ack *extack, int ret)
{
	return on_nh(net, ev, nh, ret, NTF_F_RET);
}

SEC("kprobe/call_nexthop_notifiers")
int BPF_KPROBE(nh_kprobe, struct net *net, long ev, struct nexthop *nh)
{
	stash_put(TAP_NH, (__u64)net, ev, (__u64)nh, 0, 0);
	return 0;
}

SEC("kretprobe/call_nexthop_notifiers")
int BPF_KRETPROBE(nh_kretprobe, int ret)
{
	struct stash_key k;
	struct stash_args *a = stash_get(TAP_NH, &k);

	if (!a)
		return 0;
	on_nh((struct net *)a->a[0], a->a[1], (struct nexthop *)a->a[2], ret, NTF_F_RET);
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

/* Resilient groups: one bucket's move between nexthops. */
static __always_inline int on_bucket(struct net *net, __u32 group, __u32 bucket, bool force, struct nh_info *oldi,
				     struct nh_info *newi, int ret, __u32 flags)
{
	struct ntf_nh_bucket *r;

	if (!pass(net, NTF_NH_BUCKET))
		return 0;
	r = RESERVE(struct ntf_nh_bucket, NTF_NH_BUCKET, NTF_NH_BUCKET_REPLACE, ret, flags, 0);
	if (!r)
		return 0;
	r->group_id = group;
	r->bucket = bucket;
	r->force = force;
	r->old_id = BPF_CORE_READ(oldi, nh_parent, id);
	r->new_id = BPF_CORE_READ(newi, nh_parent, id);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("fexit/__call_nexthop_res_bucket_notifiers")
int BPF_PROG(nh_bucket_fexit, struct net *net, u32 group, u16 bucket, bool force, struct nh_info *oldi,
	     struct nh_info *newi, struct netlink_ext_ack *extack, int ret)
{
	return on_bucket(net, group, bucket, force, oldi, newi, ret, NTF_F_RET);
}

/* The sixth argument: BPF_KPROBE of older libbpf takes five. */
#if defined(__TARGET_ARCH_x86)
#define KPROBE_PARM6(ctx) (((struct pt_regs *)(ctx))->r9)
#else
#error "the kprobe fallback knows x86's sixth argument register only"
#endif

SEC("kprobe/__call_nexthop_res_bucket_notifiers")
int BPF_KPROBE(nh_bucket_kprobe, struct net *net, u32 group, u16 bucket, bool force, struct nh_info *oldi)
{
	stash_put(TAP_NH_BUCKET, (__u64)net, group, ((__u64)bucket << 1) | (force ? 1 : 0), (__u64)oldi,
		  KPROBE_PARM6(ctx));
	return 0;
}

SEC("kretprobe/__call_nexthop_res_bucket_notifiers")
int BPF_KRETPROBE(nh_bucket_kretprobe, int ret)
{
	struct stash_key k;
	struct stash_args *a = stash_get(TAP_NH_BUCKET, &k);

	if (!a)
		return 0;
	on_bucket((struct net *)a->a[0], a->a[1], a->a[2] >> 1, a->a[2] & 1, (struct nh_info *)a->a[3],
		  (struct nh_info *)a->a[4], ret, NTF_F_RET);
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

/* ---- switchdev ---------------------------------------------------------- */

#define SD(e, ours)                                                                      \
	if (bpf_core_enum_value_exists(enum switchdev_notifier_type, e) &&                \
	    ev == bpf_core_enum_value(enum switchdev_notifier_type, e))                   \
		return ours;

static __always_inline int sd_event(unsigned long ev)
{
	SD(SWITCHDEV_FDB_ADD_TO_BRIDGE, NTF_SD_FDB_ADD_TO_BRIDGE);
	SD(SWITCHDEV_FDB_DEL_TO_BRIDGE, NTF_SD_FDB_DEL_TO_BRIDGE);
	SD(SWITCHDEV_FDB_ADD_TO_DEVICE, NTF_SD_FDB_ADD_TO_DEVICE);
	SD(SWITCHDEV_FDB_DEL_TO_DEVICE, NTF_SD_FDB_DEL_TO_DEVICE);
	SD(SWITCHDEV_FDB_OFFLOADED, NTF_SD_FDB_OFFLOADED);
	SD(SWITCHDEV_FDB_FLUSH_TO_BRIDGE, NTF_SD_FDB_FLUSH_TO_BRIDGE);
	SD(SWITCHDEV_PORT_OBJ_ADD, NTF_SD_PORT_OBJ_ADD);
	SD(SWITCHDEV_PORT_OBJ_DEL, NTF_SD_PORT_OBJ_DEL);
	SD(SWITCHDEV_PORT_ATTR_SET, NTF_SD_PORT_ATTR_SET);
	SD(SWITCHDEV_VXLAN_FDB_ADD_TO_BRIDGE, NTF_SD_VXLAN_FDB_ADD_TO_BRIDGE);
	SD(SWITCHDEV_VXLAN_FDB_DEL_TO_BRIDGE, NTF_SD_VXLAN_FDB_DEL_TO_BRIDGE);
	SD(SWITCHDEV_VXLAN_FDB_ADD_TO_DEVICE, NTF_SD_VXLAN_FDB_ADD_TO_DEVICE);
	SD(SWITCHDEV_VXLAN_FDB_DEL_TO_DEVICE, NTF_SD_VXLAN_FDB_DEL_TO_DEVICE);
	SD(SWITCHDEV_VXLAN_FDB_OFFLOADED, NTF_SD_VXLAN_FDB_OFFLOADED);
	return 0;
}

static __always_inline int on_sd(unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info,
				 int ret, __u32 flags)
{
	int event = sd_event(ev);
	struct ntf_fdb *r;
	int ifindex;

	if (!event || (event > NTF_SD_FDB_FLUSH_TO_BRIDGE && event < NTF_SD_VXLAN_FDB_ADD_TO_BRIDGE))
		return 0;
	if (!pass(dev_net(dev), NTF_FDB))
		return 0;
	ifindex = BPF_CORE_READ(dev, ifindex);
	r = RESERVE(struct ntf_fdb, NTF_FDB, event, ret, flags, ifindex);
	if (!r)
		return 0;
	if (event < NTF_SD_VXLAN_FDB_ADD_TO_BRIDGE) {
		struct switchdev_notifier_fdb_info *fi = (void *)info;
		const unsigned char *addr = BPF_CORE_READ(fi, addr);

		bpf_probe_read_kernel(r->addr, 6, addr);
		r->vid = BPF_CORE_READ(fi, vid);
		r->added_by_user = BPF_CORE_READ_BITFIELD_PROBED(fi, added_by_user);
		r->is_local = BPF_CORE_READ_BITFIELD_PROBED(fi, is_local);
		r->locked = BPF_CORE_READ_BITFIELD_PROBED(fi, locked);
		r->offloaded = BPF_CORE_READ_BITFIELD_PROBED(fi, offloaded);
	} else {
		struct switchdev_notifier_vxlan_fdb_info *vi = (void *)info;

		bpf_core_read(r->addr, 6, &vi->eth_addr);
		r->vni = bpf_ntohl(BPF_CORE_READ(vi, vni));
		r->added_by_user = BPF_CORE_READ(vi, added_by_user);
		r->offloaded = BPF_CORE_READ(vi, offloaded);
		r->remote_family = BPF_CORE_READ(vi, remote_ip.sa.sa_family);
		if (r->remote_family == AF_INET)
			bpf_core_read(r->remote_ip, 4, &vi->remote_ip.sin.sin_addr.s_addr);
		else if (r->remote_family == AF_INET6)
			bpf_core_read(r->remote_ip, 16, &vi->remote_ip.sin6.sin6_addr);
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* The atomic chain: the bridge's FDB, whose callers ignore the result. */
SEC("fentry/call_switchdev_notifiers")
int BPF_PROG(sd_fentry, unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info)
{
	return on_sd(ev, dev, info, 0, 0);
}

SEC("kprobe/call_switchdev_notifiers")
int BPF_KPROBE(sd_kprobe, unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info)
{
	return on_sd(ev, dev, info, 0, 0);
}

#define ATTR(e, ours)                                                                    \
	if (bpf_core_enum_value_exists(enum switchdev_attr_id, e) &&                      \
	    id == bpf_core_enum_value(enum switchdev_attr_id, e))                         \
		return ours;

static __always_inline int attr_id(int id)
{
	ATTR(SWITCHDEV_ATTR_ID_PORT_STP_STATE, NTF_ATTR_STP_STATE);
	ATTR(SWITCHDEV_ATTR_ID_PORT_BRIDGE_FLAGS, NTF_ATTR_BRIDGE_FLAGS);
	ATTR(SWITCHDEV_ATTR_ID_PORT_PRE_BRIDGE_FLAGS, NTF_ATTR_PRE_BRIDGE_FLAGS);
	ATTR(SWITCHDEV_ATTR_ID_PORT_MROUTER, NTF_ATTR_PORT_MROUTER);
	ATTR(SWITCHDEV_ATTR_ID_BRIDGE_AGEING_TIME, NTF_ATTR_AGEING_TIME);
	ATTR(SWITCHDEV_ATTR_ID_BRIDGE_VLAN_FILTERING, NTF_ATTR_VLAN_FILTERING);
	ATTR(SWITCHDEV_ATTR_ID_BRIDGE_VLAN_PROTOCOL, NTF_ATTR_VLAN_PROTOCOL);
	ATTR(SWITCHDEV_ATTR_ID_BRIDGE_MC_DISABLED, NTF_ATTR_MC_DISABLED);
	ATTR(SWITCHDEV_ATTR_ID_BRIDGE_MROUTER, NTF_ATTR_BRIDGE_MROUTER);
	return NTF_ATTR_OTHER;
}

#define OBJ(e, ours)                                                                     \
	if (bpf_core_enum_value_exists(enum switchdev_obj_id, e) &&                       \
	    id == bpf_core_enum_value(enum switchdev_obj_id, e))                          \
		return ours;

static __always_inline int obj_id(int id)
{
	OBJ(SWITCHDEV_OBJ_ID_PORT_VLAN, NTF_OBJ_PORT_VLAN);
	OBJ(SWITCHDEV_OBJ_ID_PORT_MDB, NTF_OBJ_PORT_MDB);
	OBJ(SWITCHDEV_OBJ_ID_HOST_MDB, NTF_OBJ_HOST_MDB);
	return NTF_OBJ_OTHER;
}

static __always_inline void emit_attr(int event, int ifindex, struct switchdev_notifier_port_attr_info *ai,
				      int ret, __u32 flags)
{
	const struct switchdev_attr *a = BPF_CORE_READ(ai, attr);
	struct ntf_port_attr *r;
	int id = attr_id(BPF_CORE_READ(a, id));
	r = RESERVE(struct ntf_port_attr, NTF_PORT_ATTR, event, ret, flags, ifindex);
	if (!r)
		return;
	r->attr_id = id;
	r->orig_ifindex = BPF_CORE_READ(a, orig_dev, ifindex);
	r->handled = BPF_CORE_READ(ai, handled);
	switch (id) {
	case NTF_ATTR_STP_STATE:
		r->value = BPF_CORE_READ(a, u.stp_state);
		break;
	case NTF_ATTR_BRIDGE_FLAGS:
	case NTF_ATTR_PRE_BRIDGE_FLAGS:
		r->value = BPF_CORE_READ(a, u.brport_flags.val);
		r->mask = BPF_CORE_READ(a, u.brport_flags.mask);
		break;
	case NTF_ATTR_AGEING_TIME:
		r->value = BPF_CORE_READ(a, u.ageing_time);
		break;
	case NTF_ATTR_VLAN_PROTOCOL:
		r->value = BPF_CORE_READ(a, u.vlan_protocol);
		break;
	case NTF_ATTR_PORT_MROUTER:
	case NTF_ATTR_BRIDGE_MROUTER:
		r->value = BPF_CORE_READ(a, u.mrouter);
		break;
	case NTF_ATTR_VLAN_FILTERING:
		r->value = BPF_CORE_READ(a, u.vlan_filtering);
		break;
	case NTF_ATTR_MC_DISABLED:
		r->value = BPF_CORE_READ(a, u.mc_disabled);
		break;
	}
	bpf_ringbuf_submit(r, 0);
}

static __always_inline void emit_obj(int event, int ifindex, struct switchdev_notifier_port_obj_info *oi, int ret,
				     __u32 flags)
{
	const struct switchdev_obj *o = BPF_CORE_READ(oi, obj);
	struct ntf_port_obj *r;
	int id = obj_id(BPF_CORE_READ(o, id));

	r = RESERVE(struct ntf_port_obj, NTF_PORT_OBJ, event, ret, flags, ifindex);
	if (!r)
		return;
	r->obj_id = id;
	r->orig_ifindex = BPF_CORE_READ(o, orig_dev, ifindex);
	r->handled = BPF_CORE_READ(oi, handled);
	if (id == NTF_OBJ_PORT_VLAN) {
		const struct switchdev_obj_port_vlan *v = (const void *)o;

		r->vid = BPF_CORE_READ(v, vid);
		r->vlan_flags = BPF_CORE_READ(v, flags);
		if (bpf_core_field_exists(v->changed))
			r->changed = BPF_CORE_READ(v, changed);
	} else if (id == NTF_OBJ_PORT_MDB || id == NTF_OBJ_HOST_MDB) {
		const struct switchdev_obj_port_mdb *m = (const void *)o;

		r->vid = BPF_CORE_READ(m, vid);
		bpf_core_read(r->addr, 6, &m->addr);
	}
	bpf_ringbuf_submit(r, 0);
}

static __always_inline int on_sdb(unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info,
				  int ret, __u32 flags)
{
	int event = sd_event(ev);
	int ifindex;

	if (event != NTF_SD_PORT_OBJ_ADD && event != NTF_SD_PORT_OBJ_DEL && event != NTF_SD_PORT_ATTR_SET)
		return 0;
	if (!pass(dev_net(dev), event == NTF_SD_PORT_ATTR_SET ? NTF_PORT_ATTR : NTF_PORT_OBJ))
		return 0;
	ifindex = BPF_CORE_READ(dev, ifindex);
	if (event == NTF_SD_PORT_ATTR_SET)
		emit_attr(event, ifindex, (void *)info, ret, flags);
	else
		emit_obj(event, ifindex, (void *)info, ret, flags);
	return 0;
}

/* The blocking chain: port objects and attributes, which a driver may veto. */
SEC("fexit/call_switchdev_blocking_notifiers")
int BPF_PROG(sdb_fexit, unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info,
	     struct netlink_ext_ack *extack, int ret)
{
	return on_sdb(ev, dev, info, to_errno(ret), NTF_F_RET);
}

SEC("kprobe/call_switchdev_blocking_notifiers")
int BPF_KPROBE(sdb_kprobe, unsigned long ev, struct net_device *dev, struct switchdev_notifier_info *info)
{
	stash_put(TAP_SDB, ev, (__u64)dev, (__u64)info, 0, 0);
	return 0;
}

SEC("kretprobe/call_switchdev_blocking_notifiers")
int BPF_KRETPROBE(sdb_kretprobe, int ret)
{
	struct stash_key k;
	struct stash_args *a = stash_get(TAP_SDB, &k);

	if (!a)
		return 0;
	on_sdb(a->a[0], (struct net_device *)a->a[1], (struct switchdev_notifier_info *)a->a[2], to_errno(ret),
	       NTF_F_RET);
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

/* tp_btf fallbacks for the FDB where switchdev is not there. */
static __always_inline int emit_tp_fdb(int event, struct net_device *dev, struct net_device *br, const u8 *addr,
				       __u16 vid, bool user, bool local)
{
	struct ntf_fdb *r;

	if (!pass(dev_net(dev), NTF_FDB))
		return 0;
	r = RESERVE(struct ntf_fdb, NTF_FDB, event, 0, NTF_F_TP, BPF_CORE_READ(dev, ifindex));
	if (!r)
		return 0;
	bpf_probe_read_kernel(r->addr, 6, addr);
	r->vid = vid;
	r->added_by_user = user;
	r->is_local = local;
	r->bridge_ifindex = BPF_CORE_READ(br, ifindex);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

SEC("tp_btf/br_fdb_add")
int BPF_PROG(tp_fdb_add, struct ndmsg *ndm, struct net_device *dev, const unsigned char *addr, u16 vid,
	     u16 nlh_flags)
{
	return emit_tp_fdb(NTF_TP_FDB_ADD, dev, NULL, addr, vid, true, false);
}

SEC("tp_btf/br_fdb_external_learn_add")
int BPF_PROG(tp_fdb_learn, struct net_bridge *br, struct net_bridge_port *p, const unsigned char *addr, u16 vid)
{
	struct net_device *dev = p ? BPF_CORE_READ(p, dev) : BPF_CORE_READ(br, dev);

	return emit_tp_fdb(NTF_TP_FDB_LEARN, dev, BPF_CORE_READ(br, dev), addr, vid, false, false);
}

SEC("tp_btf/fdb_delete")
int BPF_PROG(tp_fdb_delete, struct net_bridge *br, struct net_bridge_fdb_entry *f)
{
	struct net_device *brdev = BPF_CORE_READ(br, dev);
	struct net_bridge_port *p = BPF_CORE_READ(f, dst);
	struct net_device *dev = p ? BPF_CORE_READ(p, dev) : brdev;

	return emit_tp_fdb(NTF_TP_FDB_DELETE, dev, brdev, f->key.addr.addr, BPF_CORE_READ(f, key.vlan_id), false,
			   !p);
}

/* ---- netdevice: call_netdevice_notifiers_info ---------------------------- */

#define ND(e, ours)                                                                      \
	if (bpf_core_enum_value_exists(enum netdev_cmd, e) && ev == bpf_core_enum_value(enum netdev_cmd, e)) \
		return ours;

static __always_inline int netdev_event(unsigned long ev)
{
	ND(NETDEV_UP, NTF_NETDEV_UP);
	ND(NETDEV_DOWN, NTF_NETDEV_DOWN);
	ND(NETDEV_GOING_DOWN, NTF_NETDEV_GOING_DOWN);
	ND(NETDEV_CHANGE, NTF_NETDEV_CHANGE);
	ND(NETDEV_REGISTER, NTF_NETDEV_REGISTER);
	ND(NETDEV_UNREGISTER, NTF_NETDEV_UNREGISTER);
	ND(NETDEV_CHANGEMTU, NTF_NETDEV_CHANGEMTU);
	ND(NETDEV_CHANGEADDR, NTF_NETDEV_CHANGEADDR);
	ND(NETDEV_CHANGEUPPER, NTF_NETDEV_CHANGEUPPER);
	ND(NETDEV_PRECHANGEUPPER, NTF_NETDEV_PRECHANGEUPPER);
	return 0;
}

static __always_inline int on_netdev(unsigned long ev, struct netdev_notifier_info *info, int ret, __u32 flags)
{
	int event = netdev_event(ev);
	struct net_device *dev, *upper;
	struct ntf_netdev *r;
	int len;

	if (!event)
		return 0;
	dev = BPF_CORE_READ(info, dev);
	if (!pass(dev_net(dev), NTF_NETDEV))
		return 0;
	r = RESERVE(struct ntf_netdev, NTF_NETDEV, event, ret, flags, BPF_CORE_READ(dev, ifindex));
	if (!r)
		return 0;
	bpf_core_read_str(r->name, sizeof(r->name), &dev->name);
	r->mtu = BPF_CORE_READ(dev, mtu);
	r->dev_flags = BPF_CORE_READ(dev, flags);
	len = BPF_CORE_READ(dev, addr_len);
	r->addr_len = len;
	if (len > 0) {
		/* dev_addr points at MAX_ADDR_LEN (32) bytes; user space keeps
		 * addr_len of them */
		const unsigned char *addr = BPF_CORE_READ(dev, dev_addr);

		bpf_probe_read_kernel(r->addr, sizeof(r->addr), addr);
	}
	if (event == NTF_NETDEV_CHANGEMTU) {
		r->old_mtu = BPF_CORE_READ((struct netdev_notifier_info_ext *)info, ext.mtu);
	} else if (event == NTF_NETDEV_CHANGEUPPER || event == NTF_NETDEV_PRECHANGEUPPER) {
		struct netdev_notifier_changeupper_info *ci = (void *)info;

		upper = BPF_CORE_READ(ci, upper_dev);
		r->upper_ifindex = BPF_CORE_READ(upper, ifindex);
		r->linking = BPF_CORE_READ(ci, linking);
		r->master = BPF_CORE_READ(ci, master);
	}
	bpf_ringbuf_submit(r, 0);
	return 0;
}

/* fexit: a veto of PRECHANGEUPPER (say, a driver refusing a bond) is in ret. */
SEC("fexit/call_netdevice_notifiers_info")
int BPF_PROG(netdev_fexit, unsigned long ev, struct netdev_notifier_info *info, int ret)
{
	return on_netdev(ev, info, to_errno(ret), NTF_F_RET);
}

SEC("kprobe/call_netdevice_notifiers_info")
int BPF_KPROBE(netdev_kprobe, unsigned long ev, struct netdev_notifier_info *info)
{
	stash_put(TAP_NETDEV, ev, (__u64)info, 0, 0, 0);
	return 0;
}

SEC("kretprobe/call_netdevice_notifiers_info")
int BPF_KRETPROBE(netdev_kretprobe, int ret)
{
	struct stash_key k;
	struct stash_args *a = stash_get(TAP_NETDEV, &k);

	if (!a)
		return 0;
	on_netdev(a->a[0], (struct netdev_notifier_info *)a->a[1], to_errno(ret), NTF_F_RET);
	bpf_map_delete_elem(&stash, &k);
	return 0;
}

/* ---- netevent: call_netevent_notifiers ----------------------------------- */

#define NE(e, ours)                                                                      \
	if (bpf_core_enum_value_exists(enum netevent_notif_type, e) &&                    \
	    ev == bpf_core_enum_value(enum netevent_notif_type, e))                       \
		return ours;

static __always_inline int netevent_event(unsigned long ev)
{
	NE(NETEVENT_NEIGH_UPDATE, NTF_NE_NEIGH_UPDATE);
	NE(NETEVENT_DELAY_PROBE_TIME_UPDATE, NTF_NE_DELAY_PROBE_TIME_UPDATE);
	NE(NETEVENT_IPV4_MPATH_HASH_UPDATE, NTF_NE_IPV4_MPATH_HASH_UPDATE);
	NE(NETEVENT_IPV6_MPATH_HASH_UPDATE, NTF_NE_IPV6_MPATH_HASH_UPDATE);
	return 0;
}

static __always_inline int emit_neigh(int event, struct neighbour *n, const u8 *lladdr, int nud, __u32 flags)
{
	struct net_device *dev = BPF_CORE_READ(n, dev);
	struct ntf_neigh *r;
	int family;

	if (!pass(dev_net(dev), NTF_NEIGH))
		return 0;
	r = RESERVE(struct ntf_neigh, NTF_NEIGH, event, 0, flags, BPF_CORE_READ(dev, ifindex));
	if (!r)
		return 0;
	family = BPF_CORE_READ(n, tbl, family);
	r->family = family;
	if (family == AF_INET)
		bpf_core_read(r->key, 4, &n->primary_key);
	else if (family == AF_INET6)
		bpf_core_read(r->key, 16, &n->primary_key);
	if (lladdr)
		bpf_probe_read_kernel(r->lladdr, 6, lladdr);
	else
		bpf_core_read(r->lladdr, 6, &n->ha);
	r->nud_state = nud >= 0 ? nud : BPF_CORE_READ(n, nud_state);
	r->flags = BPF_CORE_READ(n, flags);
	r->dead = BPF_CORE_READ(n, dead);
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline int on_netevent(unsigned long ev, void *v)
{
	int event = netevent_event(ev);

	if (event == NTF_NE_NEIGH_UPDATE)
		return emit_neigh(event, v, NULL, -1, 0);
	if (event == NTF_NE_DELAY_PROBE_TIME_UPDATE) {
		struct neigh_parms *p = v;
		struct ntf_probe_time *r;

		if (!pass(BPF_CORE_READ(p, net.net), NTF_PROBE_TIME))
			return 0;
		r = RESERVE(struct ntf_probe_time, NTF_PROBE_TIME, event, 0, 0, BPF_CORE_READ(p, dev, ifindex));
		if (!r)
			return 0;
		r->family = BPF_CORE_READ(p, tbl, family);
		r->delay_probe_time = BPF_CORE_READ(p, data[NEIGH_VAR_DELAY_PROBE_TIME]);
		bpf_ringbuf_submit(r, 0);
		return 0;
	}
	if (event == NTF_NE_IPV4_MPATH_HASH_UPDATE || event == NTF_NE_IPV6_MPATH_HASH_UPDATE) {
		struct net *net = v;
		struct ntf_mpath_hash *r;

		if (!pass(net, NTF_MPATH_HASH))
			return 0;
		r = RESERVE(struct ntf_mpath_hash, NTF_MPATH_HASH, event, 0, 0, 0);
		if (!r)
			return 0;
		if (event == NTF_NE_IPV4_MPATH_HASH_UPDATE) {
			r->family = AF_INET;
			r->policy = BPF_CORE_READ(net, ipv4.sysctl_fib_multipath_hash_policy);
			r->fields = BPF_CORE_READ(net, ipv4.sysctl_fib_multipath_hash_fields);
		} else {
			r->family = AF_INET6;
			r->policy = BPF_CORE_READ(net, ipv6.sysctl.multipath_hash_policy);
			r->fields = BPF_CORE_READ(net, ipv6.sysctl.multipath_hash_fields);
		}
		bpf_ringbuf_submit(r, 0);
	}
	return 0;
}

/* Callers ignore the result: fentry. */
SEC("fentry/call_netevent_notifiers")
int BPF_PROG(netevent_fentry, unsigned long ev, void *v)
{
	return on_netevent(ev, v);
}

SEC("kprobe/call_netevent_notifiers")
int BPF_KPROBE(netevent_kprobe, unsigned long ev, void *v)
{
	return on_netevent(ev, v);
}

/* The neighbour tracepoint sees updates before they apply: the new state. */
SEC("tp_btf/neigh_update")
int BPF_PROG(tp_neigh_update, struct neighbour *n, const u8 *lladdr, u8 new, u32 flags, u32 pid)
{
	return emit_neigh(NTF_NE_TP_NEIGH_UPDATE, n, lladdr, new, NTF_F_TP);
}
