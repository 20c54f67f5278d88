//! Register-level layout of the hardware region. All integers are
//! little-endian. `docs/HARDWARE.md` is the prose version of this file.
//!
//! ```text
//! 0x0000  header (HEADER_SIZE bytes)
//!         0x00 magic "DPUHW\0v1"
//!         0x08 layout version (u32) = 1
//!         0x0c table count (u32)
//!         0x10 board name (32 bytes, NUL padded)
//!         0x30 total region size (u64)
//!         0x40 table descriptors, DESC_SIZE bytes each, in TableId order:
//!              +0x00 table id (u32)    +0x04 entry size (u32)
//!              +0x08 capacity (u32)    +0x0c counter record size (u32, 0 = none)
//!              +0x10 entries offset (u64)
//!              +0x18 counters offset (u64)
//!              +0x20 WRITES register (u64): entries written
//!              +0x28 INVALIDATES register (u64): entries invalidated
//!              +0x30 SEQ register (u64): write sequence, odd mid-write
//! then    each table's entries, capacity x entry size, 64-byte aligned
//! then    each table's counters, capacity x 32 bytes, 64-byte aligned
//! ```
//!
//! Every entry starts with a flags byte whose bit 0 is VALID. Every change
//! of an entry is a seqlock write against its table's SEQ register (odd
//! while the entry's bytes change); a reader keeps a copy only if SEQ was
//! even and unchanged around it (`Region::read_entry`), so a replace in
//! place never takes an entry out of the lookup.
//!
//! A counter record is four u64: for routes, nexthops and flows
//! `[packets, bytes, last-hit time in CLOCK_MONOTONIC ms (0 = never), drops]`;
//! for ports `[rx packets, rx bytes, tx packets, tx bytes]`.

use dpu_wire::types::{Family, Ip, Mac};

pub const MAGIC: [u8; 8] = *b"DPUHW\0v1";
pub const LAYOUT_VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 4096;
pub const DESC_OFFSET: usize = 0x40;
pub const DESC_SIZE: usize = 0x40;
pub const COUNTER_SIZE: usize = 32;
pub const VALID: u8 = 1;

const _: () = assert!(DESC_OFFSET + DESC_SIZE * TableId::COUNT <= HEADER_SIZE, "descriptors fit the header");

/// The hardware tables, in descriptor order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum TableId {
    Port = 0,
    Addr = 1,
    Route4 = 2,
    Route6 = 3,
    Nexthop = 4,
    Group = 5,
    Neigh = 6,
    Fdb = 7,
    Vlan = 8,
    Flow = 9,
    /// Switch settings: ECMP hash per family, bridge ageing, port STP.
    Switch = 10,
}

impl TableId {
    /// The byte ranges of this table's entries that make up their key:
    /// each entry type's `KEY`, next to its `encode`, the one place the
    /// layout is written down (the agent's key index uses these).
    pub fn key_ranges(self) -> KeyRanges {
        match self {
            TableId::Port => PortEntry::KEY,
            TableId::Addr => AddrEntry::KEY,
            TableId::Route4 | TableId::Route6 => RouteEntry::KEY,
            TableId::Nexthop => NexthopEntry::KEY,
            TableId::Group => GroupEntry::KEY,
            TableId::Neigh => NeighEntry::KEY,
            TableId::Fdb => FdbEntry::KEY,
            TableId::Vlan => VlanEntry::KEY,
            TableId::Flow => FlowEntry::KEY,
            TableId::Switch => SwitchEntry::KEY,
        }
    }
    pub const ALL: [TableId; 11] = [
        TableId::Port,
        TableId::Addr,
        TableId::Route4,
        TableId::Route6,
        TableId::Nexthop,
        TableId::Group,
        TableId::Neigh,
        TableId::Fdb,
        TableId::Vlan,
        TableId::Flow,
        TableId::Switch,
    ];
    pub const COUNT: usize = 11;

    pub fn from_u32(v: u32) -> Option<TableId> {
        TableId::ALL.get(v as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            TableId::Port => "port",
            TableId::Addr => "addr",
            TableId::Route4 => "route4",
            TableId::Route6 => "route6",
            TableId::Nexthop => "nexthop",
            TableId::Group => "group",
            TableId::Neigh => "neigh",
            TableId::Fdb => "fdb",
            TableId::Vlan => "vlan",
            TableId::Flow => "flow",
            TableId::Switch => "switch",
        }
    }

    /// Entry size; the group table's depends on the board's ECMP width.
    pub fn entry_size(self, ecmp_members: u32) -> usize {
        match self {
            TableId::Port => 64,
            TableId::Addr => 32,
            TableId::Route4 | TableId::Route6 => 40,
            TableId::Nexthop => 32,
            TableId::Group => GROUP_HDR + GROUP_MEMBER * ecmp_members as usize,
            TableId::Neigh => 32,
            TableId::Fdb => 40,
            TableId::Vlan => 8,
            TableId::Flow => 208,
            TableId::Switch => 16,
        }
    }

    pub fn has_counters(self) -> bool {
        matches!(self, TableId::Port | TableId::Route4 | TableId::Route6 | TableId::Nexthop | TableId::Flow)
    }
}

/// Table capacities of one board; produces the region layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub board: String,
    /// Capacity per table, in [`TableId`] order.
    pub capacity: [u32; TableId::COUNT],
    pub ecmp_members: u32,
}

/// Where one table lives in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableDesc {
    pub id: TableId,
    pub entry_size: usize,
    pub capacity: u32,
    pub counter_size: usize,
    pub entries_off: usize,
    pub counters_off: usize,
}

fn align64(v: usize) -> usize {
    (v + 63) & !63
}

impl Layout {
    /// Descriptors of every table and the total region size.
    pub fn tables(&self) -> ([TableDesc; TableId::COUNT], usize) {
        let mut off = HEADER_SIZE;
        let mut descs = TableId::ALL.map(|id| TableDesc {
            id,
            entry_size: id.entry_size(self.ecmp_members),
            capacity: self.capacity[id as usize],
            counter_size: if id.has_counters() { COUNTER_SIZE } else { 0 },
            entries_off: 0,
            counters_off: 0,
        });
        for d in descs.iter_mut() {
            d.entries_off = off;
            off = align64(off + d.entry_size * d.capacity as usize);
        }
        for d in descs.iter_mut() {
            d.counters_off = off;
            off = align64(off + d.counter_size * d.capacity as usize);
        }
        (descs, off)
    }
}

// ------------------------------------------------------------- codecs --
//
// One struct per entry format. `encode` fills a whole entry with its flags
// byte's VALID bit clear (the HAL sets it); `decode` reads one.

fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
fn get16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}
fn get64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}
fn get_mac(b: &[u8], off: usize) -> Mac {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[off..off + 6]);
    Mac(m)
}
fn get16b(b: &[u8], off: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[off..off + 16]);
    a
}

/// Family code: 4 or 6 (0 = none).
pub fn family_code(f: Option<Family>) -> u8 {
    match f {
        None => 0,
        Some(Family::V4) => 4,
        Some(Family::V6) => 6,
    }
}

pub fn family_from_code(c: u8) -> Option<Family> {
    match c {
        4 => Some(Family::V4),
        6 => Some(Family::V6),
        _ => None,
    }
}

fn put_ip(b: &mut [u8], fam_off: usize, ip_off: usize, ip: Option<Ip>) {
    b[fam_off] = family_code(ip.map(|i| i.family()));
    b[ip_off..ip_off + 16].copy_from_slice(&ip.map(|i| i.to_bytes16()).unwrap_or([0; 16]));
}

fn get_ip(b: &[u8], fam_off: usize, ip_off: usize) -> Option<Ip> {
    family_from_code(b[fam_off]).map(|f| Ip::from_bytes16(f, &get16b(b, ip_off)))
}

/// Byte ranges `[start, end)` of an entry that make up its key;
/// `usize::MAX` as an end means "to the end of the entry".
pub type KeyRanges = &'static [(usize, usize)];

/// The key of an agent-created nexthop or group (id 0): its whole content
/// after the flags byte.
pub const CONTENT_KEY: KeyRanges = &[(1, usize::MAX)];

/// Port (interface) entry, 64 bytes.
/// `0 flags | 1 kind | 2 state | 4 ifindex | 8 mtu | 12 master | 16 parent |
/// 20 vni | 24 vlan | 26 mac[6] | 32 name[16]`;
/// state bits: 0 admin up, 1 oper up, 2 has vlan, 3 has vni, 4 has mac.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortEntry {
    pub ifindex: u32,
    /// `dpu_wire::LinkKind` as its declaration index.
    pub kind: u8,
    pub admin_up: bool,
    pub oper_up: bool,
    pub mtu: u32,
    pub master: u32,
    pub parent: u32,
    pub vlan_id: Option<u16>,
    pub vni: Option<u32>,
    pub mac: Option<Mac>,
    pub name: [u8; 16],
}

pub mod port_kind {
    pub const DEVICE: u8 = 0;
    pub const LOOPBACK: u8 = 1;
    pub const BRIDGE: u8 = 2;
    pub const VLAN: u8 = 3;
    pub const VXLAN: u8 = 4;
}

impl PortEntry {
    /// The entry's key: the ifindex.
    pub const KEY: KeyRanges = &[(4, 8)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        b[1] = self.kind;
        b[2] = self.admin_up as u8
            | (self.oper_up as u8) << 1
            | (self.vlan_id.is_some() as u8) << 2
            | (self.vni.is_some() as u8) << 3
            | (self.mac.is_some() as u8) << 4;
        put32(b, 4, self.ifindex);
        put32(b, 8, self.mtu);
        put32(b, 12, self.master);
        put32(b, 16, self.parent);
        put32(b, 20, self.vni.unwrap_or(0));
        put16(b, 24, self.vlan_id.unwrap_or(0));
        b[26..32].copy_from_slice(&self.mac.unwrap_or_default().0);
        b[32..48].copy_from_slice(&self.name);
    }
    pub fn decode(b: &[u8]) -> Self {
        let s = b[2];
        let mut name = [0u8; 16];
        name.copy_from_slice(&b[32..48]);
        Self {
            ifindex: get32(b, 4),
            kind: b[1],
            admin_up: s & 1 != 0,
            oper_up: s & 2 != 0,
            mtu: get32(b, 8),
            master: get32(b, 12),
            parent: get32(b, 16),
            vlan_id: (s & 4 != 0).then(|| get16(b, 24)),
            vni: (s & 8 != 0).then(|| get32(b, 20)),
            mac: (s & 16 != 0).then(|| get_mac(b, 26)),
            name,
        }
    }
    pub fn name_str(&self) -> &str {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(16);
        core::str::from_utf8(&self.name[..n]).unwrap_or("?")
    }
}

/// Switch setting entry, 16 bytes: `0 flags | 1 kind | 2 family | 4
/// ifindex | 8 value | 12 value2`. Key: kind, family, ifindex.
/// - kind 1, ECMP hash: family 4 or 6, ifindex 0; value = policy
///   (0 L3, 1 L4, 2 L3 inner, 3 custom), value2 = the custom fields
///   (`FIB_MULTIPATH_HASH_FIELD_*`). No entry: policy 0.
/// - kind 2, bridge ageing: family 0, ifindex = the bridge; value =
///   ageing time in centiseconds.
/// - kind 3, port STP state: family 0, ifindex = the port; value =
///   `BR_STATE_*`. No entry: forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchEntry {
    pub kind: u8,
    pub family: u8,
    pub ifindex: u32,
    pub value: u32,
    pub value2: u32,
}

pub mod switch_kind {
    pub const ECMP_HASH: u8 = 1;
    pub const BRIDGE_AGEING: u8 = 2;
    pub const PORT_STP: u8 = 3;
}

impl SwitchEntry {
    /// The entry's key: kind, family, ifindex.
    pub const KEY: KeyRanges = &[(1, 8)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        b[1] = self.kind;
        b[2] = self.family;
        put32(b, 4, self.ifindex);
        put32(b, 8, self.value);
        put32(b, 12, self.value2);
    }
    pub fn decode(b: &[u8]) -> Self {
        Self { kind: b[1], family: b[2], ifindex: get32(b, 4), value: get32(b, 8), value2: get32(b, 12) }
    }
}

/// Local address entry, 32 bytes.
/// `0 flags | 1 family | 2 plen | 3 scope | 4 ifindex | 8 addr[16]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrEntry {
    pub ifindex: u32,
    pub addr: Ip,
    pub plen: u8,
    pub scope: u8,
}

impl AddrEntry {
    /// The entry's key: family, plen, ifindex, address.
    pub const KEY: KeyRanges = &[(1, 3), (4, 24)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        put_ip(b, 1, 8, Some(self.addr));
        b[2] = self.plen;
        b[3] = self.scope;
        put32(b, 4, self.ifindex);
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self { ifindex: get32(b, 4), addr: get_ip(b, 1, 8)?, plen: b[2], scope: b[3] })
    }
}

/// What a route does with a packet.
pub mod route_action {
    /// Discard silently (blackhole).
    pub const DROP: u8 = 0;
    /// Forward through the nexthop entry `action_index`.
    pub const NEXTHOP: u8 = 1;
    /// Forward through the group entry `action_index`.
    pub const GROUP: u8 = 2;
    /// Deliver to the host CPU (local route).
    pub const TRAP: u8 = 3;
    /// Discard and trap for an ICMP unreachable.
    pub const UNREACHABLE: u8 = 4;
    /// Discard and trap for an ICMP administratively prohibited.
    pub const PROHIBIT: u8 = 5;
}

/// Route entry (both route tables), 40 bytes.
/// `0 flags | 1 family | 2 plen | 3 type | 4 proto | 5 scope | 6 action |
/// 8 table | 12 metric | 16 action index | 20 dst[16] | 36 ingress ifindex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub table: u32,
    pub dst: Ip,
    pub plen: u8,
    pub metric: u32,
    /// 0: the route matches packets from any port. Otherwise it matches
    /// only packets that came in on this port: an IPv6 link-local route,
    /// held once per device (`dpu_wire::RouteKey::ifindex`).
    pub in_ifindex: u32,
    /// `dpu_wire::RouteType` as its declaration index.
    pub rtype: u8,
    pub proto: u8,
    pub scope: u8,
    pub action: u8,
    pub action_index: u32,
}

impl RouteEntry {
    /// The entry's key: family, plen, table, metric, destination, ingress
    /// port.
    pub const KEY: KeyRanges = &[(1, 3), (8, 16), (20, 40)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        put_ip(b, 1, 20, Some(self.dst));
        b[2] = self.plen;
        b[3] = self.rtype;
        b[4] = self.proto;
        b[5] = self.scope;
        b[6] = self.action;
        put32(b, 8, self.table);
        put32(b, 12, self.metric);
        put32(b, 16, self.action_index);
        put32(b, 36, self.in_ifindex);
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            table: get32(b, 8),
            dst: get_ip(b, 1, 20)?,
            plen: b[2],
            metric: get32(b, 12),
            in_ifindex: get32(b, 36),
            rtype: b[3],
            proto: b[4],
            scope: b[5],
            action: b[6],
            action_index: get32(b, 16),
        })
    }
}

/// Nexthop entry, 32 bytes.
/// `0 flags | 1 gw family | 2 nh flags | 4 id | 8 ifindex | 12 gateway[16]`;
/// nh flags: bit 0 onlink, bit 1 blackhole, bit 2 fdb. Id 0 marks a
/// nexthop the agent created for a route's inline path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NexthopEntry {
    pub id: u32,
    pub ifindex: u32,
    pub gateway: Option<Ip>,
    pub onlink: bool,
    pub blackhole: bool,
    pub fdb: bool,
}

impl NexthopEntry {
    /// The entry's key: the id (an agent-created one, id 0, is keyed by
    /// its whole content: [`CONTENT_KEY`]).
    pub const KEY: KeyRanges = &[(4, 8)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        put_ip(b, 1, 12, self.gateway);
        b[2] = self.onlink as u8 | (self.blackhole as u8) << 1 | (self.fdb as u8) << 2;
        put32(b, 4, self.id);
        put32(b, 8, self.ifindex);
    }
    pub fn decode(b: &[u8]) -> Self {
        Self {
            id: get32(b, 4),
            ifindex: get32(b, 8),
            gateway: get_ip(b, 1, 12),
            onlink: b[2] & 1 != 0,
            blackhole: b[2] & 2 != 0,
            fdb: b[2] & 4 != 0,
        }
    }
}

pub const GROUP_HDR: usize = 16;
pub const GROUP_MEMBER: usize = 8;

/// Nexthop group entry, `16 + 8 * ecmp_members` bytes.
/// `0 flags | 1 member count | 2 group flags | 4 id | 8 total weight |
/// 16 + 8i: nexthop index (u32), weight (u16)`; group flags bit 0:
/// resilient. Id 0 marks a group the agent created for a multipath route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupEntry {
    pub id: u32,
    pub resilient: bool,
    /// (nexthop table index, weight)
    pub members: Vec<(u32, u16)>,
}

impl GroupEntry {
    /// The entry's key: the id (id 0: [`CONTENT_KEY`]).
    pub const KEY: KeyRanges = &[(4, 8)];
    pub fn encode(&self, b: &mut [u8]) {
        Self::encode_members(self.id, self.resilient, self.members.iter().copied(), b)
    }

    /// Encodes without building a `GroupEntry` (no allocation).
    pub fn encode_members(id: u32, resilient: bool, members: impl Iterator<Item = (u32, u16)>, b: &mut [u8]) {
        b.fill(0);
        let mut n = 0usize;
        let mut total = 0u32;
        for (i, (idx, w)) in members.enumerate() {
            let off = GROUP_HDR + i * GROUP_MEMBER;
            if off + GROUP_MEMBER > b.len() {
                break;
            }
            put32(b, off, idx);
            put16(b, off + 4, w);
            total += w as u32;
            n += 1;
        }
        b[1] = n as u8;
        b[2] = resilient as u8;
        put32(b, 4, id);
        put32(b, 8, total);
    }

    pub fn decode(b: &[u8]) -> Self {
        let n = (b[1] as usize).min((b.len() - GROUP_HDR) / GROUP_MEMBER);
        Self {
            id: get32(b, 4),
            resilient: b[2] & 1 != 0,
            members: (0..n)
                .map(|i| {
                    let off = GROUP_HDR + i * GROUP_MEMBER;
                    (get32(b, off), get16(b, off + 4))
                })
                .collect(),
        }
    }

    /// Member `i` of an encoded entry, without decoding the rest.
    pub fn member(b: &[u8], i: usize) -> (u32, u16) {
        let off = GROUP_HDR + i * GROUP_MEMBER;
        (get32(b, off), get16(b, off + 4))
    }

    pub fn member_count(b: &[u8]) -> usize {
        (b[1] as usize).min((b.len() - GROUP_HDR) / GROUP_MEMBER)
    }

    pub fn id_of(b: &[u8]) -> u32 {
        get32(b, 4)
    }
}

/// Neighbour entry, 32 bytes.
/// `0 flags | 1 family | 2 NUD state (u16) | 4 ifindex | 8 mac[6] |
/// 14 bit 0 router, bit 1 has mac | 16 ip[16]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighEntry {
    pub ifindex: u32,
    pub ip: Ip,
    pub mac: Option<Mac>,
    pub state: u16,
    pub router: bool,
}

impl NeighEntry {
    /// The entry's key: family, ifindex, IP.
    pub const KEY: KeyRanges = &[(1, 2), (4, 8), (16, 32)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        put_ip(b, 1, 16, Some(self.ip));
        put16(b, 2, self.state);
        put32(b, 4, self.ifindex);
        b[8..14].copy_from_slice(&self.mac.unwrap_or_default().0);
        b[14] = self.router as u8 | (self.mac.is_some() as u8) << 1;
    }
    pub fn decode(b: &[u8]) -> Option<Self> {
        Some(Self {
            ifindex: get32(b, 4),
            ip: get_ip(b, 1, 16)?,
            mac: (b[14] & 2 != 0).then(|| get_mac(b, 8)),
            state: get16(b, 2),
            router: b[14] & 1 != 0,
        })
    }
}

/// FDB entry, 40 bytes.
/// `0 flags | 1 bit 0 static, bit 1 has vni | 2 vid | 4 ifindex | 8 master |
/// 12 mac[6] | 18 remote family | 20 vni | 24 remote[16]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub ifindex: u32,
    pub mac: Mac,
    pub vid: u16,
    pub master: u32,
    pub is_static: bool,
    pub remote: Option<Ip>,
    pub vni: Option<u32>,
}

impl FdbEntry {
    /// The entry's key: VLAN, ifindex, MAC.
    pub const KEY: KeyRanges = &[(2, 8), (12, 18)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        b[1] = self.is_static as u8 | (self.vni.is_some() as u8) << 1;
        put16(b, 2, self.vid);
        put32(b, 4, self.ifindex);
        put32(b, 8, self.master);
        b[12..18].copy_from_slice(&self.mac.0);
        put_ip(b, 18, 24, self.remote);
        put32(b, 20, self.vni.unwrap_or(0));
    }
    pub fn decode(b: &[u8]) -> Self {
        Self {
            ifindex: get32(b, 4),
            mac: get_mac(b, 12),
            vid: get16(b, 2),
            master: get32(b, 8),
            is_static: b[1] & 1 != 0,
            remote: get_ip(b, 18, 24),
            vni: (b[1] & 2 != 0).then(|| get32(b, 20)),
        }
    }
}

/// VLAN membership entry (one per port and VID), 8 bytes.
/// `0 flags | 1 bit 0 pvid, bit 1 untagged | 2 vid | 4 ifindex`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanEntry {
    pub ifindex: u32,
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

impl VlanEntry {
    /// The entry's key: VLAN, ifindex.
    pub const KEY: KeyRanges = &[(2, 8)];
    pub fn encode(&self, b: &mut [u8]) {
        b.fill(0);
        b[1] = self.pvid as u8 | (self.untagged as u8) << 1;
        put16(b, 2, self.vid);
        put32(b, 4, self.ifindex);
    }
    pub fn decode(b: &[u8]) -> Self {
        Self { ifindex: get32(b, 4), vid: get16(b, 2), pvid: b[1] & 1 != 0, untagged: b[1] & 2 != 0 }
    }
}

/// The packet fields a flow entry matches, as the 56-byte TCAM key:
/// `0 eth type | 2 ip proto | 3 ip family | 4 vlan id | 6 src mac |
/// 12 dst mac | 18 src port | 20 dst port | 24 src ip[16] | 40 dst ip[16]`.
/// A flow entry holds a key and a mask of this layout; a packet matches if
/// `packet & mask == key & mask` over all 56 bytes.
pub const FLOW_KEY: usize = 56;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowKey {
    pub eth_type: u16,
    pub ip_proto: u8,
    pub ip_family: u8,
    pub vlan_id: u16,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_port: u16,
    pub dst_port: u16,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
}

impl FlowKey {
    pub fn to_bytes(&self) -> [u8; FLOW_KEY] {
        let mut b = [0u8; FLOW_KEY];
        put16(&mut b, 0, self.eth_type);
        b[2] = self.ip_proto;
        b[3] = self.ip_family;
        put16(&mut b, 4, self.vlan_id);
        b[6..12].copy_from_slice(&self.src_mac);
        b[12..18].copy_from_slice(&self.dst_mac);
        put16(&mut b, 18, self.src_port);
        put16(&mut b, 20, self.dst_port);
        b[24..40].copy_from_slice(&self.src_ip);
        b[40..56].copy_from_slice(&self.dst_ip);
        b
    }
    pub fn from_bytes(b: &[u8]) -> Self {
        let mut src_mac = [0u8; 6];
        let mut dst_mac = [0u8; 6];
        src_mac.copy_from_slice(&b[6..12]);
        dst_mac.copy_from_slice(&b[12..18]);
        Self {
            eth_type: get16(b, 0),
            ip_proto: b[2],
            ip_family: b[3],
            vlan_id: get16(b, 4),
            src_mac,
            dst_mac,
            src_port: get16(b, 18),
            dst_port: get16(b, 20),
            src_ip: get16b(b, 24),
            dst_ip: get16b(b, 40),
        }
    }
}

/// Flow action codes: `kind u8 | 1 rsv | 2 vid u16 | 4 arg u32`.
pub mod flow_action {
    pub const DROP: u8 = 1;
    pub const PASS: u8 = 2;
    /// arg: egress ifindex.
    pub const REDIRECT: u8 = 3;
    /// arg: egress ifindex.
    pub const MIRROR: u8 = 4;
    /// vid; arg: TPID.
    pub const VLAN_PUSH: u8 = 5;
    pub const VLAN_POP: u8 = 6;
    /// arg: chain.
    pub const GOTO: u8 = 7;
}

pub const FLOW_MAX_ACTIONS: usize = 8;

/// One encoded flow action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowActionEntry {
    pub kind: u8,
    pub vid: u16,
    pub arg: u32,
}

/// Flow (ACL/TCAM) entry, 208 bytes.
/// `0 flags | 1 action count | 2 prio | 4 chain | 8 ifindex | 16 cookie |
/// 24 key[56] | 80 mask[56] | 136 actions[8 x 8]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub cookie: u64,
    pub ifindex: u32,
    pub chain: u32,
    pub prio: u16,
    pub key: FlowKey,
    pub mask: FlowKey,
    pub actions: Vec<FlowActionEntry>,
}

impl FlowEntry {
    /// The entry's key: the cookie.
    pub const KEY: KeyRanges = &[(16, 24)];
    pub fn encode(&self, b: &mut [u8]) {
        Self::encode_parts(
            (self.cookie, self.ifindex, self.chain, self.prio),
            &self.key,
            &self.mask,
            &self.actions,
            b,
        )
    }

    /// Encodes from parts (no allocation): `(cookie, ifindex, chain, prio)`.
    pub fn encode_parts(
        id: (u64, u32, u32, u16),
        key: &FlowKey,
        mask: &FlowKey,
        actions: &[FlowActionEntry],
        b: &mut [u8],
    ) {
        b.fill(0);
        let n = actions.len().min(FLOW_MAX_ACTIONS);
        b[1] = n as u8;
        put16(b, 2, id.3);
        put32(b, 4, id.2);
        put32(b, 8, id.1);
        put64(b, 16, id.0);
        // Store the key pre-masked so that equal rules encode equally.
        let (k, m) = (key.to_bytes(), mask.to_bytes());
        for i in 0..FLOW_KEY {
            b[24 + i] = k[i] & m[i];
            b[80 + i] = m[i];
        }
        for (i, a) in actions[..n].iter().enumerate() {
            let off = 136 + i * 8;
            b[off] = a.kind;
            put16(b, off + 2, a.vid);
            put32(b, off + 4, a.arg);
        }
    }

    pub fn decode(b: &[u8]) -> Self {
        let n = (b[1] as usize).min(FLOW_MAX_ACTIONS);
        Self {
            cookie: get64(b, 16),
            ifindex: get32(b, 8),
            chain: get32(b, 4),
            prio: get16(b, 2),
            key: FlowKey::from_bytes(&b[24..80]),
            mask: FlowKey::from_bytes(&b[80..136]),
            actions: (0..n)
                .map(|i| {
                    let off = 136 + i * 8;
                    FlowActionEntry { kind: b[off], vid: get16(b, off + 2), arg: get32(b, off + 4) }
                })
                .collect(),
        }
    }

    pub fn cookie_of(b: &[u8]) -> u64 {
        get64(b, 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key bytes of an encoded entry, by `ranges`.
    fn key_of(size: usize, ranges: KeyRanges, encode: impl Fn(&mut [u8])) -> Vec<u8> {
        let mut b = vec![0u8; size];
        encode(&mut b);
        ranges.iter().flat_map(|&(a, z)| b[a..z.min(size)].to_vec()).collect()
    }

    /// A field change: its name, whether the field is in the key, the change.
    type Case<E> = (&'static str, bool, fn(&mut E));

    /// Each entry's `KEY` against its `encode`: changing a field the key
    /// is made of changes the key bytes, changing any other field does not.
    /// (A field moved in `encode` without its `KEY` fails here.)
    fn check<E: Clone>(size: usize, ranges: KeyRanges, base: E, enc: fn(&E, &mut [u8]), cases: &[Case<E>]) {
        let k0 = key_of(size, ranges, |b| enc(&base, b));
        for (name, in_key, change) in cases {
            let mut e = base.clone();
            change(&mut e);
            let k = key_of(size, ranges, |b| enc(&e, b));
            assert_eq!(k != k0, *in_key, "{name}: in the key is {in_key}, the key bytes say otherwise");
        }
    }

    #[test]
    fn keys_follow_the_encoding() {
        let v4 = Ip::V4([10, 0, 0, 0]);
        let route = RouteEntry {
            table: 254,
            dst: v4,
            plen: 8,
            metric: 1,
            in_ifindex: 0,
            rtype: 1,
            proto: 4,
            scope: 0,
            action: 1,
            action_index: 7,
        };
        check(
            40,
            RouteEntry::KEY,
            route,
            RouteEntry::encode,
            &[
                ("table", true, |e| e.table = 100),
                ("dst", true, |e| e.dst = Ip::V4([10, 1, 0, 0])),
                ("in_ifindex", true, |e| e.in_ifindex = 3),
                ("family", true, |e| e.dst = Ip::V6([0; 16])),
                ("plen", true, |e| e.plen = 16),
                ("metric", true, |e| e.metric = 2),
                ("type", false, |e| e.rtype = 2),
                ("proto", false, |e| e.proto = 9),
                ("scope", false, |e| e.scope = 253),
                ("action", false, |e| e.action = 2),
                ("action index", false, |e| e.action_index = 8),
            ],
        );
        let neigh = NeighEntry { ifindex: 3, ip: v4, mac: Some(Mac([2; 6])), state: 2, router: false };
        check(
            32,
            NeighEntry::KEY,
            neigh,
            NeighEntry::encode,
            &[
                ("ifindex", true, |e| e.ifindex = 4),
                ("ip", true, |e| e.ip = Ip::V4([10, 0, 0, 1])),
                ("family", true, |e| e.ip = Ip::V6([0; 16])),
                ("mac", false, |e| e.mac = Some(Mac([3; 6]))),
                ("state", false, |e| e.state = 4),
                ("router", false, |e| e.router = true),
            ],
        );
        let fdb = FdbEntry {
            ifindex: 3,
            mac: Mac([2; 6]),
            vid: 10,
            master: 9,
            is_static: false,
            remote: None,
            vni: None,
        };
        check(
            40,
            FdbEntry::KEY,
            fdb,
            FdbEntry::encode,
            &[
                ("ifindex", true, |e| e.ifindex = 4),
                ("mac", true, |e| e.mac = Mac([3; 6])),
                ("vid", true, |e| e.vid = 11),
                ("master", false, |e| e.master = 8),
                ("static", false, |e| e.is_static = true),
                ("remote", false, |e| e.remote = Some(Ip::V4([192, 0, 2, 1]))),
                ("vni", false, |e| e.vni = Some(5)),
            ],
        );
        let addr = AddrEntry { ifindex: 3, addr: v4, plen: 24, scope: 0 };
        check(
            32,
            AddrEntry::KEY,
            addr,
            AddrEntry::encode,
            &[
                ("ifindex", true, |e| e.ifindex = 4),
                ("addr", true, |e| e.addr = Ip::V4([10, 0, 0, 2])),
                ("plen", true, |e| e.plen = 25),
                ("scope", false, |e| e.scope = 253),
            ],
        );
        let vlan = VlanEntry { ifindex: 3, vid: 10, pvid: false, untagged: false };
        check(
            8,
            VlanEntry::KEY,
            vlan,
            VlanEntry::encode,
            &[
                ("ifindex", true, |e| e.ifindex = 4),
                ("vid", true, |e| e.vid = 11),
                ("pvid", false, |e| e.pvid = true),
                ("untagged", false, |e| e.untagged = true),
            ],
        );
        let sw = SwitchEntry { kind: 1, family: 4, ifindex: 0, value: 1, value2: 0 };
        check(
            16,
            SwitchEntry::KEY,
            sw,
            SwitchEntry::encode,
            &[
                ("kind", true, |e| e.kind = 2),
                ("family", true, |e| e.family = 6),
                ("ifindex", true, |e| e.ifindex = 5),
                ("value", false, |e| e.value = 2),
                ("value2", false, |e| e.value2 = 3),
            ],
        );
        let port = PortEntry { ifindex: 3, mtu: 1500, ..Default::default() };
        check(
            64,
            PortEntry::KEY,
            port,
            PortEntry::encode,
            &[
                ("ifindex", true, |e| e.ifindex = 4),
                ("mtu", false, |e| e.mtu = 9000),
                ("master", false, |e| e.master = 7),
                ("up", false, |e| e.admin_up = true),
                ("mac", false, |e| e.mac = Some(Mac([2; 6]))),
            ],
        );
        let nh = NexthopEntry {
            id: 5,
            ifindex: 3,
            gateway: Some(v4),
            onlink: false,
            blackhole: false,
            fdb: false,
        };
        check(
            32,
            NexthopEntry::KEY,
            nh,
            NexthopEntry::encode,
            &[
                ("id", true, |e| e.id = 6),
                ("ifindex", false, |e| e.ifindex = 4),
                ("gateway", false, |e| e.gateway = Some(Ip::V4([10, 0, 0, 9]))),
                ("blackhole", false, |e| e.blackhole = true),
            ],
        );
        let group = GroupEntry { id: 5, resilient: false, members: vec![(1, 1), (2, 3)] };
        check(
            GROUP_HDR + 4 * GROUP_MEMBER,
            GroupEntry::KEY,
            group,
            GroupEntry::encode,
            &[
                ("id", true, |e| e.id = 6),
                ("members", false, |e| e.members = vec![(1, 2)]),
                ("resilient", false, |e| e.resilient = true),
            ],
        );
        let flow = FlowEntry { cookie: 9, ifindex: 3, chain: 0, prio: 1, ..Default::default() };
        check(
            208,
            FlowEntry::KEY,
            flow,
            FlowEntry::encode,
            &[
                ("cookie", true, |e| e.cookie = 10),
                ("ifindex", false, |e| e.ifindex = 4),
                ("prio", false, |e| e.prio = 2),
                ("chain", false, |e| e.chain = 1),
            ],
        );
    }

    #[test]
    fn layout_is_aligned_and_disjoint() {
        let l = Layout {
            board: "t".into(),
            capacity: [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37],
            ecmp_members: 16,
        };
        let (descs, total) = l.tables();
        let mut spans: Vec<(usize, usize)> = vec![(0, HEADER_SIZE)];
        for d in &descs {
            assert_eq!(d.entries_off % 64, 0);
            spans.push((d.entries_off, d.entries_off + d.entry_size * d.capacity as usize));
            if d.counter_size > 0 {
                assert_eq!(d.counters_off % 64, 0);
                spans.push((d.counters_off, d.counters_off + d.counter_size * d.capacity as usize));
            }
        }
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "{w:?} overlap");
        }
        assert!(spans.last().is_some_and(|s| s.1 <= total));
    }

    #[test]
    fn codecs_round_trip() {
        let mut b = [0u8; 208];
        let p = PortEntry {
            ifindex: 7,
            kind: port_kind::VLAN,
            admin_up: true,
            oper_up: false,
            mtu: 9000,
            master: 3,
            parent: 2,
            vlan_id: Some(100),
            vni: None,
            mac: Some(Mac([2, 0, 0, 0, 0, 1])),
            name: *b"eth0.100\0\0\0\0\0\0\0\0",
        };
        p.encode(&mut b[..64]);
        assert_eq!(PortEntry::decode(&b[..64]), p);
        assert_eq!(p.name_str(), "eth0.100");
        let r = RouteEntry {
            table: 254,
            dst: Ip::V6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            plen: 32,
            metric: 1024,
            in_ifindex: 4,
            rtype: 0,
            proto: 3,
            scope: 0,
            action: route_action::GROUP,
            action_index: 9,
        };
        r.encode(&mut b[..40]);
        assert_eq!(RouteEntry::decode(&b[..40]), Some(r));
        let g = GroupEntry { id: 5, resilient: false, members: vec![(1, 1), (4, 200)] };
        g.encode(&mut b[..GROUP_HDR + 4 * GROUP_MEMBER]);
        assert_eq!(GroupEntry::decode(&b[..GROUP_HDR + 4 * GROUP_MEMBER]), g);
        let f = FlowEntry {
            cookie: u64::MAX - 1,
            ifindex: 4,
            chain: 0,
            prio: 1,
            key: FlowKey { eth_type: 0x800, ip_proto: 6, ip_family: 4, dst_port: 80, ..Default::default() },
            mask: FlowKey {
                eth_type: 0xffff,
                ip_proto: 0xff,
                ip_family: 0xff,
                dst_port: 0xffff,
                ..Default::default()
            },
            actions: vec![FlowActionEntry { kind: flow_action::DROP, vid: 0, arg: 0 }],
        };
        f.encode(&mut b);
        assert_eq!(FlowEntry::decode(&b), f);
    }
}
