// SPDX-License-Identifier: GPL-2.0
/* Programs the netdevsim flow offload struct_ops must refuse, one per
 * build (-DBAD_SLEEPABLE, -DBAD_WRITE, -DBAD_KFUNC_CALLER), for
 * bpf/kernel/tests/nsim-flow-ops.sh.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

extern int bpf_flow_offload_rule_read(struct flow_cls_offload *cls,
				      void *buf, __u32 buf__sz) __ksym;

#if defined(BAD_SLEEPABLE)
/* The tc callbacks run under RCU: sleepable programs are refused. */
SEC("struct_ops.s/flow_replace")
int BPF_PROG(flow_replace, struct net_device *dev, struct flow_cls_offload *cls)
{
	return 0;
}
#elif defined(BAD_WRITE)
/* The request is read-only. */
SEC("struct_ops/flow_replace")
int BPF_PROG(flow_replace, struct net_device *dev, struct flow_cls_offload *cls)
{
	cls->cookie = 0;
	return 0;
}
#endif

#if defined(BAD_SLEEPABLE) || defined(BAD_WRITE)
SEC(".struct_ops")
struct nsim_flow_ops nsim_bad = {
	.flow_replace = (void *)flow_replace,
	.dev_id = 10,
};
#endif

#if defined(BAD_KFUNC_CALLER)
/* The kfuncs belong to nsim_flow_ops programs only, not to programs of
 * other struct_ops types (all share the kfunc hook of BPF_PROG_TYPE_STRUCT_OPS).
 * bpf_dummy_ops is always there; the verifier must stop at the call.
 */
struct bpf_flow_offload_rule rule;

SEC("struct_ops/test_1")
int BPF_PROG(test_1, struct bpf_dummy_ops_state *state)
{
	return bpf_flow_offload_rule_read((struct flow_cls_offload *)state,
					  &rule, sizeof(rule));
}

SEC(".struct_ops")
struct bpf_dummy_ops bad_dummy = {
	.test_1 = (void *)test_1,
};
#endif

char LICENSE[] SEC("license") = "GPL";
