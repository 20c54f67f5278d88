//! Kernel messages to wire objects.
//!
//! Links, addresses and neighbours are parsed with netlink-packet-route;
//! routes (the hot path, read in place without allocating), nexthop
//! objects and bridge VLANs (which the crate does not know) are parsed
//! here from their attributes. Parsing is
//! lenient: unknown attributes are ignored, never fatal. A message that
//! cannot be parsed at all is an [`Err`], which the caller counts and
//! answers with a resync of that object type.

use super::socket::*;
use dpu_wire::*;
use netlink_packet_core::ParseableParametrized;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridge, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVlan, InfoVxlan, LinkAttribute,
    LinkFlags, LinkInfo,
};
use netlink_packet_route::link::{LinkLayerType, LinkMessage, State};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

/// What one kernel message means for the mirror. Transient: one exists
/// at a time per message, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Upsert(Object),
    Delete(Key),
    /// A route the kernel added beside its others (`RTM_NEWROUTE` without
    /// `NLM_F_REPLACE`): a later version of the route of its key, or, with
    /// other devices or gateways, a second route sharing the key (see
    /// `qualified.rs`). Made from an `Upsert` by the listener, which sees
    /// the message's flags.
    Add(Route),
    /// A route delete, which names the route's paths. IPv6 keeps a
    /// multipath route as sibling routes, and deleting one sibling names
    /// only its own path: the paths named go, the route stays while it has
    /// others. Where routes share a key, the paths tell which one goes.
    DeletePaths(Route),
    /// Several upserts or deletes (a VLAN message covers many VIDs).
    Many(Vec<Change>),
    /// Not something the DPU mirrors (a cached route, a NOARP neighbour…).
    Ignore,
    /// An object the DPU cannot represent exactly (a tc filter with a key
    /// or action it has no field for, a route with an encap or more paths
    /// than the wire carries): it is not offloaded, and any earlier
    /// version of it goes.
    NotOffloaded(Key, String),
    /// A route qualified by more than its destination (an IPv4 TOS, an
    /// IPv6 source prefix), which the DPU's tables cannot match on: it is
    /// not offloaded, and while one exists its prefix is trapped to the
    /// host (see `qualified.rs`). `paths` are the paths the message names
    /// (an IPv6 delete names the siblings it removes).
    Qualified {
        key: QualKey,
        paths: Vec<(u32, Option<Ip>)>,
        new: bool,
    },
    /// The kernel removed objects of this kind without naming them (a
    /// whole tc priority, a clsact qdisc): re-dump the kind.
    Redump(Kind),
}

/// The object type a message is about, for targeted resyncs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Link,
    Address,
    Route,
    Nexthop,
    Neighbour,
    Fdb,
    Vlan,
    /// tc flower filters on clsact/ingress.
    Filter,
    /// Settings netlink has no message for: the ECMP hash policy and
    /// fields (sysctl). Read from /proc/sys, not dumped.
    Setting,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Link,
        Kind::Address,
        Kind::Nexthop,
        Kind::Route,
        Kind::Neighbour,
        Kind::Fdb,
        Kind::Vlan,
        Kind::Filter,
        Kind::Setting,
    ];

    /// The message type and family header of this kind's dump request.
    /// Filters are dumped per link: see [`filter_dump_request`].
    pub fn dump_request(self) -> (u16, Vec<u8>) {
        match self {
            Kind::Link => (RTM_GETLINK, vec![AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Address => (RTM_GETADDR, vec![AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Route => (RTM_GETROUTE, vec![AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Nexthop => (RTM_GETNEXTHOP, vec![AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Neighbour => (RTM_GETNEIGH, vec![AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Fdb => (RTM_GETNEIGH, vec![AF_BRIDGE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Vlan => (RTM_GETVLAN, vec![AF_BRIDGE, 0, 0, 0, 0, 0, 0, 0]),
            Kind::Filter => filter_dump_request(0),
            // Not a netlink dump: kernel::dump reads the sysctls.
            Kind::Setting => (0, Vec::new()),
        }
    }

    pub fn of_key(k: &Key) -> Option<Kind> {
        Some(match k {
            Key::Link(_) => Kind::Link,
            Key::Address(_) => Kind::Address,
            Key::Route(_) => Kind::Route,
            Key::Nexthop(_) | Key::NexthopGroup(_) => Kind::Nexthop,
            Key::Neighbour(_) => Kind::Neighbour,
            Key::Fdb(_) => Kind::Fdb,
            Key::Vlan(_) => Kind::Vlan,
            // Flows with bit 63 clear are the mirror's, from tc filters;
            // the others are the firmware's (kernel cookies), not dumped.
            Key::Flow(c) if c >> 63 == 0 => Kind::Filter,
            Key::Flow(_) => return None,
            // A bridge's ageing and a port's STP state come with its link.
            Key::BridgeAgeing(_) | Key::PortStp(_) => Kind::Link,
            Key::EcmpHash(_) => Kind::Setting,
        })
    }
}

/// The dump request for the ingress filters of one link (the kernel
/// dumps filters per device and block).
pub fn filter_dump_request(ifindex: u32) -> (u16, Vec<u8>) {
    let mut h = vec![AF_UNSPEC, 0, 0, 0];
    h.extend_from_slice(&ifindex.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    h.extend_from_slice(&super::tc::PARENT_INGRESS.to_ne_bytes());
    h.extend_from_slice(&0u32.to_ne_bytes());
    (RTM_GETTFILTER, h)
}

/// The kind a message type carries (the family tells neighbours from FDB).
pub fn kind_of(msg_type: u16, payload: &[u8]) -> Option<Kind> {
    Some(match msg_type {
        RTM_NEWLINK | RTM_DELLINK => Kind::Link,
        RTM_NEWADDR | RTM_DELADDR => Kind::Address,
        RTM_NEWROUTE | RTM_DELROUTE => Kind::Route,
        RTM_NEWNEXTHOP | RTM_DELNEXTHOP => Kind::Nexthop,
        RTM_NEWNEIGH | RTM_DELNEIGH if payload.first() == Some(&AF_BRIDGE) => Kind::Fdb,
        RTM_NEWNEIGH | RTM_DELNEIGH => Kind::Neighbour,
        RTM_NEWVLAN | RTM_DELVLAN => Kind::Vlan,
        RTM_NEWTFILTER | RTM_DELTFILTER | RTM_DELQDISC => Kind::Filter,
        _ => return None,
    })
}

/// Converts one message.
pub fn convert(msg_type: u16, payload: &[u8]) -> Result<Change, String> {
    match msg_type {
        RTM_NEWNEXTHOP | RTM_DELNEXTHOP => return nexthop(msg_type == RTM_NEWNEXTHOP, payload),
        RTM_NEWVLAN | RTM_DELVLAN => return vlan(msg_type == RTM_NEWVLAN, payload),
        _ => {}
    }
    match msg_type {
        RTM_NEWROUTE => {
            return Ok(match route(payload)? {
                Conv::Plain(r) => Change::Upsert(Object::Route(r)),
                // Every path is dead: the kernel's lookup passes over it.
                Conv::Dead(k) => Change::Delete(Key::Route(k)),
                Conv::NotOffloaded(k, why) => Change::NotOffloaded(Key::Route(k), why.into()),
                Conv::Qualified(key, paths) => Change::Qualified { key, paths, new: true },
                Conv::Ignore => Change::Ignore,
            });
        }
        RTM_DELROUTE => {
            return Ok(match route(payload)? {
                Conv::Plain(r) if matches!(r.nexthops, RouteNexthops::Paths(_)) => Change::DeletePaths(r),
                Conv::Plain(r) => Change::Delete(Key::Route(r.key)),
                Conv::Dead(k) | Conv::NotOffloaded(k, _) => Change::Delete(Key::Route(k)),
                Conv::Qualified(key, paths) => Change::Qualified { key, paths, new: false },
                Conv::Ignore => Change::Ignore,
            })
        }
        _ => {}
    }
    let m = RouteNetlinkMessage::parse_with_param(payload, msg_type).map_err(|e| e.to_string())?;
    Ok(match m {
        RouteNetlinkMessage::NewLink(l) => match link(&l) {
            // A link and its switch settings: a bridge's ageing time and a
            // bridge port's STP state, deleted when it has none (any more).
            Some(o) => {
                let ifindex = l.header.index;
                let (ageing, stp) = switch_settings(&l);
                Change::Many(vec![
                    Change::Upsert(o),
                    ageing.map(Change::Upsert).unwrap_or(Change::Delete(Key::BridgeAgeing(ifindex))),
                    stp.map(Change::Upsert).unwrap_or(Change::Delete(Key::PortStp(ifindex))),
                ])
            }
            None => Change::Ignore,
        },
        RouteNetlinkMessage::DelLink(l) if l.header.interface_family == AddressFamily::Unspec => {
            Change::Delete(Key::Link(l.header.index))
        }
        RouteNetlinkMessage::NewAddress(a) => {
            address(&a).map(|a| Change::Upsert(Object::Address(a))).unwrap_or(Change::Ignore)
        }
        RouteNetlinkMessage::DelAddress(a) => {
            address(&a).map(|a| Change::Delete(Key::Address(a.key()))).unwrap_or(Change::Ignore)
        }
        RouteNetlinkMessage::NewTrafficFilter(f) | RouteNetlinkMessage::DelTrafficFilter(f) => {
            super::tc::filter(msg_type == RTM_NEWTFILTER, &f)
        }
        // Deleting a clsact or ingress qdisc takes its filters silently.
        RouteNetlinkMessage::DelQueueDiscipline(q) if u32::from(q.header.parent) == 0xffff_fff1 => {
            Change::Redump(Kind::Filter)
        }
        RouteNetlinkMessage::NewNeighbour(n) => neighbour(&n).unwrap_or(Change::Ignore),
        RouteNetlinkMessage::DelNeighbour(n) => match neighbour(&n) {
            Some(Change::Upsert(o)) => Change::Delete(o.key()),
            _ => Change::Ignore,
        },
        _ => Change::Ignore,
    })
}

fn ip_of(a: &IpAddr) -> Ip {
    Ip::from(*a)
}

/// A bridge's ageing time (`IFLA_BR_AGEING_TIME`) and a bridge port's STP
/// state (`IFLA_BRPORT_STATE`), from an AF_UNSPEC link message.
fn switch_settings(l: &LinkMessage) -> (Option<Object>, Option<Object>) {
    let ifindex = l.header.index;
    let (mut ageing, mut stp) = (None, None);
    for a in &l.attributes {
        let LinkAttribute::LinkInfo(infos) = a else { continue };
        for i in infos {
            match i {
                LinkInfo::Data(InfoData::Bridge(b)) => {
                    for x in b {
                        if let InfoBridge::AgeingTime(t) = x {
                            ageing = Some(Object::BridgeAgeing(BridgeAgeing { ifindex, ageing_cs: *t }));
                        }
                    }
                }
                LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                    for x in p {
                        if let InfoBridgePort::State(s) = x {
                            stp = Some(Object::PortStp(PortStp { ifindex, state: u8::from(*s) }));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    (ageing, stp)
}

fn link(l: &LinkMessage) -> Option<Object> {
    if l.header.interface_family != AddressFamily::Unspec {
        return None; // AF_BRIDGE port notifications repeat what we have
    }
    let mut name = IfName::new();
    let (mut mtu, mut mac, mut oper, mut master, mut parent) = (1500, None, OperState::Unknown, 0, 0);
    let (mut kind, mut vlan_id, mut vni) = (LinkKind::Device, None, None);
    if l.header.link_layer_type == LinkLayerType::Loopback {
        kind = LinkKind::Loopback;
    }
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => {
                for c in n.chars() {
                    if name.push(c).is_err() {
                        break;
                    }
                }
            }
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                mac = Some(Mac(m));
            }
            LinkAttribute::OperState(s) => {
                oper = match s {
                    State::Up => OperState::Up,
                    State::Down => OperState::Down,
                    State::LowerLayerDown => OperState::LowerLayerDown,
                    State::NotPresent => OperState::NotPresent,
                    State::Testing => OperState::Testing,
                    State::Dormant => OperState::Dormant,
                    _ => OperState::Unknown,
                }
            }
            LinkAttribute::Controller(m) => master = *m,
            LinkAttribute::Link(p) => parent = *p,
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => {
                            kind = match k {
                                InfoKind::Bridge => LinkKind::Bridge,
                                InfoKind::Vlan => LinkKind::Vlan,
                                InfoKind::Vxlan => LinkKind::Vxlan,
                                InfoKind::Veth => LinkKind::Veth,
                                InfoKind::Bond => LinkKind::Bond,
                                InfoKind::Dummy => LinkKind::Dummy,
                                InfoKind::Vrf => LinkKind::Vrf,
                                _ => LinkKind::Other,
                            }
                        }
                        LinkInfo::Data(InfoData::Vlan(v)) => {
                            vlan_id =
                                v.iter().find_map(|x| if let InfoVlan::Id(id) = x { Some(*id) } else { None })
                        }
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            vni = v
                                .iter()
                                .find_map(|x| if let InfoVxlan::Id(id) = x { Some(*id) } else { None })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Object::Link(Link {
        ifindex: l.header.index,
        name,
        kind,
        mtu: mtu.max(1),
        mac,
        oper,
        admin_up: l.header.flags.contains(LinkFlags::Up),
        master,
        parent,
        vlan_id,
        vni,
    }))
}

fn address(a: &AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut addr = None;
    for x in &a.attributes {
        match x {
            AddressAttribute::Local(ip) => local = Some(ip_of(ip)),
            AddressAttribute::Address(ip) => addr = Some(ip_of(ip)),
            _ => {}
        }
    }
    let ip = local.or(addr)?;
    Some(Address {
        ifindex: a.header.index,
        prefix: Prefix::new(ip, a.header.prefix_len),
        scope: u8::from(a.header.scope),
    })
}

/// A route that differs from a plain one of the same (table, dst, metric)
/// only by what the DPU cannot match on: the kernel's own key for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QualKey {
    pub key: RouteKey,
    /// IPv4 TOS (`rtm_tos`); 0 for none.
    pub tos: u8,
    /// IPv6 source prefix (`RTA_SRC`/`rtm_src_len`); length 0 for none.
    pub src: Prefix,
}

/// What one route message is, for the DPU. Transient, one per message,
/// like [`Change`].
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Conv {
    Plain(Route),
    /// Every path is dead (`RTNH_F_DEAD`): the kernel does not use it.
    Dead(RouteKey),
    NotOffloaded(RouteKey, &'static str),
    Qualified(QualKey, Vec<(u32, Option<Ip>)>),
    Ignore,
}

/// Set when a route message had dead paths that were left out: the
/// kernel clears `RTNH_F_DEAD` at a link's up without a message, so the
/// next link up re-dumps routes (see `kernel.rs`).
pub static DEAD_PATHS_LEFT_OUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `ignore_routes_with_linkdown` for IPv4 (bit 0) and IPv6 (bit 1), read
/// from `conf/all` at every route dump (`kernel.rs`). With it set, the
/// kernel passes over paths flagged `RTNH_F_LINKDOWN`; by default it uses
/// them.
pub static IGNORE_LINKDOWN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

const RTNH_F_DEAD: u32 = 1;
const RTNH_F_ONLINK: u32 = 4;
const RTNH_F_LINKDOWN: u32 = 16;

/// A path the kernel's lookup passes over: dead, or linkdown where
/// `ignore_routes_with_linkdown` is set.
fn unusable(flags: u32, fam: Family) -> bool {
    let bit = if fam == Family::V4 { 1 } else { 2 };
    flags & RTNH_F_DEAD != 0
        || (flags & RTNH_F_LINKDOWN != 0
            && IGNORE_LINKDOWN.load(std::sync::atomic::Ordering::Relaxed) & bit != 0)
}

/// An address attribute of a route (`RTA_DST`, `RTA_GATEWAY`, ...) of the
/// route's family.
fn route_ip(v: &[u8], fam: Family, what: &str) -> Result<Ip, String> {
    match (fam, ip_bytes(v)) {
        (Family::V4, Some(ip @ Ip::V4(_))) | (Family::V6, Some(ip @ Ip::V6(_))) => Ok(ip),
        _ => Err(format!("{what} of {} bytes in a {fam:?} route", v.len())),
    }
}

/// `RTA_VIA`: `struct rtvia`, an address family and the address. An IPv4
/// route through an IPv6 gateway (RFC 5549) has one.
fn via(v: &[u8]) -> Result<Option<Ip>, String> {
    const AF_INET_U16: u16 = AF_INET as u16;
    const AF_INET6_U16: u16 = AF_INET6 as u16;
    let fam = u16_of(v).ok_or("RTA_VIA without a family")?;
    let a = &v[2..];
    Ok(match (fam, a.len()) {
        (AF_INET_U16, 4) | (AF_INET6_U16, 16) => ip_bytes(a),
        // A gateway of a family the DPU has no table for: refused by the
        // caller, never taken for a connected route.
        _ => None,
    })
}

/// One path of `RTA_MULTIPATH` (`struct rtnexthop` and its attributes).
struct Hop {
    flags: u32,
    hops: u8,
    ifindex: u32,
    gateway: Option<Ip>,
    /// A gateway attribute the DPU cannot represent (an `RTA_VIA` of
    /// another family).
    odd_gateway: bool,
    encap: bool,
}

/// The paths of `RTA_MULTIPATH`, checked like [`attrs_checked`]: all of
/// them (a qualified route's siblings are tracked by the paths named,
/// and a route may have more paths than the wire carries of which only
/// the live ones count).
fn hops(mut buf: &[u8], fam: Family) -> Result<Vec<Hop>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 8 {
            return Err(format!("{} stray bytes in RTA_MULTIPATH", buf.len()));
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 8 || len > buf.len() {
            return Err(format!("rtnexthop of length {len} in {} bytes", buf.len()));
        }
        let mut h = Hop {
            flags: buf[2] as u32,
            hops: buf[3],
            ifindex: u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]),
            gateway: None,
            odd_gateway: false,
            encap: false,
        };
        for a in attrs_checked(&buf[8..len]) {
            match a? {
                (RTA_GATEWAY, v) => h.gateway = Some(route_ip(v, fam, "RTA_GATEWAY")?),
                (RTA_VIA, v) => {
                    h.gateway = via(v)?;
                    h.odd_gateway = h.gateway.is_none();
                }
                (RTA_ENCAP | RTA_ENCAP_TYPE, _) => h.encap = true,
                _ => {}
            }
        }
        out.push(h);
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    Ok(out)
}

const RTA_DST: u16 = 1;
const RTA_SRC: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTA_ENCAP_TYPE: u16 = 21;
const RTA_ENCAP: u16 = 22;
const RTA_NH_ID: u16 = 30;

/// `RTM_NEWROUTE` / `RTM_DELROUTE`: `struct rtmsg` and `RTA_*`
/// attributes, read in place. This is the mirror's per-event hot path
/// (a full table is a million of them), so it allocates nothing: the
/// general parser built a vector of every attribute, the cache info and
/// metrics included, for each route.
pub fn route(p: &[u8]) -> Result<Conv, String> {
    const RTM_F_CLONED: u32 = 0x200;
    const RTN_UNICAST: u8 = 1;
    const RTN_LOCAL: u8 = 2;
    const RTN_BLACKHOLE: u8 = 6;
    const RTN_UNREACHABLE: u8 = 7;
    const RTN_PROHIBIT: u8 = 8;
    let Some(h) = p.get(..12) else { return Err(format!("route message of {} bytes", p.len())) };
    let (dst_len, src_len, tos, protocol, scope) = (h[1], h[2], h[3], h[5], h[6]);
    let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
    let fam = match h[0] {
        AF_INET => Family::V4,
        AF_INET6 => Family::V6,
        _ => return Ok(Conv::Ignore),
    };
    if flags & RTM_F_CLONED != 0 {
        return Ok(Conv::Ignore);
    }
    let kind = match h[7] {
        RTN_UNICAST => RouteType::Unicast,
        RTN_BLACKHOLE => RouteType::Blackhole,
        RTN_UNREACHABLE => RouteType::Unreachable,
        RTN_PROHIBIT => RouteType::Prohibit,
        RTN_LOCAL => RouteType::Local,
        _ => return Ok(Conv::Ignore),
    };
    let zero = match fam {
        Family::V4 => Ip::V4([0; 4]),
        Family::V6 => Ip::V6([0; 16]),
    };
    let (mut table, mut dst, mut metric, mut src) = (h[4] as u32, zero, 0, zero);
    let (mut oif, mut gw, mut odd_gw, mut nh_id, mut multipath, mut encap) =
        (0, None, false, None, None, false);
    for a in attrs_checked(&p[12..]) {
        let (t, v) = a?;
        let u32_attr = |what: &str| u32_of(v).ok_or_else(|| format!("{what} of {} bytes", v.len()));
        match t {
            RTA_TABLE => table = u32_attr("RTA_TABLE")?,
            RTA_DST => dst = route_ip(v, fam, "RTA_DST")?,
            RTA_SRC => src = route_ip(v, fam, "RTA_SRC")?,
            RTA_PRIORITY => metric = u32_attr("RTA_PRIORITY")?,
            RTA_OIF => oif = u32_attr("RTA_OIF")?,
            RTA_GATEWAY => gw = Some(route_ip(v, fam, "RTA_GATEWAY")?),
            // An IPv4 route through an IPv6 gateway (RFC 5549).
            RTA_VIA => {
                gw = via(v)?;
                odd_gw = gw.is_none();
            }
            RTA_NH_ID => nh_id = Some(u32_attr("RTA_NH_ID")?),
            RTA_MULTIPATH => multipath = Some(hops(v, fam)?),
            RTA_ENCAP | RTA_ENCAP_TYPE => encap = true,
            _ => {}
        }
    }
    if dst_len > zero.max_len() || src_len > zero.max_len() {
        return Err(format!("prefix length {dst_len} (source {src_len}) in a {fam:?} route"));
    }
    let dst = Prefix::new(dst, dst_len);
    // The kernel holds an IPv6 link-local route once per device
    // (`fe80::/64` on every link, a local route per link-local address),
    // all with one prefix and metric, and looks a link-local destination
    // up among the routes of the ingress device only: the device is part
    // of the key (see `RouteKey::ifindex`).
    let per_device = dst.is_link_local()
        && matches!(kind, RouteType::Unicast | RouteType::Local)
        && multipath.is_none()
        && nh_id.is_none();
    let key = RouteKey { table, dst, metric, ifindex: if per_device { oif } else { 0 } };
    if tos != 0 || src_len != 0 {
        let paths = match &multipath {
            Some(hops) => hops.iter().map(|h| (h.ifindex, h.gateway)).collect(),
            None => vec![(oif, gw)],
        };
        let src = Prefix::new(src, src_len);
        return Ok(Conv::Qualified(QualKey { key, tos, src }, paths));
    }
    if encap {
        return Ok(Conv::NotOffloaded(key, "lightweight-tunnel encap (RTA_ENCAP)"));
    }
    // A route through a blackhole nexthop object is reported as a
    // blackhole route; it is still a route through that object, and must
    // go with it.
    let kind = if nh_id.is_some() && kind == RouteType::Blackhole { RouteType::Unicast } else { kind };
    let onlink = flags & RTNH_F_ONLINK != 0;
    let nexthops = if kind != RouteType::Unicast {
        RouteNexthops::None
    } else if let Some(id) = nh_id {
        RouteNexthops::Object(id)
    } else if let Some(hops) = multipath {
        let mut v = heapless::Vec::new();
        let mut dead = false;
        for h in &hops {
            if h.encap {
                return Ok(Conv::NotOffloaded(key, "lightweight-tunnel encap on a path (RTA_ENCAP)"));
            }
            if unusable(h.flags, fam) {
                dead = true;
                continue;
            }
            if h.odd_gateway {
                return Ok(Conv::NotOffloaded(
                    key,
                    "a path's gateway of a family the DPU has no table for (RTA_VIA)",
                ));
            }
            let p = Path {
                ifindex: h.ifindex,
                gateway: h.gateway,
                weight: h.hops as u16 + 1,
                onlink: h.flags & RTNH_F_ONLINK != 0,
            };
            if v.push(p).is_err() {
                return Ok(Conv::NotOffloaded(key, "more ECMP paths than the wire carries (32)"));
            }
        }
        if dead {
            DEAD_PATHS_LEFT_OUT.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if v.is_empty() {
            return Ok(Conv::Dead(key));
        }
        RouteNexthops::Paths(v)
    } else {
        if unusable(flags, fam) {
            DEAD_PATHS_LEFT_OUT.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(Conv::Dead(key));
        }
        if odd_gw {
            return Ok(Conv::NotOffloaded(key, "a gateway of a family the DPU has no table for (RTA_VIA)"));
        }
        let mut v = heapless::Vec::new();
        let _ = v.push(Path { ifindex: oif, gateway: gw, weight: 1, onlink });
        RouteNexthops::Paths(v)
    };
    Ok(Conv::Plain(Route { key, kind, protocol, scope, nexthops }))
}

fn mac_of(b: &[u8]) -> Option<Mac> {
    (b.len() == 6).then(|| {
        let mut m = [0u8; 6];
        m.copy_from_slice(b);
        Mac(m)
    })
}

fn neighbour(n: &NeighbourMessage) -> Option<Change> {
    const NUD_NOARP: u16 = 0x40;
    const NUD_PERMANENT: u16 = 0x80;
    let state = u16::from(n.header.state);
    let mut ip = None;
    let (mut mac, mut vid, mut master, mut vni) = (None, 0u16, 0u32, None);
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => ip = Some(Ip::from(*v)),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v)) => ip = Some(Ip::from(*v)),
            NeighbourAttribute::LinkLayerAddress(b) => mac = mac_of(b),
            NeighbourAttribute::Vlan(v) => vid = *v,
            NeighbourAttribute::Controller(m) => master = *m,
            NeighbourAttribute::Vni(v) => vni = Some(*v),
            _ => {}
        }
    }
    match n.header.family {
        AddressFamily::Bridge => Some(Change::Upsert(Object::Fdb(FdbEntry {
            ifindex: n.header.ifindex,
            mac: mac?,
            vid,
            master,
            is_static: state & (NUD_NOARP | NUD_PERMANENT) != 0,
            remote: ip,
            vni,
        }))),
        AddressFamily::Inet | AddressFamily::Inet6 => {
            if state & NUD_NOARP != 0 {
                return Some(Change::Ignore);
            }
            Some(Change::Upsert(Object::Neighbour(Neighbour {
                ifindex: n.header.ifindex,
                ip: ip?,
                mac,
                state,
                router: n.header.flags.contains(NeighbourFlags::Router),
            })))
        }
        _ => None,
    }
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

fn u16_of(v: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(v.get(..2)?.try_into().ok()?))
}

fn ip_bytes(v: &[u8]) -> Option<Ip> {
    match v.len() {
        4 => Some(Ip::V4(v.try_into().ok()?)),
        16 => Some(Ip::V6(v.try_into().ok()?)),
        _ => None,
    }
}

/// `RTM_NEWNEXTHOP` / `RTM_DELNEXTHOP`: `struct nhmsg` (family, scope,
/// protocol, reserved, flags u32) and `NHA_*` attributes.
pub fn nexthop(new: bool, p: &[u8]) -> Result<Change, String> {
    const NHA_ID: u16 = 1;
    const NHA_GROUP: u16 = 2;
    const NHA_GROUP_TYPE: u16 = 3;
    const NHA_BLACKHOLE: u16 = 4;
    const NHA_OIF: u16 = 5;
    const NHA_GATEWAY: u16 = 6;
    const NHA_FDB: u16 = 11;
    const NHA_RES_GROUP: u16 = 12;
    const NHA_RES_GROUP_BUCKETS: u16 = 1;
    if p.len() < 8 {
        return Err("nexthop message shorter than struct nhmsg".into());
    }
    let flags = u32_of(&p[4..8]).unwrap_or(0);
    let (mut id, mut oif, mut gw, mut blackhole, mut fdb) = (None, 0, None, false, false);
    let (mut group, mut group_type, mut buckets) = (None, 0u16, None);
    for (t, v) in attrs(&p[8..]) {
        match t {
            NHA_ID => id = u32_of(v),
            NHA_OIF => oif = u32_of(v).unwrap_or(0),
            NHA_GATEWAY => gw = ip_bytes(v),
            NHA_BLACKHOLE => blackhole = true,
            NHA_FDB => fdb = true,
            NHA_GROUP => group = Some(v),
            NHA_GROUP_TYPE => group_type = u16_of(v).unwrap_or(0),
            NHA_RES_GROUP => {
                buckets = attrs(v).find(|(t, _)| *t == NHA_RES_GROUP_BUCKETS).and_then(|(_, v)| u16_of(v))
            }
            _ => {}
        }
    }
    let id = id.ok_or("nexthop message without NHA_ID")?;
    if let Some(g) = group {
        if !new {
            return Ok(Change::Delete(Key::NexthopGroup(id)));
        }
        // struct nexthop_grp: id u32, weight u8, weight_high u8 (6.12+,
        // reserved before), reserved u16; the weight is stored minus one.
        let mut members = heapless::Vec::new();
        for m in g.chunks_exact(8) {
            let mid = u32_of(m).unwrap_or(0);
            let weight = ((m[5] as u32) << 8 | m[4] as u32) + 1;
            members
                .push(GroupMember { id: mid, weight: weight.min(u16::MAX as u32) as u16 })
                .map_err(|_| format!("nexthop group {id}: more than {MAX_GROUP_MEMBERS} members"))?;
        }
        let resilient_buckets = if group_type == 1 { Some(buckets.unwrap_or(0)) } else { None };
        return Ok(Change::Upsert(Object::NexthopGroup(NexthopGroup { id, members, resilient_buckets })));
    }
    if !new {
        return Ok(Change::Delete(Key::Nexthop(id)));
    }
    Ok(Change::Upsert(Object::Nexthop(Nexthop {
        id,
        ifindex: oif,
        gateway: gw,
        blackhole,
        onlink: flags & RTNH_F_ONLINK != 0,
        fdb,
    })))
}

/// `RTM_NEWVLAN` / `RTM_DELVLAN`: `struct br_vlan_msg` (family, reserved,
/// ifindex u32) and `BRIDGE_VLANDB_ENTRY` nests. Ranges are expanded into
/// one object per VID, so that the mirror's keys do not depend on how the
/// kernel happened to group VIDs in a message.
pub fn vlan(new: bool, p: &[u8]) -> Result<Change, String> {
    const BRIDGE_VLANDB_ENTRY: u16 = 1;
    const ENTRY_INFO: u16 = 1;
    const ENTRY_RANGE: u16 = 2;
    const PVID: u16 = 2;
    const UNTAGGED: u16 = 4;
    if p.len() < 8 {
        return Err("vlan message shorter than struct br_vlan_msg".into());
    }
    let ifindex = u32_of(&p[4..8]).unwrap_or(0);
    let mut out = Vec::new();
    for (t, v) in attrs(&p[8..]) {
        if t != BRIDGE_VLANDB_ENTRY {
            continue;
        }
        let (mut info, mut end) = (None, None);
        for (t, v) in attrs(v) {
            match t {
                ENTRY_INFO if v.len() >= 4 => {
                    info = Some((u16_of(v).unwrap_or(0), u16_of(&v[2..]).unwrap_or(0)))
                }
                ENTRY_RANGE => end = u16_of(v),
                _ => {}
            }
        }
        let Some((flags, vid)) = info else { continue };
        let last = end.unwrap_or(vid).max(vid);
        for v in vid..=last.min(4094) {
            let r = VlanRange {
                ifindex,
                vid_start: v,
                vid_end: v,
                pvid: flags & PVID != 0,
                untagged: flags & UNTAGGED != 0,
            };
            out.push(if new { Change::Upsert(Object::Vlan(r)) } else { Change::Delete(Key::Vlan(r.key())) });
        }
    }
    Ok(Change::Many(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(t: u16, v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&t.to_ne_bytes());
        b.extend_from_slice(v);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    /// An IPv4 unicast route message to 10.1.0.0/16 in the main table.
    fn v4_route(attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![AF_INET, 16, 0, 0, 254, 4, 0, 1, 0, 0, 0, 0];
        p.extend(attr(RTA_DST, &[10, 1, 0, 0]));
        p.extend(attr(RTA_PRIORITY, &20u32.to_ne_bytes()));
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    /// One `struct rtnexthop` with its attributes.
    fn hop(flags: u8, ifindex: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let inner: Vec<u8> = attrs.concat();
        let mut b = ((8 + inner.len()) as u16).to_ne_bytes().to_vec();
        b.extend_from_slice(&[flags, 0]);
        b.extend_from_slice(&ifindex.to_ne_bytes());
        b.extend(inner);
        b
    }

    fn via6(last: u8) -> Vec<u8> {
        let mut v = (AF_INET6 as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
        attr(RTA_VIA, &v)
    }

    #[test]
    fn routes_are_read_in_place_and_checked() {
        let key =
            RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, 1, 0, 0]), 16), metric: 20, ifindex: 0 };
        let gw6 = |last| Some(Ip::V6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]));
        // RFC 5549: an IPv4 route through an IPv6 gateway keeps it.
        let p = v4_route(&[attr(RTA_OIF, &3u32.to_ne_bytes()), via6(1)]);
        let Ok(Conv::Plain(r)) = route(&p) else { panic!("{:?}", route(&p)) };
        assert_eq!((r.key, r.protocol), (key, 4));
        assert_eq!(
            r.nexthops,
            RouteNexthops::Paths(
                heapless::Vec::from_slice(&[Path { ifindex: 3, gateway: gw6(1), weight: 1, onlink: false }])
                    .expect("one")
            )
        );
        // A gateway of a family the DPU has no table for is refused, not
        // taken for a connected route.
        let mut mpls = 28u16.to_ne_bytes().to_vec();
        mpls.extend_from_slice(&[0, 1, 0x41, 0]);
        let p = v4_route(&[attr(RTA_OIF, &3u32.to_ne_bytes()), attr(RTA_VIA, &mpls)]);
        assert!(matches!(route(&p), Ok(Conv::NotOffloaded(k, _)) if k == key));
        // Multipath: a dead path is left out, the others kept in order.
        let paths = [hop(0, 3, &[via6(1)]), hop(RTNH_F_DEAD as u8, 4, &[via6(2)]), hop(0, 5, &[via6(3)])];
        let p = v4_route(&[attr(RTA_MULTIPATH, &paths.concat())]);
        let Ok(Conv::Plain(r)) = route(&p) else { panic!("{:?}", route(&p)) };
        let RouteNexthops::Paths(v) = &r.nexthops else { panic!("paths") };
        assert_eq!(
            v.iter().map(|p| (p.ifindex, p.gateway)).collect::<Vec<_>>(),
            vec![(3, gw6(1)), (5, gw6(3))]
        );
        // More live paths than the wire carries: refused whole; only the
        // live ones count.
        let many: Vec<Vec<u8>> = (0..=MAX_PATHS as u32).map(|i| hop(0, 10 + i, &[])).collect();
        let p = v4_route(&[attr(RTA_MULTIPATH, &many.concat())]);
        assert!(matches!(route(&p), Ok(Conv::NotOffloaded(_, why)) if why.contains("32")));
        let mut one_dead = many.clone();
        one_dead[7][2] = RTNH_F_DEAD as u8;
        let p = v4_route(&[attr(RTA_MULTIPATH, &one_dead.concat())]);
        assert!(
            matches!(route(&p), Ok(Conv::Plain(r)) if matches!(&r.nexthops, RouteNexthops::Paths(v) if v.len() == MAX_PATHS))
        );
        // A qualified (TOS) route names every path, past the wire's 32.
        let mut tos = v4_route(&[attr(RTA_MULTIPATH, &many.concat())]);
        tos[3] = 0x10;
        assert!(
            matches!(route(&tos), Ok(Conv::Qualified(q, paths)) if q.tos == 0x10 && paths.len() == MAX_PATHS + 1)
        );
        // An encap on one path refuses the route.
        let p = v4_route(&[attr(RTA_MULTIPATH, &[hop(0, 3, &[attr(RTA_ENCAP_TYPE, &[1, 0])])].concat())]);
        assert!(matches!(route(&p), Ok(Conv::NotOffloaded(_, why)) if why.contains("encap")));
        // Cut or malformed messages are errors, never routes.
        let good = v4_route(&[attr(RTA_OIF, &3u32.to_ne_bytes())]);
        assert!(route(&good[..good.len() - 2]).is_err(), "an attribute runs past the message");
        assert!(route(&good[..8]).is_err(), "a short header");
        assert!(route(&v4_route(&[attr(RTA_GATEWAY, &[1, 2, 3])])).is_err(), "a 3-byte gateway");
        assert!(route(&v4_route(&[attr(RTA_MULTIPATH, &[8, 0, 0, 0])])).is_err(), "a cut rtnexthop");
        let mut long = good.clone();
        long[1] = 33;
        assert!(route(&long).is_err(), "/33");
        // Cloned routes and other types are not the DPU's.
        let mut cloned = good.clone();
        cloned[8..12].copy_from_slice(&0x200u32.to_ne_bytes()); // RTM_F_CLONED
        assert_eq!(route(&cloned), Ok(Conv::Ignore));
        let mut bcast = good;
        bcast[7] = 3;
        assert_eq!(route(&bcast), Ok(Conv::Ignore));
    }

    #[test]
    fn nexthop_objects_and_groups() {
        let mut p = vec![AF_INET, 0, 4, 0, 0, 0, 0, 0];
        p.extend(attr(1, &7u32.to_ne_bytes()));
        p.extend(attr(5, &3u32.to_ne_bytes()));
        p.extend(attr(6, &[192, 0, 2, 1]));
        p.extend(attr(99, &[1, 2, 3])); // unknown: ignored
        let c = nexthop(true, &p).expect("parses");
        assert_eq!(
            c,
            Change::Upsert(Object::Nexthop(Nexthop {
                id: 7,
                ifindex: 3,
                gateway: Some(Ip::V4([192, 0, 2, 1])),
                blackhole: false,
                onlink: false,
                fdb: false
            }))
        );
        let mut g = vec![AF_UNSPEC, 0, 4, 0, 0, 0, 0, 0];
        g.extend(attr(1, &9u32.to_ne_bytes()));
        let mut members = Vec::new();
        members.extend_from_slice(&7u32.to_ne_bytes());
        members.extend_from_slice(&[0, 0, 0, 0]); // weight 1
        members.extend_from_slice(&8u32.to_ne_bytes());
        members.extend_from_slice(&[2, 0, 0, 0]); // weight 3
        g.extend(attr(2, &members));
        let Ok(Change::Upsert(Object::NexthopGroup(grp))) = nexthop(true, &g) else { panic!("group") };
        assert_eq!(grp.id, 9);
        assert_eq!(grp.members.iter().map(|m| (m.id, m.weight)).collect::<Vec<_>>(), vec![(7, 1), (8, 3)]);
        assert_eq!(nexthop(false, &g), Ok(Change::Delete(Key::NexthopGroup(9))));
        assert!(nexthop(true, &[0, 1]).is_err());
        assert!(nexthop(true, &[0; 8]).is_err(), "no id");
    }

    #[test]
    fn vlan_ranges_expand_per_vid() {
        let mut p = vec![AF_BRIDGE, 0, 0, 0];
        p.extend_from_slice(&5u32.to_ne_bytes());
        let mut e = attr(1, &[(2u16 | 4).to_ne_bytes(), 10u16.to_ne_bytes()].concat());
        e.extend(attr(2, &12u16.to_ne_bytes()));
        p.extend(attr(1, &e));
        let Ok(Change::Many(v)) = vlan(true, &p) else { panic!("vlan") };
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[2],
            Change::Upsert(Object::Vlan(VlanRange {
                ifindex: 5,
                vid_start: 12,
                vid_end: 12,
                pvid: true,
                untagged: true
            }))
        );
    }
}
