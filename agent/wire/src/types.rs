//! Small value types used by the objects: IP addresses, prefixes, MACs.
//!
//! These are the project's own rather than `core::net` so that their
//! postcard encoding is fixed here, compact (an IPv4 address is a tag byte
//! plus four bytes) and independent of serde's feature flags.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use serde::{Deserialize, Serialize};

/// Address family of an object, as far as the DPU cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

/// An IPv4 or IPv6 address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ip {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// One integer write per address, not a tag, a length and a byte slice
/// (the derive's): the host hashes every route key several times on its
/// per-event path.
impl core::hash::Hash for Ip {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        match self {
            Ip::V4(a) => h.write_u32(u32::from_ne_bytes(*a)),
            Ip::V6(a) => h.write_u128(u128::from_ne_bytes(*a)),
        }
    }
}

impl Ip {
    pub fn family(&self) -> Family {
        match self {
            Ip::V4(_) => Family::V4,
            Ip::V6(_) => Family::V6,
        }
    }

    /// Maximum prefix length of this family.
    pub fn max_len(&self) -> u8 {
        match self {
            Ip::V4(_) => 32,
            Ip::V6(_) => 128,
        }
    }

    /// The address as 16 bytes: IPv4 in the first four, the rest zero.
    pub fn to_bytes16(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        match self {
            Ip::V4(a) => out[..4].copy_from_slice(a),
            Ip::V6(a) => out = *a,
        }
        out
    }

    /// Inverse of [`Ip::to_bytes16`].
    pub fn from_bytes16(family: Family, b: &[u8; 16]) -> Ip {
        match family {
            Family::V4 => Ip::V4([b[0], b[1], b[2], b[3]]),
            Family::V6 => Ip::V6(*b),
        }
    }

    /// The address with every bit past `len` cleared.
    pub fn masked(&self, len: u8) -> Ip {
        let mut b = self.to_bytes16();
        mask_bytes(&mut b, len);
        Ip::from_bytes16(self.family(), &b)
    }
}

/// Clears every bit of `b` past the first `len`.
pub fn mask_bytes(b: &mut [u8], len: u8) {
    for (i, byte) in b.iter_mut().enumerate() {
        let start = (i * 8) as u32;
        let len = len as u32;
        if len <= start {
            *byte = 0;
        } else if len < start + 8 {
            *byte &= 0xffu8 << (8 - (len - start));
        }
    }
}

impl From<IpAddr> for Ip {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Ip::V4(a.octets()),
            IpAddr::V6(a) => Ip::V6(a.octets()),
        }
    }
}

impl From<Ipv4Addr> for Ip {
    fn from(a: Ipv4Addr) -> Self {
        Ip::V4(a.octets())
    }
}

impl From<Ipv6Addr> for Ip {
    fn from(a: Ipv6Addr) -> Self {
        Ip::V6(a.octets())
    }
}

impl From<Ip> for IpAddr {
    fn from(a: Ip) -> Self {
        match a {
            Ip::V4(a) => IpAddr::V4(Ipv4Addr::from(a)),
            Ip::V6(a) => IpAddr::V6(Ipv6Addr::from(a)),
        }
    }
}

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        IpAddr::from(*self).fmt(f)
    }
}

impl fmt::Debug for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An address with a prefix length: a route destination or an interface
/// address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prefix {
    pub addr: Ip,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: Ip, len: u8) -> Self {
        Self { addr, len }
    }

    pub fn family(&self) -> Family {
        self.addr.family()
    }

    /// True if `len` fits the family.
    pub fn is_valid(&self) -> bool {
        self.len <= self.addr.max_len()
    }

    /// True if the host bits past `len` are all zero (a route destination).
    pub fn is_canonical(&self) -> bool {
        self.is_valid() && self.addr.masked(self.len) == self.addr
    }

    /// An IPv6 prefix inside `fe80::/10`.
    pub fn is_link_local(&self) -> bool {
        matches!(self.addr, Ip::V6(a) if a[0] == 0xfe && a[1] & 0xc0 == 0x80 && self.len >= 10)
    }

    /// True if `ip` falls inside this prefix.
    pub fn contains(&self, ip: &Ip) -> bool {
        ip.family() == self.family() && ip.masked(self.len) == self.addr.masked(self.len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const ZERO: Mac = Mac([0; 6]);
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An interface name, at most 15 bytes as in the kernel's `IFNAMSIZ`.
pub type IfName = heapless::String<15>;
