//! The networking objects the host mirrors onto the DPU.
//!
//! Every object has a natural key (the part that the kernel uses to tell
//! two objects apart) and is sent as [`Op::Upsert`] of the whole object or
//! [`Op::Delete`] of its key. An upsert of an existing key replaces it.
//!
//! Bounded lists (ECMP paths, group members, flow actions) are `heapless`
//! vectors: a frame that carries more entries than the bound does not
//! decode, which the agent answers as `Invalid`.

use crate::types::{Family, IfName, Ip, Mac, Prefix};
use serde::{Deserialize, Serialize};

/// Most ECMP paths one route may carry inline (`RTA_MULTIPATH`).
pub const MAX_PATHS: usize = 32;
/// Most members of one nexthop group object.
pub const MAX_GROUP_MEMBERS: usize = 32;
/// Most actions of one flow rule.
pub const MAX_FLOW_ACTIONS: usize = 8;

/// One update: create-or-replace an object, or delete one by key.
///
/// Variants differ in size (a route carries its paths inline): there is no
/// allocator to box them into, and updates are decoded one at a time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Upsert(Object),
    Delete(Key),
}

impl Op {
    /// The key this update is about.
    pub fn key(&self) -> Key {
        match self {
            Op::Upsert(o) => o.key(),
            Op::Delete(k) => *k,
        }
    }
}

/// Any mirrored object.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Link(Link),
    Address(Address),
    Route(Route),
    Nexthop(Nexthop),
    NexthopGroup(NexthopGroup),
    Neighbour(Neighbour),
    Fdb(FdbEntry),
    Vlan(VlanRange),
    Flow(FlowRule),
    /// Protocol 1.2: how ECMP picks a path, per family.
    EcmpHash(EcmpHash),
    /// Protocol 1.2: a bridge's FDB ageing time.
    BridgeAgeing(BridgeAgeing),
    /// Protocol 1.2: a bridge port's STP state.
    PortStp(PortStp),
}

impl Object {
    pub fn key(&self) -> Key {
        match self {
            Object::Link(o) => Key::Link(o.ifindex),
            Object::Address(o) => Key::Address(o.key()),
            Object::Route(o) => Key::Route(o.key),
            Object::Nexthop(o) => Key::Nexthop(o.id),
            Object::NexthopGroup(o) => Key::NexthopGroup(o.id),
            Object::Neighbour(o) => Key::Neighbour(o.key()),
            Object::Fdb(o) => Key::Fdb(o.key()),
            Object::Vlan(o) => Key::Vlan(o.key()),
            Object::Flow(o) => Key::Flow(o.cookie),
            Object::EcmpHash(o) => Key::EcmpHash(o.family),
            Object::BridgeAgeing(o) => Key::BridgeAgeing(o.ifindex),
            Object::PortStp(o) => Key::PortStp(o.ifindex),
        }
    }

    /// Checks the invariants a well-formed object of this type keeps.
    /// The agent answers `Invalid` with this text when one is broken.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Object::Link(o) => {
                if o.ifindex == 0 {
                    return Err("link ifindex 0");
                }
                if o.mtu == 0 {
                    return Err("link mtu 0");
                }
                Ok(())
            }
            Object::Address(o) => {
                if o.ifindex == 0 {
                    return Err("address ifindex 0");
                }
                if !o.prefix.is_valid() {
                    return Err("address prefix length out of range");
                }
                Ok(())
            }
            Object::Route(o) => o.validate(),
            Object::Nexthop(o) => {
                if o.id == 0 {
                    return Err("nexthop id 0");
                }
                if !o.blackhole && o.ifindex == 0 && o.gateway.is_none() {
                    return Err("nexthop has neither device nor gateway");
                }
                Ok(())
            }
            Object::NexthopGroup(o) => {
                if o.id == 0 {
                    return Err("nexthop group id 0");
                }
                if o.members.is_empty() {
                    return Err("nexthop group without members");
                }
                if o.members.iter().any(|m| m.id == 0 || m.id == o.id || m.weight == 0 || m.weight > 256) {
                    return Err("nexthop group member id 0, self, or weight outside 1..=256");
                }
                Ok(())
            }
            Object::Neighbour(o) => {
                if o.ifindex == 0 {
                    return Err("neighbour ifindex 0");
                }
                Ok(())
            }
            Object::Fdb(o) => {
                if o.ifindex == 0 {
                    return Err("fdb ifindex 0");
                }
                if o.vid > 4095 {
                    return Err("fdb vlan id above 4095");
                }
                Ok(())
            }
            Object::Vlan(o) => o.key().validate(),
            Object::Flow(o) => o.validate(),
            Object::EcmpHash(o) => {
                if o.policy > EcmpHash::CUSTOM {
                    return Err("ecmp hash policy above 3");
                }
                if o.fields & !EcmpHash::KNOWN_FIELDS != 0 {
                    return Err("ecmp hash fields with unknown bits");
                }
                Ok(())
            }
            Object::BridgeAgeing(o) => {
                if o.ifindex == 0 {
                    return Err("bridge ifindex 0");
                }
                Ok(())
            }
            Object::PortStp(o) => {
                if o.ifindex == 0 {
                    return Err("port ifindex 0");
                }
                if o.state > PortStp::BLOCKING {
                    return Err("stp state above 4 (blocking)");
                }
                Ok(())
            }
        }
    }
}

/// The natural key of any object; what a delete names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Key {
    Link(u32),
    Address(AddressKey),
    Route(RouteKey),
    Nexthop(u32),
    NexthopGroup(u32),
    Neighbour(NeighbourKey),
    Fdb(FdbKey),
    Vlan(VlanKey),
    Flow(u64),
    EcmpHash(Family),
    BridgeAgeing(u32),
    PortStp(u32),
}

impl Key {
    /// Checks a key of a delete the way [`Object::validate`] checks objects.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Key::Route(k) => k.validate(),
            Key::Vlan(k) => k.validate(),
            Key::Fdb(k) if k.vid > 4095 => Err("fdb vlan id above 4095"),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------- links --

/// What kind of device a link is (`IFLA_INFO_KIND`, or a physical port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LinkKind {
    /// A device without `IFLA_INFO_KIND`: a NIC port, a netdevsim port.
    Device,
    Loopback,
    Bridge,
    Vlan,
    Vxlan,
    Veth,
    Bond,
    Dummy,
    Vrf,
    Other,
}

/// `IF_OPER_*` operational state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
}

/// A network device (`RTM_NEWLINK`). Key: `ifindex`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub ifindex: u32,
    pub name: IfName,
    pub kind: LinkKind,
    pub mtu: u32,
    pub mac: Option<Mac>,
    pub oper: OperState,
    /// `IFF_UP`: administratively up.
    pub admin_up: bool,
    /// Bridge, bond or VRF this link is enslaved to; 0 if none.
    pub master: u32,
    /// Lower device of a VLAN or VXLAN device; 0 if none.
    pub parent: u32,
    /// VLAN id of a VLAN device.
    pub vlan_id: Option<u16>,
    /// VNI of a VXLAN device.
    pub vni: Option<u32>,
}

// ------------------------------------------------------------ addresses --

/// An interface address (`RTM_NEWADDR`). Key: ifindex and address/len.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ifindex: u32,
    /// The local address and its prefix length (host bits kept).
    pub prefix: Prefix,
    pub scope: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AddressKey {
    pub ifindex: u32,
    pub prefix: Prefix,
}

impl Address {
    pub fn key(&self) -> AddressKey {
        AddressKey { ifindex: self.ifindex, prefix: self.prefix }
    }
}

// --------------------------------------------------------------- routes --

/// Route type (`RTN_*`), the ones a forwarding table distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteType {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Local,
}

/// A route's key: kernel table, destination prefix, metric (priority),
/// and for a per-device route its device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteKey {
    pub table: u32,
    pub dst: Prefix,
    pub metric: u32,
    /// 0, except for an IPv6 route to a link-local destination
    /// ([`Prefix::is_link_local`]): the kernel holds one such route per
    /// device (`fe80::/64` on every link), all with the same prefix and
    /// metric, and its lookup of a link-local destination only considers
    /// the routes of the device the packet came in on. There this is the
    /// route's device, and the DPU matches the route on that ingress port
    /// only.
    pub ifindex: u32,
}

/// Three integer writes (the derive makes six, one per field and part):
/// route keys are what the host hashes most.
impl core::hash::Hash for RouteKey {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        h.write_u64((self.table as u64) << 32 | self.metric as u64);
        h.write_u64((self.ifindex as u64) << 8 | self.dst.len as u64);
        self.dst.addr.hash(h);
    }
}

impl RouteKey {
    pub fn validate(&self) -> Result<(), &'static str> {
        if !self.dst.is_canonical() {
            return Err("route destination has host bits set");
        }
        if self.ifindex != 0 && !self.dst.is_link_local() {
            return Err("route key names a device, but the destination is not IPv6 link-local");
        }
        Ok(())
    }
}

/// One path of a route that carries its nexthops inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Path {
    pub ifindex: u32,
    pub gateway: Option<Ip>,
    /// ECMP weight, 1..=256 (`rtnh_hops + 1`).
    pub weight: u16,
    pub onlink: bool,
}

/// Where a route sends packets.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteNexthops {
    /// No nexthop: blackhole, unreachable, prohibit and local routes.
    None,
    /// A nexthop object or group (`RTA_NH_ID`).
    Object(u32),
    /// Inline nexthops (`RTA_OIF`/`RTA_GATEWAY`, or `RTA_MULTIPATH`).
    Paths(heapless::Vec<Path, MAX_PATHS>),
}

/// A route (`RTM_NEWROUTE`). Key: [`RouteKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub key: RouteKey,
    pub kind: RouteType,
    /// `RTPROT_*`.
    pub protocol: u8,
    /// `RT_SCOPE_*`.
    pub scope: u8,
    pub nexthops: RouteNexthops,
}

impl Route {
    fn validate(&self) -> Result<(), &'static str> {
        self.key.validate()?;
        if self.key.ifindex != 0 {
            match (&self.kind, &self.nexthops) {
                (RouteType::Local, RouteNexthops::None) => {}
                (RouteType::Unicast, RouteNexthops::Paths(p))
                    if p.iter().all(|p| p.ifindex == self.key.ifindex) => {}
                _ => return Err("per-device route that is not local or through its own device"),
            }
        }
        let fam = self.key.dst.family();
        match (&self.kind, &self.nexthops) {
            (RouteType::Unicast, RouteNexthops::None) => Err("unicast route without nexthop"),
            (RouteType::Unicast, RouteNexthops::Paths(p)) if p.is_empty() => {
                Err("unicast route with an empty path list")
            }
            (RouteType::Unicast, RouteNexthops::Paths(p))
                if p.iter().any(|p| p.ifindex == 0 || p.weight == 0 || p.weight > 256) =>
            {
                Err("route path without device or with weight outside 1..=256")
            }
            (RouteType::Unicast, RouteNexthops::Paths(p))
                if p.iter().any(|p| p.gateway.is_some_and(|g| g.family() != fam && fam == Family::V6)) =>
            {
                Err("IPv6 route with an IPv4 gateway")
            }
            (RouteType::Unicast, RouteNexthops::Object(0)) => Err("route nexthop id 0"),
            (RouteType::Unicast, _) => Ok(()),
            (_, RouteNexthops::None) => Ok(()),
            (RouteType::Local, _) => Ok(()),
            _ => Err("non-unicast route with nexthops"),
        }
    }
}

// ------------------------------------------------------------- nexthops --

/// A nexthop object (`RTM_NEWNEXTHOP` without `NHA_GROUP`). Key: `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nexthop {
    pub id: u32,
    pub ifindex: u32,
    pub gateway: Option<Ip>,
    pub blackhole: bool,
    pub onlink: bool,
    /// An FDB nexthop (used by VXLAN), not for routes.
    pub fdb: bool,
}

/// One member of a nexthop group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    pub id: u32,
    /// 1..=256 for the kernel's mpath groups.
    pub weight: u16,
}

/// A nexthop group object (`RTM_NEWNEXTHOP` with `NHA_GROUP`). Key: `id`,
/// in the same id space as nexthops.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NexthopGroup {
    pub id: u32,
    pub members: heapless::Vec<GroupMember, MAX_GROUP_MEMBERS>,
    /// A resilient group (`NEXTHOP_GRP_TYPE_RES`) with this many buckets.
    pub resilient_buckets: Option<u16>,
}

// ----------------------------------------------------------- neighbours --

/// A neighbour (`RTM_NEWNEIGH`, AF_INET/AF_INET6). Key: ifindex and IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: Ip,
    /// Link-layer address; none while unresolved.
    pub mac: Option<Mac>,
    /// `NUD_*` state bits.
    pub state: u16,
    pub router: bool,
}

/// `NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_NOARP |
/// NUD_PERMANENT`: the states in which a neighbour may be used to forward.
pub const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NeighbourKey {
    pub ifindex: u32,
    pub ip: Ip,
}

impl Neighbour {
    pub fn key(&self) -> NeighbourKey {
        NeighbourKey { ifindex: self.ifindex, ip: self.ip }
    }

    /// True if the entry can be used to rewrite a packet (`NUD_VALID`).
    pub fn is_valid(&self) -> bool {
        self.mac.is_some() && self.state & NUD_VALID != 0
    }
}

// ------------------------------------------------------------ bridging --

/// A bridge forwarding entry (`RTM_NEWNEIGH`, AF_BRIDGE). Key: port,
/// MAC and VLAN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdbEntry {
    /// The bridge port (or VXLAN device) the MAC is behind.
    pub ifindex: u32,
    pub mac: Mac,
    /// VLAN id, 0 when the bridge does not filter VLANs.
    pub vid: u16,
    /// The bridge; 0 for an entry on a device's own table (`self`).
    pub master: u32,
    /// Static (`NUD_NOARP|NUD_PERMANENT`) rather than learned.
    pub is_static: bool,
    /// Remote VTEP of a VXLAN FDB entry.
    pub remote: Option<Ip>,
    /// VNI of a VXLAN FDB entry, if not the device's own.
    pub vni: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FdbKey {
    pub ifindex: u32,
    pub mac: Mac,
    pub vid: u16,
}

impl FdbEntry {
    pub fn key(&self) -> FdbKey {
        FdbKey { ifindex: self.ifindex, mac: self.mac, vid: self.vid }
    }
}

/// Bridge VLAN membership of a port for a range of VIDs (`RTM_NEWVLAN`).
/// Key: port and range. The agent keeps one hardware entry per VID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VlanRange {
    pub ifindex: u32,
    pub vid_start: u16,
    pub vid_end: u16,
    pub pvid: bool,
    pub untagged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VlanKey {
    pub ifindex: u32,
    pub vid_start: u16,
    pub vid_end: u16,
}

impl VlanKey {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.ifindex == 0 {
            return Err("vlan ifindex 0");
        }
        if self.vid_start == 0 || self.vid_start > self.vid_end || self.vid_end > 4094 {
            return Err("vlan range outside 1..=4094 or reversed");
        }
        Ok(())
    }
}

impl VlanRange {
    pub fn key(&self) -> VlanKey {
        VlanKey { ifindex: self.ifindex, vid_start: self.vid_start, vid_end: self.vid_end }
    }
}

// ---------------------------------------------------- switch settings --

/// ECMP path selection of one family: `net.ipv4.fib_multipath_hash_policy`
/// and `fib_multipath_hash_fields` (or their `net.ipv6` twins), which
/// netlink carries no event for. Key: the family. Absent means the
/// kernel's default, policy 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcmpHash {
    pub family: Family,
    /// 0: L3 (addresses; IPv6 also flow label and next header), 1: L4
    /// (addresses, protocol, ports), 2: L3, inner headers if any, 3:
    /// custom, the fields below.
    pub policy: u8,
    /// `FIB_MULTIPATH_HASH_FIELD_*` bits, used by policy 3.
    pub fields: u32,
}

impl EcmpHash {
    pub const L3: u8 = 0;
    pub const L4: u8 = 1;
    pub const L3_INNER: u8 = 2;
    pub const CUSTOM: u8 = 3;
    pub const FIELD_SRC_IP: u32 = 1 << 0;
    pub const FIELD_DST_IP: u32 = 1 << 1;
    pub const FIELD_IP_PROTO: u32 = 1 << 2;
    pub const FIELD_FLOWLABEL: u32 = 1 << 3;
    pub const FIELD_SRC_PORT: u32 = 1 << 4;
    pub const FIELD_DST_PORT: u32 = 1 << 5;
    /// Inner-header fields (bits 6..=11).
    pub const KNOWN_FIELDS: u32 = 0xfff;
}

/// A bridge's FDB ageing time (`IFLA_BR_AGEING_TIME`). Key: the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeAgeing {
    pub ifindex: u32,
    /// Centiseconds (clock_t, USER_HZ), as the kernel reports it.
    pub ageing_cs: u32,
}

/// A bridge port's STP state (`IFLA_BRPORT_STATE`). Key: the port. A port
/// that is not forwarding neither forwards nor learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStp {
    pub ifindex: u32,
    /// `BR_STATE_*`.
    pub state: u8,
}

impl PortStp {
    pub const DISABLED: u8 = 0;
    pub const LISTENING: u8 = 1;
    pub const LEARNING: u8 = 2;
    pub const FORWARDING: u8 = 3;
    pub const BLOCKING: u8 = 4;
}

// ---------------------------------------------------------------- flows --

/// A value and the mask of the bits that must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Masked<T> {
    pub value: T,
    pub mask: T,
}

/// Match keys of a flow rule; `None` matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowMatch {
    pub eth_type: Option<u16>,
    pub src_mac: Option<Masked<Mac>>,
    pub dst_mac: Option<Masked<Mac>>,
    pub vlan_id: Option<u16>,
    pub ip_proto: Option<u8>,
    /// Source address; both value and mask of the same family.
    pub src_ip: Option<Masked<Ip>>,
    pub dst_ip: Option<Masked<Ip>>,
    pub src_port: Option<Masked<u16>>,
    pub dst_port: Option<Masked<u16>>,
}

/// What a matching flow does, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlowAction {
    Drop,
    /// Accept: stop processing, forward normally.
    Pass,
    /// Redirect to the egress of another device.
    Redirect(u32),
    /// Copy to the egress of another device and go on.
    Mirror(u32),
    VlanPush {
        vid: u16,
        tpid: u16,
    },
    VlanPop,
    /// Continue the lookup in another chain.
    Goto(u32),
}

/// A tc flower rule offloaded to the DPU. Key: the tc cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRule {
    pub cookie: u64,
    pub ifindex: u32,
    pub chain: u32,
    pub prio: u16,
    pub matches: FlowMatch,
    pub actions: heapless::Vec<FlowAction, MAX_FLOW_ACTIONS>,
}

impl FlowRule {
    fn validate(&self) -> Result<(), &'static str> {
        if self.actions.is_empty() {
            return Err("flow rule without actions");
        }
        let m = &self.matches;
        for ip in [&m.src_ip, &m.dst_ip].into_iter().flatten() {
            if ip.value.family() != ip.mask.family() {
                return Err("flow address and mask of different families");
            }
        }
        if let (Some(s), Some(d)) = (&m.src_ip, &m.dst_ip) {
            if s.value.family() != d.value.family() {
                return Err("flow source and destination of different families");
            }
        }
        if m.vlan_id.is_some_and(|v| v > 4095) {
            return Err("flow vlan id above 4095");
        }
        for a in &self.actions {
            if let FlowAction::VlanPush { vid, .. } = a {
                if *vid > 4095 {
                    return Err("vlan push id above 4095");
                }
            }
        }
        Ok(())
    }
}
