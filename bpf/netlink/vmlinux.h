/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the netlink event filter uses: the integer types, the map types and
 * flags, and the head of the UAPI context of a socket filter. The context
 * is not a kernel structure: the verifier rewrites each access to it at
 * load time, so these offsets are the UAPI's (include/uapi/linux/bpf.h),
 * fixed for every kernel; no CO-RE relocation is involved.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_F_MMAPABLE = 1024,
};

/* The head of struct __sk_buff: only len is read. */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
};

#endif /* __VMLINUX_H__ */
