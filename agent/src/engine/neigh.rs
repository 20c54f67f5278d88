//! Neighbours: one entry per (ifindex, IP); routes find them by their
//! nexthop's gateway at lookup time, not by slot.

use super::Entry;
use dpu_hw::layout::*;
use dpu_wire::*;

pub(super) struct Neigh;

impl Entry for Neigh {
    type Object = Neighbour;
    type Key = NeighbourKey;
    const TABLE: TableId = TableId::Neigh;

    fn encode(nb: &Neighbour, b: &mut [u8]) {
        NeighEntry { ifindex: nb.ifindex, ip: nb.ip, mac: nb.mac, state: nb.state, router: nb.router }
            .encode(b)
    }

    fn probe(nk: &NeighbourKey, b: &mut [u8]) {
        NeighEntry { ifindex: nk.ifindex, ip: nk.ip, mac: None, state: 0, router: false }.encode(b)
    }
}
