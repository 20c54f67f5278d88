/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The subset of the test kernel's BTF that the firmware uses, in the form
 * `bpftool btf dump file vmlinux.btf format c` writes it, cut down to the
 * members read. Records carry preserve_access_index, so every member
 * access is a CO-RE relocation: libbpf resolves it against the running
 * kernel's BTF at load time (and refuses to load if a member is gone).
 * Only the struct_ops type itself is laid out here as the kernel has it,
 * because libbpf copies its data members by name.
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
typedef __u32 __wsum;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef _Bool bool;

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
	BPF_F_LOCK = 4,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

enum flow_cls_command {
	FLOW_CLS_REPLACE = 0,
	FLOW_CLS_DESTROY = 1,
	FLOW_CLS_STATS = 2,
	FLOW_CLS_TMPLT_CREATE = 3,
	FLOW_CLS_TMPLT_DESTROY = 4,
};

enum flow_action_id {
	FLOW_ACTION_ACCEPT = 0,
	FLOW_ACTION_DROP = 1,
	FLOW_ACTION_TRAP = 2,
	FLOW_ACTION_GOTO = 3,
	FLOW_ACTION_REDIRECT = 4,
	FLOW_ACTION_MIRRED = 5,
	FLOW_ACTION_REDIRECT_INGRESS = 6,
	FLOW_ACTION_MIRRED_INGRESS = 7,
	FLOW_ACTION_VLAN_PUSH = 8,
	FLOW_ACTION_VLAN_POP = 9,
	FLOW_ACTION_VLAN_MANGLE = 10,
};

enum flow_action_hw_stats {
	FLOW_ACTION_HW_STATS_IMMEDIATE = 1,
	FLOW_ACTION_HW_STATS_DELAYED = 2,
	FLOW_ACTION_HW_STATS_ANY = 3,
	FLOW_ACTION_HW_STATS_DISABLED = 4,
	FLOW_ACTION_HW_STATS_DONT_CARE = 7,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct net_device {
	char name[16];
	int ifindex;
};

struct flow_cls_common_offload {
	u32 chain_index;
	__be16 protocol;
	u32 prio;
};

struct flow_cls_offload {
	struct flow_cls_common_offload common;
	enum flow_cls_command command;
	long unsigned int cookie;
};

struct bpf_flow_offload_action {
	u32 id;
	u32 hw_stats;
	u32 ifindex;
	u32 chain_index;
	u16 vlan_id;
	__be16 vlan_proto;
	u8 vlan_prio;
	u8 __pad[3];
};

struct bpf_flow_offload_rule {
	u64 cookie;
	u64 used_keys;
	u64 undecoded_keys;
	u32 chain_index;
	u32 prio;
	__be16 protocol;
	__be16 n_proto;
	__be16 n_proto_mask;
	u8 ip_proto;
	u8 ip_proto_mask;
	u32 ctrl_flags;
	u32 ctrl_flags_mask;
	u8 dst_mac[6];
	u8 dst_mac_mask[6];
	u8 src_mac[6];
	u8 src_mac_mask[6];
	u16 vlan_id;
	u16 vlan_id_mask;
	__be16 vlan_tpid;
	__be16 vlan_tpid_mask;
	u8 vlan_prio;
	u8 vlan_prio_mask;
	u8 vlan_dei;
	u8 vlan_dei_mask;
	u8 ip_version;
	u8 ip_tos;
	u8 ip_tos_mask;
	u8 ip_ttl;
	u8 ip_ttl_mask;
	u8 icmp_type;
	u8 icmp_type_mask;
	u8 icmp_code;
	u8 icmp_code_mask;
	u8 __pad0[3];
	__be32 src_ip[4];
	__be32 src_ip_mask[4];
	__be32 dst_ip[4];
	__be32 dst_ip_mask[4];
	__be16 src_port;
	__be16 src_port_mask;
	__be16 dst_port;
	__be16 dst_port_mask;
	__be16 tcp_flags;
	__be16 tcp_flags_mask;
	u32 num_actions;
	struct bpf_flow_offload_action actions[8];
};

struct bpf_flow_offload_stats {
	u64 bytes;
	u64 packets;
	u64 drops;
	u64 lastused;
	u32 used_hw_stats;
	u32 __pad;
};

#pragma clang attribute pop

/* The struct_ops type (drivers/net/netdevsim/netdevsim.h). */
struct nsim_flow_ops {
	int (*flow_replace)(struct net_device *dev, struct flow_cls_offload *cls);
	int (*flow_destroy)(struct net_device *dev, struct flow_cls_offload *cls);
	int (*flow_stats)(struct net_device *dev, struct flow_cls_offload *cls);
	u32 dev_id;
	u32 answer_timeout_ms;
};

/* Patch 6: the later answer to a REPLACE, as the kernel lays it out. */
struct bpf_flow_offload_answer {
	u64 cookie;
	u32 ifindex;
	__s32 err;
};

/* The FIB firmware's types (patch 4), laid out as the kernel has them:
 * fib_fw.bpf.c copies the route and sizes the batch by them, and
 * host-bridge's src/fib_fw.rs asserts the same sizes.
 */
enum fib_event_type {
	FIB_EVENT_ENTRY_REPLACE = 0,
	FIB_EVENT_ENTRY_APPEND = 1,
	FIB_EVENT_ENTRY_ADD = 2,
	FIB_EVENT_ENTRY_DEL = 3,
	FIB_EVENT_RULE_ADD = 4,
	FIB_EVENT_RULE_DEL = 5,
	FIB_EVENT_NH_ADD = 6,
	FIB_EVENT_NH_DEL = 7,
	FIB_EVENT_VIF_ADD = 8,
	FIB_EVENT_VIF_DEL = 9,
};

struct bpf_nsim_fib_route {
	__be32 dst[4];
	u32 tb_id;
	u32 metric;
	u32 nhs;
	u32 nh_id;
	u32 event;
	u8 family;
	u8 dst_len;
	u8 dscp;
	u8 type;
} __attribute__((preserve_access_index));

enum nexthop_event_type {
	NEXTHOP_EVENT_DEL = 0,
	NEXTHOP_EVENT_REPLACE = 1,
	NEXTHOP_EVENT_RES_TABLE_PRE_REPLACE = 2,
	NEXTHOP_EVENT_BUCKET_REPLACE = 3,
	NEXTHOP_EVENT_HW_STATS_REPORT_DELTA = 4,
};

struct bpf_nsim_nexthop {
	__be32 gw[4];
	u32 id;
	u32 event;
	u32 type;
	u32 nhs;
	u32 ifindex;
	u32 bucket;
	u32 bucket_nh_id;
	u8 gw_family;
	u8 blackhole;
	u8 fdb;
	u8 __pad;
} __attribute__((preserve_access_index));

struct nsim_fib_ops {
	int (*route_event)(const struct bpf_nsim_fib_route *rt);
	int (*nexthop_event)(const struct bpf_nsim_nexthop *nh);
	u32 dev_id;
};

struct bpf_nsim_fib_hw_flags {
	__be32 dst[4];
	u32 tb_id;
	u32 metric;
	u8 family;
	u8 dst_len;
	u8 flags;
	u8 __pad;
};

struct bpf_nsim_fib_hw_flags_batch {
	u32 dev_id;
	u32 count;
	struct bpf_nsim_fib_hw_flags routes[];
};

struct bpf_nsim_nexthop_hw_flags {
	u32 id;
	u8 flags;
	u8 __pad[3];
};

#endif /* __VMLINUX_H__ */
