//! tc flower filters on the clsact/ingress hook, as wire flow rules.
//!
//! The flower keys and mirred are parsed by netlink-packet-route; the gact
//! (drop, pass, goto chain) and vlan (push, pop) actions, which it leaves
//! as raw attributes, are decoded here.
//!
//! A filter is identified by `(ifindex, chain, prio, protocol, handle)`.
//! The DPU keys flow rules by a 64-bit cookie, so the mirror derives one
//! from that tuple ([`cookie`]) with bit 63 clear. The firmware path
//! (netdevsim struct_ops) uses the kernel's own cookies, which are kernel
//! addresses with bit 63 set, so the two never collide.
//!
//! A filter the DPU cannot honour exactly (a key or action the wire
//! protocol has no field for, `skip_hw`, an egress filter) is not
//! offloaded: it becomes a delete of its cookie, so that an earlier,
//! offloadable version of it does not linger on the DPU. Neither is a
//! filter a driver holds (`in_hw`, or `skip_sw`): that driver's offload
//! path owns it, and for netdevsim that path is the BPF firmware.

use super::convert::{Change, Kind};
use dpu_wire::*;
use netlink_packet_core::Nla;
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcAttribute, TcFilterFlowerOption,
    TcMessage, TcMirrorActionType, TcOption,
};

/// `TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)`: the ingress hook of clsact
/// (and of the ingress qdisc).
pub const PARENT_INGRESS: u32 = 0xffff_fff2;

const TCA_CLS_FLAGS_SKIP_HW: u32 = 1;
const TCA_CLS_FLAGS_SKIP_SW: u32 = 2;
const TCA_CLS_FLAGS_IN_HW: u32 = 4;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_PIPE: i32 = 3;
const TC_ACT_GOTO_CHAIN: i32 = 0x2000_0000;
const TC_ACT_EXT_OPCODE_MAX: i32 = 0xf000_0000u32 as i32;
const TCA_GACT_PARMS: u16 = 2;
const TCA_GACT_PROB: u16 = 3;
const TCA_VLAN_PARMS: u16 = 2;
const TCA_VLAN_PUSH_VLAN_ID: u16 = 3;
const TCA_VLAN_PUSH_VLAN_PROTOCOL: u16 = 4;
const TCA_VLAN_ACT_POP: i32 = 1;
const TCA_VLAN_ACT_PUSH: i32 = 2;
/// Size of `struct tc_gen`, which starts every action's parameters.
const TC_GEN: usize = 20;

/// Who a filter is: the header fields that name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterId {
    pub ifindex: u32,
    pub chain: u32,
    pub prio: u16,
    /// EtherType the filter is for, host order (`protocol` in tc).
    pub protocol: u16,
    pub handle: u32,
}

/// The mirror's cookie of a filter: a 63-bit mix of its identity.
pub fn cookie(id: &FilterId) -> u64 {
    fn mix(mut z: u64) -> u64 {
        // splitmix64's finaliser: every input bit flips about half of
        // the output bits.
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let a = (id.ifindex as u64) << 32 | id.chain as u64;
    let b = (id.prio as u64) << 48 | (id.protocol as u64) << 32 | id.handle as u64;
    mix(mix(a) ^ b) & !(1 << 63)
}

/// Why a filter is not offloaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotOffloadable(pub String);

/// Converts an `RTM_NEWTFILTER` / `RTM_DELTFILTER`.
pub fn filter(new: bool, m: &TcMessage) -> Change {
    let parent: u32 = m.header.parent.into();
    if parent != PARENT_INGRESS || m.header.index <= 0 {
        return Change::Ignore;
    }
    let mut id = FilterId {
        ifindex: m.header.index as u32,
        chain: 0,
        prio: (m.header.info >> 16) as u16,
        protocol: u16::from_be(m.header.info as u16),
        handle: m.header.handle.into(),
    };
    let mut kind = None;
    let mut opts: &[TcOption] = &[];
    for a in &m.attributes {
        match a {
            TcAttribute::Chain(c) => id.chain = *c,
            TcAttribute::Kind(k) => kind = Some(k.as_str()),
            TcAttribute::Options(o) => opts = o,
            _ => {}
        }
    }
    if id.handle == 0 {
        // A whole priority (or chain) went at once, unnamed: re-dump.
        return if new { Change::Ignore } else { Change::Redump(Kind::Filter) };
    }
    let key = Key::Flow(cookie(&id));
    if !new {
        return Change::Delete(key);
    }
    if kind != Some("flower") {
        return Change::NotOffloaded(key, format!("{} classifier", kind.unwrap_or("unknown")));
    }
    match flower(&id, opts) {
        Ok(Some(rule)) => Change::Upsert(Object::Flow(rule)),
        Ok(None) => Change::Delete(key),
        Err(why) => Change::NotOffloaded(key, why.0),
    }
}

/// The rule, `None` for a filter a driver holds, or why the DPU cannot.
fn flower(id: &FilterId, opts: &[TcOption]) -> Result<Option<FlowRule>, NotOffloadable> {
    use TcFilterFlowerOption as F;
    let no = |s: String| Err(NotOffloadable(s));
    let mut m = FlowMatch::default();
    let mut actions = heapless::Vec::new();
    // Values and masks arrive as separate attributes.
    let (mut smac, mut smac_m, mut dmac, mut dmac_m) = (None, None, None, None);
    let (mut s4, mut s4m, mut d4, mut d4m) = (None, None, None, None);
    let (mut s6, mut s6m, mut d6, mut d6m) = (None, None, None, None);
    let (mut sp, mut spm, mut dp, mut dpm) = (None, None, None, None);
    let (mut eth_type, mut vlan_eth_type) = (None, None);
    for o in opts {
        let TcOption::Flower(f) = o else { continue };
        match f {
            F::Flags(fl) if fl & TCA_CLS_FLAGS_SKIP_HW != 0 => return no("skip_hw".into()),
            // A driver holds it (the netdevsim firmware, say): its path,
            // not the mirror's, takes it to the DPU.
            F::Flags(fl) if fl & (TCA_CLS_FLAGS_IN_HW | TCA_CLS_FLAGS_SKIP_SW) != 0 => return Ok(None),
            F::Flags(_) | F::InHwCount(_) => {}
            F::EthType(t) => eth_type = Some(*t),
            F::VlanEthType(t) => vlan_eth_type = Some(*t),
            F::VlanId(v) => m.vlan_id = Some(*v),
            F::EthSrc(v) => smac = Some(*v),
            F::EthSrcMask(v) => smac_m = Some(*v),
            F::EthDst(v) => dmac = Some(*v),
            F::EthDstMask(v) => dmac_m = Some(*v),
            F::IpProto(p) => m.ip_proto = Some(*p),
            F::Ipv4Src(a) => s4 = Some(a.octets()),
            F::Ipv4SrcMask(a) => s4m = Some(a.octets()),
            F::Ipv4Dst(a) => d4 = Some(a.octets()),
            F::Ipv4DstMask(a) => d4m = Some(a.octets()),
            F::Ipv6Src(a) => s6 = Some(a.octets()),
            F::Ipv6SrcMask(a) => s6m = Some(a.octets()),
            F::Ipv6Dst(a) => d6 = Some(a.octets()),
            F::Ipv6DstMask(a) => d6m = Some(a.octets()),
            F::TcpSrc(p) | F::UdpSrc(p) | F::SctpSrc(p) => sp = Some(*p),
            F::TcpSrcMask(p) | F::UdpSrcMask(p) | F::SctpSrcMask(p) => spm = Some(*p),
            F::TcpDst(p) | F::UdpDst(p) | F::SctpDst(p) => dp = Some(*p),
            F::TcpDstMask(p) | F::UdpDstMask(p) | F::SctpDstMask(p) => dpm = Some(*p),
            F::KeyFlagsMask(0) | F::KeyFlags(0) => {}
            F::Actions(acts) => {
                for a in acts {
                    action(a, &mut actions)?;
                }
            }
            F::Other(nla) => return no(format!("flower attribute {}", nla.kind())),
            other => return no(format!("flower key {}", variant_name(other))),
        }
    }
    // The EtherType after any VLAN tag, as the hardware key holds it.
    m.eth_type = match (eth_type, vlan_eth_type) {
        (_, Some(t)) => Some(t),
        (Some(0x8100 | 0x88a8), None) => None,
        (t, None) => t,
    };
    let masked_mac = |v: Option<[u8; 6]>, k: Option<[u8; 6]>| {
        v.map(|v| Masked { value: Mac(v), mask: Mac(k.unwrap_or([0xff; 6])) })
    };
    m.src_mac = masked_mac(smac, smac_m);
    m.dst_mac = masked_mac(dmac, dmac_m);
    let v4 = |v: Option<[u8; 4]>, k: Option<[u8; 4]>| {
        v.map(|v| Masked { value: Ip::V4(v), mask: Ip::V4(k.unwrap_or([0xff; 4])) })
    };
    let v6 = |v: Option<[u8; 16]>, k: Option<[u8; 16]>| {
        v.map(|v| Masked { value: Ip::V6(v), mask: Ip::V6(k.unwrap_or([0xff; 16])) })
    };
    m.src_ip = v4(s4, s4m).or(v6(s6, s6m));
    m.dst_ip = v4(d4, d4m).or(v6(d6, d6m));
    let port = |v: Option<u16>, k: Option<u16>| v.map(|v| Masked { value: v, mask: k.unwrap_or(0xffff) });
    m.src_port = port(sp, spm);
    m.dst_port = port(dp, dpm);
    if actions.is_empty() {
        return no("no actions".into());
    }
    Ok(Some(FlowRule {
        cookie: cookie(id),
        ifindex: id.ifindex,
        chain: id.chain,
        prio: id.prio,
        matches: m,
        actions,
    }))
}

fn variant_name(o: &TcFilterFlowerOption) -> String {
    let s = format!("{o:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("?").to_string()
}

/// The value of a raw action option.
fn raw(o: &TcActionOption) -> Option<(u16, Vec<u8>)> {
    let TcActionOption::Other(nla) = o else { return None };
    let mut v = vec![0u8; nla.value_len()];
    nla.emit_value(&mut v);
    Some((nla.kind(), v))
}

fn i32_at(v: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(v.get(off..off + 4)?.try_into().ok()?))
}

/// What a gact-style control verdict adds to the action list.
fn verdict(v: i32) -> Result<Option<FlowAction>, NotOffloadable> {
    Ok(match v {
        TC_ACT_OK => Some(FlowAction::Pass),
        TC_ACT_SHOT => Some(FlowAction::Drop),
        TC_ACT_PIPE => None,
        v if v & TC_ACT_EXT_OPCODE_MAX == TC_ACT_GOTO_CHAIN => {
            Some(FlowAction::Goto((v & !TC_ACT_EXT_OPCODE_MAX) as u32))
        }
        v => return Err(NotOffloadable(format!("control action {v}"))),
    })
}

fn action(a: &TcAction, out: &mut heapless::Vec<FlowAction, MAX_FLOW_ACTIONS>) -> Result<(), NotOffloadable> {
    let no = |s: String| Err(NotOffloadable(s));
    let mut kind = "";
    let mut opts: &[TcActionOption] = &[];
    for at in &a.attributes {
        match at {
            TcActionAttribute::Kind(k) => kind = k,
            TcActionAttribute::Options(o) => opts = o,
            _ => {}
        }
    }
    let mut push = |fa: FlowAction| out.push(fa).map_err(|_| NotOffloadable("too many actions".into()));
    match kind {
        "gact" => {
            let mut parms = None;
            for (k, v) in opts.iter().filter_map(raw) {
                match k {
                    TCA_GACT_PARMS => parms = i32_at(&v, 8),
                    TCA_GACT_PROB => return no("random gact".into()),
                    _ => {}
                }
            }
            let Some(p) = parms else { return no("gact without parameters".into()) };
            if let Some(fa) = verdict(p)? {
                push(fa)?;
            }
        }
        "mirred" => {
            let parms = opts.iter().find_map(|o| match o {
                TcActionOption::Mirror(TcActionMirrorOption::Parms(p)) => Some(p),
                _ => None,
            });
            let Some(p) = parms else { return no("mirred without parameters".into()) };
            match p.eaction {
                TcMirrorActionType::EgressRedir => push(FlowAction::Redirect(p.ifindex))?,
                TcMirrorActionType::EgressMirror => push(FlowAction::Mirror(p.ifindex))?,
                ref e => return no(format!("mirred {e:?}")),
            }
        }
        "vlan" => {
            let (mut op, mut vid, mut tpid) = (None, None, 0x8100u16);
            for (k, v) in opts.iter().filter_map(raw) {
                match k {
                    TCA_VLAN_PARMS => op = i32_at(&v, TC_GEN),
                    TCA_VLAN_PUSH_VLAN_ID => vid = v.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])),
                    TCA_VLAN_PUSH_VLAN_PROTOCOL => {
                        tpid = v.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(tpid)
                    }
                    _ => {}
                }
            }
            match (op, vid) {
                (Some(TCA_VLAN_ACT_POP), _) => push(FlowAction::VlanPop)?,
                (Some(TCA_VLAN_ACT_PUSH), Some(vid)) => push(FlowAction::VlanPush { vid, tpid })?,
                (op, _) => return no(format!("vlan action {op:?}")),
            }
        }
        k => return no(format!("{k} action")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::DefaultNla;
    use netlink_packet_route::tc::{TcHandle, TcHeader, TcMirror};
    use std::net::Ipv4Addr;

    fn msg(parent: u32, opts: Vec<TcFilterFlowerOption>) -> TcMessage {
        let mut m = TcMessage::default();
        m.header = TcHeader {
            index: 3,
            handle: TcHandle::from(1u32),
            parent: TcHandle::from(parent),
            info: (49152u32 << 16) | 0x0008,
            ..Default::default()
        };
        m.attributes = vec![
            TcAttribute::Kind("flower".into()),
            TcAttribute::Chain(0),
            TcAttribute::Options(opts.into_iter().map(TcOption::Flower).collect()),
        ];
        m
    }

    fn act(kind: &str, opts: Vec<TcActionOption>) -> TcAction {
        let mut a = TcAction::default();
        a.attributes = vec![TcActionAttribute::Kind(kind.into()), TcActionAttribute::Options(opts)];
        a
    }

    fn gen(action: i32, extra: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; TC_GEN];
        v[8..12].copy_from_slice(&action.to_ne_bytes());
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn flower_keys_and_actions() {
        use TcFilterFlowerOption as F;
        let mut p = TcMirror::default();
        p.eaction = TcMirrorActionType::EgressMirror;
        p.ifindex = 7;
        let mirred = TcActionOption::Mirror(TcActionMirrorOption::Parms(p));
        let m = msg(
            PARENT_INGRESS,
            vec![
                F::EthType(0x0800),
                F::IpProto(6),
                F::Ipv4Dst(Ipv4Addr::new(10, 0, 0, 0)),
                F::Ipv4DstMask(Ipv4Addr::new(255, 255, 255, 0)),
                F::TcpDst(80),
                F::TcpDstMask(0xffff),
                F::Flags(8),
                F::Actions(vec![
                    act("mirred", vec![mirred]),
                    act("vlan", {
                        let mut id = vec![0u8; 4];
                        id[..2].copy_from_slice(&10u16.to_ne_bytes());
                        vec![
                            TcActionOption::Other(DefaultNla::new(
                                TCA_VLAN_PARMS,
                                gen(TC_ACT_PIPE, &TCA_VLAN_ACT_PUSH.to_ne_bytes()),
                            )),
                            TcActionOption::Other(DefaultNla::new(TCA_VLAN_PUSH_VLAN_ID, id)),
                        ]
                    }),
                    act(
                        "gact",
                        vec![TcActionOption::Other(DefaultNla::new(
                            TCA_GACT_PARMS,
                            gen(TC_ACT_GOTO_CHAIN | 5, &[]),
                        ))],
                    ),
                ]),
            ],
        );
        let c = filter(true, &m);
        let Change::Upsert(Object::Flow(f)) = c else { panic!("{c:?}") };
        assert_eq!((f.ifindex, f.chain, f.prio), (3, 0, 49152));
        assert_eq!(f.matches.eth_type, Some(0x0800));
        assert_eq!(f.matches.ip_proto, Some(6));
        assert_eq!(
            f.matches.dst_ip,
            Some(Masked { value: Ip::V4([10, 0, 0, 0]), mask: Ip::V4([255, 255, 255, 0]) })
        );
        assert_eq!(f.matches.dst_port, Some(Masked { value: 80, mask: 0xffff }));
        assert_eq!(
            f.actions.as_slice(),
            &[FlowAction::Mirror(7), FlowAction::VlanPush { vid: 10, tpid: 0x8100 }, FlowAction::Goto(5)]
        );
        assert_eq!(f.cookie >> 63, 0);
        // The delete names the same cookie.
        assert_eq!(filter(false, &m), Change::Delete(Key::Flow(f.cookie)));
        // A whole priority deleted (handle 0) names no filter: re-dump.
        let mut whole = m.clone();
        whole.header.handle = TcHandle::from(0u32);
        assert_eq!(filter(false, &whole), Change::Redump(Kind::Filter));
    }

    #[test]
    fn what_is_not_offloaded() {
        use TcFilterFlowerOption as F;
        let drop = F::Actions(vec![act(
            "gact",
            vec![TcActionOption::Other(DefaultNla::new(TCA_GACT_PARMS, gen(TC_ACT_SHOT, &[])))],
        )]);
        // Egress hook: not mirrored at all.
        assert_eq!(filter(true, &msg(0xffff_fff3, vec![drop.clone()])), Change::Ignore);
        // skip_hw, keys without a hardware field: a delete, with a reason.
        // in_hw: the driver's; a plain delete, nothing to report.
        let c = filter(true, &msg(PARENT_INGRESS, vec![F::Flags(TCA_CLS_FLAGS_IN_HW), drop.clone()]));
        assert!(matches!(c, Change::Delete(Key::Flow(_))), "{c:?}");
        for o in [F::Flags(TCA_CLS_FLAGS_SKIP_HW), F::IpTtl(3), F::Other(DefaultNla::new(999, vec![]))] {
            let c = filter(true, &msg(PARENT_INGRESS, vec![o, drop.clone()]));
            assert!(matches!(c, Change::NotOffloaded(Key::Flow(_), ref why) if !why.is_empty()), "{c:?}");
        }
        let c = filter(true, &msg(PARENT_INGRESS, vec![drop]));
        assert!(matches!(c, Change::Upsert(Object::Flow(ref f)) if f.actions[0] == FlowAction::Drop));
    }

    #[test]
    fn cookies_differ_by_every_field() {
        let base = FilterId { ifindex: 3, chain: 0, prio: 1, protocol: 0x800, handle: 1 };
        let mut seen = std::collections::HashSet::new();
        seen.insert(cookie(&base));
        for id in [
            FilterId { ifindex: 4, ..base },
            FilterId { chain: 1, ..base },
            FilterId { prio: 2, ..base },
            FilterId { protocol: 0x86dd, ..base },
            FilterId { handle: 2, ..base },
        ] {
            assert!(seen.insert(cookie(&id)), "{id:?}");
        }
    }
}
