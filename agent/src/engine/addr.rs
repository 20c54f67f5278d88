//! Local addresses: one entry per address, keyed by ifindex and prefix.

use super::Entry;
use dpu_hw::layout::*;
use dpu_wire::*;

pub(super) struct Addr;

impl Entry for Addr {
    type Object = Address;
    type Key = AddressKey;
    const TABLE: TableId = TableId::Addr;

    fn encode(a: &Address, b: &mut [u8]) {
        AddrEntry { ifindex: a.ifindex, addr: a.prefix.addr, plen: a.prefix.len, scope: a.scope }.encode(b)
    }

    fn probe(a: &AddressKey, b: &mut [u8]) {
        AddrEntry { ifindex: a.ifindex, addr: a.prefix.addr, plen: a.prefix.len, scope: 0 }.encode(b)
    }
}
