/* SPDX-License-Identifier: GPL-2.0 OR MIT */
/*
 * The records of the notifier taps (notifier.bpf.c), as host-bridge's
 * src/notifier/record.rs reads them. This header is the layout's one source
 * of truth: record.rs declares the same structs with #[repr(C)], and both
 * sides assert the sizes below at compile time.
 *
 * Every record starts with struct ntf_hdr; hdr.kind says which struct
 * follows. All multi-byte fields are host byte order except addresses,
 * which are the kernel's bytes (network order for IPv4/IPv6).
 */
#ifndef __DPU_NOTIFIER_H__
#define __DPU_NOTIFIER_H__

/* What a record is about (ntf_hdr.kind). */
enum ntf_kind {
	NTF_FIB4 = 1,		/* call_fib_notifiers, AF_INET entry */
	NTF_FIB6 = 2,		/* call_fib_notifiers, AF_INET6 entry */
	NTF_FIB_RULE = 3,	/* call_fib_notifiers, FIB_EVENT_RULE_* */
	NTF_NEXTHOP = 4,	/* call_nexthop_notifiers */
	NTF_NH_BUCKET = 5,	/* __call_nexthop_res_bucket_notifiers */
	NTF_FDB = 6,		/* switchdev atomic chain, FDB events */
	NTF_PORT_OBJ = 7,	/* switchdev blocking chain, port objects */
	NTF_PORT_ATTR = 8,	/* switchdev blocking chain, port attributes */
	NTF_NETDEV = 9,		/* call_netdevice_notifiers_info */
	NTF_NEIGH = 10,		/* netevent NEIGH_UPDATE, or tp_btf neigh_update */
	NTF_PROBE_TIME = 11,	/* netevent DELAY_PROBE_TIME_UPDATE */
	NTF_MPATH_HASH = 12,	/* netevent IPV{4,6}_MPATH_HASH_UPDATE */
	NTF_KIND_MAX = 13,
};

/* ntf_hdr.flags */
#define NTF_F_RET	0x1	/* ret holds the chain's result (exit probe) */
#define NTF_F_TRUNC	0x2	/* more nexthops than NTF_MAX_NH: list cut */
#define NTF_F_TP	0x4	/* from a tracepoint: event is the tp's own */

/* Most nexthops one record carries inline. */
#define NTF_MAX_NH	8


/*
 * ntf_hdr.event: the taps translate each chain's event (and attribute and
 * object ids) into these numbers with CO-RE enum relocations, because the
 * kernel's own numbering moves between versions. Events a tap does not
 * translate are not emitted.
 */
enum ntf_fib_event {
	NTF_FIB_REPLACE = 1,
	NTF_FIB_APPEND = 2,
	NTF_FIB_ADD = 3,
	NTF_FIB_DEL = 4,
	NTF_FIB_RULE_ADD = 5,
	NTF_FIB_RULE_DEL = 6,
};

enum ntf_nh_event {
	NTF_NH_DEL = 1,
	NTF_NH_REPLACE = 2,
	NTF_NH_RES_TABLE_PRE_REPLACE = 3,
	NTF_NH_BUCKET_REPLACE = 4,
};

enum ntf_sd_event {
	NTF_SD_FDB_ADD_TO_BRIDGE = 1,
	NTF_SD_FDB_DEL_TO_BRIDGE = 2,
	NTF_SD_FDB_ADD_TO_DEVICE = 3,
	NTF_SD_FDB_DEL_TO_DEVICE = 4,
	NTF_SD_FDB_OFFLOADED = 5,
	NTF_SD_FDB_FLUSH_TO_BRIDGE = 6,
	NTF_SD_PORT_OBJ_ADD = 7,
	NTF_SD_PORT_OBJ_DEL = 8,
	NTF_SD_PORT_ATTR_SET = 9,
	NTF_SD_VXLAN_FDB_ADD_TO_BRIDGE = 10,
	NTF_SD_VXLAN_FDB_DEL_TO_BRIDGE = 11,
	NTF_SD_VXLAN_FDB_ADD_TO_DEVICE = 12,
	NTF_SD_VXLAN_FDB_DEL_TO_DEVICE = 13,
	NTF_SD_VXLAN_FDB_OFFLOADED = 14,
	/* tp_btf fallbacks (NTF_F_TP) */
	NTF_TP_FDB_ADD = 32,	/* br_fdb_add: a user's add */
	NTF_TP_FDB_LEARN = 33,	/* br_fdb_external_learn_add */
	NTF_TP_FDB_DELETE = 34,	/* fdb_delete */
};

/* ntf_port_attr.attr_id */
enum ntf_attr {
	NTF_ATTR_OTHER = 0,
	NTF_ATTR_STP_STATE = 1,
	NTF_ATTR_BRIDGE_FLAGS = 2,
	NTF_ATTR_PRE_BRIDGE_FLAGS = 3,
	NTF_ATTR_PORT_MROUTER = 4,
	NTF_ATTR_AGEING_TIME = 5,
	NTF_ATTR_VLAN_FILTERING = 6,
	NTF_ATTR_VLAN_PROTOCOL = 7,
	NTF_ATTR_MC_DISABLED = 8,
	NTF_ATTR_BRIDGE_MROUTER = 9,
};

/* ntf_port_obj.obj_id */
enum ntf_obj {
	NTF_OBJ_OTHER = 0,
	NTF_OBJ_PORT_VLAN = 1,
	NTF_OBJ_PORT_MDB = 2,
	NTF_OBJ_HOST_MDB = 3,
};

enum ntf_netdev_event {
	NTF_NETDEV_UP = 1,
	NTF_NETDEV_DOWN = 2,
	NTF_NETDEV_GOING_DOWN = 3,
	NTF_NETDEV_CHANGE = 4,
	NTF_NETDEV_REGISTER = 5,
	NTF_NETDEV_UNREGISTER = 6,
	NTF_NETDEV_CHANGEMTU = 7,
	NTF_NETDEV_CHANGEADDR = 8,
	NTF_NETDEV_CHANGEUPPER = 9,
	NTF_NETDEV_PRECHANGEUPPER = 10,
};

enum ntf_netevent {
	NTF_NE_NEIGH_UPDATE = 1,
	NTF_NE_DELAY_PROBE_TIME_UPDATE = 2,
	NTF_NE_IPV4_MPATH_HASH_UPDATE = 3,
	NTF_NE_IPV6_MPATH_HASH_UPDATE = 4,
	NTF_NE_TP_NEIGH_UPDATE = 32,	/* tp_btf neigh_update (NTF_F_TP) */
};

struct ntf_hdr {
	__u16 kind;
	__u16 event;	/* the chain's event value (enum of that chain) */
	__s32 ret;	/* notifier_to_errno() of the chain, if NTF_F_RET */
	__u64 ts_ns;	/* bpf_ktime_get_ns() */
	__u32 flags;
	__u32 ifindex;	/* the device the event is about, 0 if none */
};

struct ntf_nh {
	__u8 gw[16];
	__u32 ifindex;
	__u32 weight;	/* 1-based, as the kernel keeps it */
	__u8 gw_family;	/* 0, AF_INET or AF_INET6 */
	__u8 flags;	/* RTNH_F_* */
	__u8 pad[2];
};

struct ntf_fib4 {
	struct ntf_hdr hdr;
	__u32 dst;	/* network order */
	__u32 tb_id;
	__u32 priority;
	__u32 nh_id;	/* nexthop object, 0 for inline nexthops */
	__u8 dst_len;
	__u8 dscp;	/* dscp_t (the TOS byte) */
	__u8 type;	/* RTN_* */
	__u8 protocol;
	__u8 scope;
	__u8 nhs;	/* nexthops in the route (may exceed NTF_MAX_NH) */
	__u8 pad[2];
	struct ntf_nh nh[NTF_MAX_NH];
};

struct ntf_fib6 {
	struct ntf_hdr hdr;
	__u8 dst[16];
	__u8 src[16];
	__u32 tb_id;
	__u32 metric;
	__u32 nh_id;
	__u32 nsiblings;	/* from the notifier info: paths beyond nh[0] */
	__u8 dst_len;
	__u8 src_len;
	__u8 type;
	__u8 protocol;
	struct ntf_nh nh;	/* the first path (fib6_nh[0]) */
};

struct ntf_fib_rule {
	struct ntf_hdr hdr;
	__u32 family;
	__u32 table;
	__u32 pref;
	__u32 mark;
	__u32 mark_mask;
	__s32 iifindex;
	__s32 oifindex;
	__u8 action;
	__u8 proto;
	__u8 ip_proto;
	__u8 pad;
};

struct ntf_nexthop {
	struct ntf_hdr hdr;
	__u32 id;
	__u8 is_group;
	__u8 family;	/* single: AF_INET or AF_INET6 */
	__u8 blackhole;
	__u8 fdb;
	__u8 resilient;
	__u8 protocol;
	__u16 members;	/* group: member count (may exceed NTF_MAX_NH) */
	__u32 pad;
	/* single: nh[0]; group: nh[i].gw_family = 0 and nh[i].weight, and
	 * the member's id in nh[i].ifindex */
	struct ntf_nh nh[NTF_MAX_NH];
};

struct ntf_nh_bucket {
	struct ntf_hdr hdr;
	__u32 group_id;
	__u32 pad1;
	__u16 bucket;
	__u8 force;
	__u8 pad;
	__u32 old_id;
	__u32 new_id;
	__u32 pad2;
};

struct ntf_fdb {
	struct ntf_hdr hdr;
	__u8 addr[6];
	__u16 vid;
	__u8 added_by_user;
	__u8 is_local;
	__u8 locked;
	__u8 offloaded;
	__u32 vni;		/* VXLAN FDB: VNI; 0 otherwise */
	__u8 remote_ip[16];	/* VXLAN FDB: remote */
	__u8 remote_family;
	__u8 pad[3];
	__u32 bridge_ifindex;	/* tp_btf: the bridge; 0 if unknown */
};

struct ntf_port_obj {
	struct ntf_hdr hdr;
	__u32 obj_id;		/* enum switchdev_obj_id */
	__u32 orig_ifindex;	/* obj->orig_dev */
	__u16 vid;		/* VLAN, MDB */
	__u16 vlan_flags;	/* BRIDGE_VLAN_INFO_* */
	__u8 changed;		/* VLAN: flags changed on an existing VLAN */
	__u8 addr[6];		/* MDB group MAC */
	__u8 handled;
	__u8 pad[4];
};

struct ntf_port_attr {
	struct ntf_hdr hdr;
	__u32 attr_id;		/* enum switchdev_attr_id */
	__u32 orig_ifindex;
	__u64 value;		/* stp_state, ageing_time (clock_t), bools,
				 * vlan_protocol, brport_flags.val */
	__u64 mask;		/* brport_flags.mask */
	__u8 handled;
	__u8 pad[7];
};

struct ntf_netdev {
	struct ntf_hdr hdr;
	char name[16];
	__u8 addr[32];
	__u32 mtu;
	__u32 old_mtu;		/* CHANGEMTU: the previous MTU */
	__u32 dev_flags;	/* IFF_* */
	__u32 upper_ifindex;	/* (PRE)CHANGEUPPER */
	__u8 addr_len;
	__u8 linking;		/* (PRE)CHANGEUPPER */
	__u8 master;		/* (PRE)CHANGEUPPER */
	__u8 pad[5];
};

struct ntf_neigh {
	struct ntf_hdr hdr;
	__u8 key[16];
	__u8 lladdr[8];
	__u32 flags;		/* NTF_* */
	__u8 family;
	__u8 nud_state;
	__u8 dead;
	__u8 pad;
};

struct ntf_probe_time {
	struct ntf_hdr hdr;
	__u32 family;
	__u32 delay_probe_time;	/* jiffies, as NEIGH_VAR keeps it */
};

struct ntf_mpath_hash {
	struct ntf_hdr hdr;
	__u32 fields;		/* fib_multipath_hash_fields */
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 policy;		/* fib_multipath_hash_policy */
	__u8 pad[2];
};

/* The tap configuration (the "config" array map, one entry). */
struct ntf_config {
	__u32 netns_inum;	/* only this netns passes; 0: every netns */
	__u32 pad;
};

/* Per-CPU counters (the "counters" map, index enum ntf_kind). */
struct ntf_counter {
	__u64 events;		/* records emitted */
	__u64 drops;		/* records lost: the ring buffer was full */
	__u64 filtered;		/* events of another netns */
};

#define NTF_SIZE_HDR		24
#define NTF_SIZE_NH		28
#define NTF_SIZE_FIB4		(NTF_SIZE_HDR + 24 + 8 * NTF_SIZE_NH)
#define NTF_SIZE_FIB6		(NTF_SIZE_HDR + 52 + NTF_SIZE_NH)
#define NTF_SIZE_FIB_RULE	(NTF_SIZE_HDR + 32)
#define NTF_SIZE_NEXTHOP	(NTF_SIZE_HDR + 16 + 8 * NTF_SIZE_NH)
#define NTF_SIZE_NH_BUCKET	(NTF_SIZE_HDR + 24)
#define NTF_SIZE_FDB		(NTF_SIZE_HDR + 40)
#define NTF_SIZE_PORT_OBJ	(NTF_SIZE_HDR + 24)
#define NTF_SIZE_PORT_ATTR	(NTF_SIZE_HDR + 32)
#define NTF_SIZE_NETDEV		(NTF_SIZE_HDR + 72)
#define NTF_SIZE_NEIGH		(NTF_SIZE_HDR + 32)
#define NTF_SIZE_PROBE_TIME	(NTF_SIZE_HDR + 8)
#define NTF_SIZE_MPATH_HASH	(NTF_SIZE_HDR + 8)

#endif /* __DPU_NOTIFIER_H__ */
