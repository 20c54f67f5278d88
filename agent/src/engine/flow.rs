//! tc flower rules: one TCAM entry per rule, keyed by its cookie; the
//! key and mask from the rule's matches, the actions in order.

use super::Entry;
use dpu_hw::layout::*;
use dpu_wire::*;

pub(super) struct Flow;

impl Entry for Flow {
    type Object = FlowRule;
    type Key = u64;
    const TABLE: TableId = TableId::Flow;

    fn encode(f: &FlowRule, b: &mut [u8]) {
        flow_entry(f, b)
    }

    fn probe(&cookie: &u64, b: &mut [u8]) {
        FlowEntry::encode_parts((cookie, 0, 0, 0), &FlowKey::default(), &FlowKey::default(), &[], b)
    }
}

fn flow_entry(f: &FlowRule, b: &mut [u8]) {
    let m = &f.matches;
    let (mut k, mut mk) = (FlowKey::default(), FlowKey::default());
    if let Some(v) = m.eth_type {
        k.eth_type = v;
        mk.eth_type = 0xffff;
    }
    if let Some(v) = m.src_mac {
        k.src_mac = v.value.0;
        mk.src_mac = v.mask.0;
    }
    if let Some(v) = m.dst_mac {
        k.dst_mac = v.value.0;
        mk.dst_mac = v.mask.0;
    }
    if let Some(v) = m.vlan_id {
        k.vlan_id = v;
        mk.vlan_id = 0x0fff;
    }
    if let Some(v) = m.ip_proto {
        k.ip_proto = v;
        mk.ip_proto = 0xff;
    }
    for (ip, kv, mv) in
        [(&m.src_ip, &mut k.src_ip, &mut mk.src_ip), (&m.dst_ip, &mut k.dst_ip, &mut mk.dst_ip)]
    {
        if let Some(v) = ip {
            *kv = v.value.to_bytes16();
            *mv = v.mask.to_bytes16();
            k.ip_family = family_code(Some(v.value.family()));
            mk.ip_family = 0xff;
        }
    }
    if let Some(v) = m.src_port {
        k.src_port = v.value;
        mk.src_port = v.mask;
    }
    if let Some(v) = m.dst_port {
        k.dst_port = v.value;
        mk.dst_port = v.mask;
    }
    let mut acts = [FlowActionEntry::default(); FLOW_MAX_ACTIONS];
    let n = f.actions.len().min(FLOW_MAX_ACTIONS);
    for (a, out) in f.actions.iter().zip(acts.iter_mut()) {
        *out = match *a {
            FlowAction::Drop => FlowActionEntry { kind: flow_action::DROP, vid: 0, arg: 0 },
            FlowAction::Pass => FlowActionEntry { kind: flow_action::PASS, vid: 0, arg: 0 },
            FlowAction::Redirect(i) => FlowActionEntry { kind: flow_action::REDIRECT, vid: 0, arg: i },
            FlowAction::Mirror(i) => FlowActionEntry { kind: flow_action::MIRROR, vid: 0, arg: i },
            FlowAction::VlanPush { vid, tpid } => {
                FlowActionEntry { kind: flow_action::VLAN_PUSH, vid, arg: tpid as u32 }
            }
            FlowAction::VlanPop => FlowActionEntry { kind: flow_action::VLAN_POP, vid: 0, arg: 0 },
            FlowAction::Goto(c) => FlowActionEntry { kind: flow_action::GOTO, vid: 0, arg: c },
        };
    }
    FlowEntry::encode_parts((f.cookie, f.ifindex, f.chain, f.prio), &k, &mk, &acts[..n], b);
}
