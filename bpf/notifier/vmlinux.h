/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The subset of the kernel's BTF that the notifier taps read, in the form
 * `bpftool btf dump file vmlinux.btf format c` writes it, cut down to the
 * members read. Records carry preserve_access_index, so every member
 * access is a CO-RE relocation that libbpf resolves against the running
 * kernel's BTF at load time: offsets here are not the kernel's, names and
 * kinds are. A program whose members are gone from the running kernel
 * fails to load, and host-bridge reports its tap as unavailable.
 *
 * Regenerate the full header for comparison with
 *   bpftool btf dump file /var/cache/dpu-kernel/<hash>/vmlinux.btf format c
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef _Bool bool;
typedef long clock_t;
typedef u8 dscp_t;

enum {
	false = 0,
	true = 1,
};

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

/* Enums whose values the taps translate with CO-RE enum relocations
 * (bpf_core_enum_value): their numbering differs between kernels. */
enum fib_event_type {
	FIB_EVENT_ENTRY_REPLACE = 0,
	FIB_EVENT_ENTRY_APPEND = 1,
	FIB_EVENT_ENTRY_ADD = 2,
	FIB_EVENT_ENTRY_DEL = 3,
	FIB_EVENT_RULE_ADD = 4,
	FIB_EVENT_RULE_DEL = 5,
};

enum nexthop_event_type {
	NEXTHOP_EVENT_DEL = 0,
	NEXTHOP_EVENT_REPLACE = 1,
	NEXTHOP_EVENT_RES_TABLE_PRE_REPLACE = 2,
	NEXTHOP_EVENT_BUCKET_REPLACE = 3,
};

enum switchdev_notifier_type {
	SWITCHDEV_FDB_ADD_TO_BRIDGE = 1,
	SWITCHDEV_FDB_DEL_TO_BRIDGE = 2,
	SWITCHDEV_FDB_ADD_TO_DEVICE = 3,
	SWITCHDEV_FDB_DEL_TO_DEVICE = 4,
	SWITCHDEV_FDB_OFFLOADED = 5,
	SWITCHDEV_FDB_FLUSH_TO_BRIDGE = 6,
	SWITCHDEV_PORT_OBJ_ADD = 7,
	SWITCHDEV_PORT_OBJ_DEL = 8,
	SWITCHDEV_PORT_ATTR_SET = 9,
	SWITCHDEV_VXLAN_FDB_ADD_TO_BRIDGE = 10,
	SWITCHDEV_VXLAN_FDB_DEL_TO_BRIDGE = 11,
	SWITCHDEV_VXLAN_FDB_ADD_TO_DEVICE = 12,
	SWITCHDEV_VXLAN_FDB_DEL_TO_DEVICE = 13,
	SWITCHDEV_VXLAN_FDB_OFFLOADED = 14,
};

enum switchdev_attr_id {
	SWITCHDEV_ATTR_ID_UNDEFINED = 0,
	SWITCHDEV_ATTR_ID_PORT_STP_STATE = 1,
	SWITCHDEV_ATTR_ID_PORT_MST_STATE = 2,
	SWITCHDEV_ATTR_ID_PORT_BRIDGE_FLAGS = 3,
	SWITCHDEV_ATTR_ID_PORT_PRE_BRIDGE_FLAGS = 4,
	SWITCHDEV_ATTR_ID_PORT_MROUTER = 5,
	SWITCHDEV_ATTR_ID_BRIDGE_AGEING_TIME = 6,
	SWITCHDEV_ATTR_ID_BRIDGE_VLAN_FILTERING = 7,
	SWITCHDEV_ATTR_ID_BRIDGE_VLAN_PROTOCOL = 8,
	SWITCHDEV_ATTR_ID_BRIDGE_MC_DISABLED = 9,
	SWITCHDEV_ATTR_ID_BRIDGE_MROUTER = 10,
};

enum switchdev_obj_id {
	SWITCHDEV_OBJ_ID_UNDEFINED = 0,
	SWITCHDEV_OBJ_ID_PORT_VLAN = 1,
	SWITCHDEV_OBJ_ID_PORT_MDB = 2,
	SWITCHDEV_OBJ_ID_HOST_MDB = 3,
};

enum netdev_cmd {
	NETDEV_UP = 1,
	NETDEV_DOWN = 2,
	NETDEV_CHANGE = 4,
	NETDEV_REGISTER = 5,
	NETDEV_UNREGISTER = 6,
	NETDEV_CHANGEMTU = 7,
	NETDEV_CHANGEADDR = 8,
	NETDEV_GOING_DOWN = 10,
	NETDEV_CHANGEUPPER = 22,
	NETDEV_PRECHANGEUPPER = 27,
};

enum netevent_notif_type {
	NETEVENT_NEIGH_UPDATE = 1,
	NETEVENT_REDIRECT = 2,
	NETEVENT_DELAY_PROBE_TIME_UPDATE = 3,
	NETEVENT_IPV4_MPATH_HASH_UPDATE = 4,
	NETEVENT_IPV6_MPATH_HASH_UPDATE = 5,
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

struct pt_regs {
	long unsigned int r15;
	long unsigned int r14;
	long unsigned int r13;
	long unsigned int r12;
	long unsigned int bp;
	long unsigned int bx;
	long unsigned int r11;
	long unsigned int r10;
	long unsigned int r9;
	long unsigned int r8;
	long unsigned int ax;
	long unsigned int cx;
	long unsigned int dx;
	long unsigned int si;
	long unsigned int di;
	long unsigned int orig_ax;
	long unsigned int ip;
	long unsigned int cs;
	long unsigned int flags;
	long unsigned int sp;
	long unsigned int ss;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct netns_ipv4 {
	u32 sysctl_fib_multipath_hash_fields;
	u8 sysctl_fib_multipath_hash_policy;
};

struct netns_sysctl_ipv6 {
	u32 multipath_hash_fields;
	u8 multipath_hash_policy;
};

struct netns_ipv6 {
	struct netns_sysctl_ipv6 sysctl;
};

struct net {
	struct ns_common ns;
	struct netns_ipv4 ipv4;
	struct netns_ipv6 ipv6;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct net_device {
	char name[16];
	unsigned int flags;
	int ifindex;
	unsigned int mtu;
	unsigned char addr_len;
	const unsigned char *dev_addr;
	possible_net_t nd_net;
};

struct netlink_ext_ack;

/* FIB */
struct fib_notifier_info {
	int family;
	struct netlink_ext_ack *extack;
};

struct fib_nh_common {
	struct net_device *nhc_dev;
	u8 nhc_gw_family;
	unsigned char nhc_flags;
	union {
		__be32 ipv4;
		struct in6_addr ipv6;
	} nhc_gw;
	int nhc_weight;
};

struct fib_nh {
	struct fib_nh_common nh_common;
};

struct nexthop;

struct fib_info {
	unsigned char fib_protocol;
	unsigned char fib_scope;
	unsigned char fib_type;
	u32 fib_priority;
	int fib_nhs;
	struct nexthop *nh;
	struct fib_nh fib_nh[0];
};

struct fib_entry_notifier_info {
	struct fib_notifier_info info;
	u32 dst;
	int dst_len;
	struct fib_info *fi;
	dscp_t dscp;
	u8 type;
	u32 tb_id;
};

struct rt6key {
	struct in6_addr addr;
	int plen;
};

struct fib6_table {
	u32 tb6_id;
};

struct fib6_nh {
	struct fib_nh_common nh_common;
};

struct fib6_info {
	struct fib6_table *fib6_table;
	unsigned int fib6_nsiblings;
	struct rt6key fib6_dst;
	struct rt6key fib6_src;
	u32 fib6_metric;
	u8 fib6_protocol;
	u8 fib6_type;
	struct nexthop *nh;
	struct fib6_nh fib6_nh[0];
};

struct fib6_entry_notifier_info {
	struct fib_notifier_info info;
	struct fib6_info *rt;
	unsigned int nsiblings;
};

struct fib_rule {
	int iifindex;
	int oifindex;
	u32 mark;
	u32 mark_mask;
	u32 table;
	u8 action;
	u8 proto;
	u8 ip_proto;
	u32 pref;
};

struct fib_rule_notifier_info {
	struct fib_notifier_info info;
	struct fib_rule *rule;
};

/* Nexthop objects */
struct nh_info {
	struct nexthop *nh_parent;
	u8 family;
	bool reject_nh;
	bool fdb_nh;
	union {
		struct fib_nh_common fib_nhc;
		struct fib_nh fib_nh;
		struct fib6_nh fib6_nh;
	};
};

struct nh_grp_entry {
	struct nexthop *nh;
	u16 weight;
};

struct nh_group {
	u16 num_nh;
	bool resilient;
	bool fdb_nh;
	struct nh_grp_entry nh_entries[0];
};

struct nexthop {
	u32 id;
	u8 protocol;
	u8 nh_flags;
	bool is_group;
	union {
		struct nh_info *nh_info;
		struct nh_group *nh_grp;
	};
};

/* switchdev */
struct switchdev_notifier_info {
	struct net_device *dev;
	struct netlink_ext_ack *extack;
	const void *ctx;
};

struct switchdev_notifier_fdb_info {
	struct switchdev_notifier_info info;
	const unsigned char *addr;
	u16 vid;
	u8 added_by_user: 1;
	u8 is_local: 1;
	u8 locked: 1;
	u8 offloaded: 1;
};

struct in_addr {
	__be32 s_addr;
};

struct sockaddr {
	unsigned short sa_family;
};

struct sockaddr_in {
	unsigned short sin_family;
	__be16 sin_port;
	struct in_addr sin_addr;
};

struct sockaddr_in6 {
	unsigned short sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	struct in6_addr sin6_addr;
};

union vxlan_addr {
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr sa;
};

struct switchdev_notifier_vxlan_fdb_info {
	struct switchdev_notifier_info info;
	union vxlan_addr remote_ip;
	__be32 remote_vni;
	u32 remote_ifindex;
	u8 eth_addr[6];
	__be32 vni;
	bool offloaded;
	bool added_by_user;
};

struct switchdev_obj {
	struct net_device *orig_dev;
	enum switchdev_obj_id id;
	u32 flags;
};

struct switchdev_obj_port_vlan {
	struct switchdev_obj obj;
	u16 flags;
	u16 vid;
	bool changed;
};

struct switchdev_obj_port_mdb {
	struct switchdev_obj obj;
	unsigned char addr[6];
	u16 vid;
};

struct switchdev_notifier_port_obj_info {
	struct switchdev_notifier_info info;
	const struct switchdev_obj *obj;
	bool handled;
};

struct switchdev_brport_flags {
	long unsigned int val;
	long unsigned int mask;
};

struct switchdev_attr {
	struct net_device *orig_dev;
	enum switchdev_attr_id id;
	u32 flags;
	union {
		u8 stp_state;
		struct switchdev_brport_flags brport_flags;
		bool mrouter;
		clock_t ageing_time;
		bool vlan_filtering;
		u16 vlan_protocol;
		bool mst;
		bool mc_disabled;
	} u;
};

struct switchdev_notifier_port_attr_info {
	struct switchdev_notifier_info info;
	const struct switchdev_attr *attr;
	bool handled;
};

/* netdevice */
struct netdev_notifier_info {
	struct net_device *dev;
	struct netlink_ext_ack *extack;
};

struct netdev_notifier_info_ext {
	struct netdev_notifier_info info;
	union {
		u32 mtu;
	} ext;
};

struct netdev_notifier_changeupper_info {
	struct netdev_notifier_info info;
	struct net_device *upper_dev;
	bool master;
	bool linking;
};

/* netevent */
struct neigh_table {
	int family;
	unsigned int key_len;
};

struct neigh_parms {
	possible_net_t net;
	struct net_device *dev;
	struct neigh_table *tbl;
	int data[13];
};

struct neighbour {
	struct neigh_table *tbl;
	u8 nud_state;
	u8 dead;
	u32 flags;
	unsigned char ha[32];
	struct net_device *dev;
	u8 primary_key[0];
};

/* bridge, for the tp_btf fallbacks */
typedef struct {
	unsigned char addr[6];
} mac_addr;

struct net_bridge_port {
	struct net_device *dev;
};

struct net_bridge {
	struct net_device *dev;
};

struct net_bridge_fdb_key {
	mac_addr addr;
	u16 vlan_id;
};

struct net_bridge_fdb_entry {
	struct net_bridge_port *dst;
	struct net_bridge_fdb_key key;
	long unsigned int flags;
};

struct ndmsg {
	__u8 ndm_family;
	__u16 ndm_state;
	__u8 ndm_flags;
};


#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
