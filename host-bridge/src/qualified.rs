//! Routes the DPU cannot match exactly: qualified by more than their
//! destination.
//!
//! The kernel keys an IPv4 route by (table, dst, TOS, metric) and an IPv6
//! route by (table, dst, source prefix, metric); the DPU's route tables
//! match on the destination alone. A qualified route (TOS != 0, or an IPv6
//! source prefix) is therefore not offloaded, and it cannot simply be left
//! out either: the kernel sends that TOS's (or that source's) traffic
//! through it, and the DPU would send it through the plain route of the
//! same prefix, or a shorter one. So while one qualified route exists for
//! a (table, dst), the DPU holds exactly one entry for that prefix, a trap
//! (a local route at metric 0: deliver to the host), and the kernel
//! forwards that prefix's packets itself, exactly. The plain routes of a
//! trapped prefix are kept here, off the DPU, and go back once the last
//! qualified route of the prefix goes.
//!
//! ```text
//! netlink ─▶ convert (Change::Qualified) ─▶ Quals ─▶ trap entry in the mirror
//!                 plain routes of a trapped prefix ─▶ Quals::hidden
//! ```

use crate::mirror::HashMap;
use crate::netlink::convert::QualKey;
use dpu_wire::{Family, Ip, Key, Object, Prefix, Route, RouteKey, RouteNexthops, RouteType};

/// The paths of one qualified route: (ifindex, gateway).
pub type QualPaths = Vec<(u32, Option<Ip>)>;

/// Qualified routes and the prefixes they trap.
#[derive(Default)]
pub struct Quals {
    /// Qualified routes per trapped prefix (table, dst), with the paths
    /// the kernel announced for each (an IPv6 route's siblings come and go
    /// one by one).
    by_prefix: HashMap<(u32, Prefix), HashMap<QualKey, QualPaths>>,
    /// Plain routes of trapped prefixes, kept off the DPU.
    pub hidden: HashMap<RouteKey, Route>,
}

/// The DPU's entry for a trapped prefix: deliver to the host.
pub fn trap(table: u32, dst: Prefix) -> Route {
    const RT_SCOPE_HOST: u8 = 254;
    Route {
        key: RouteKey { table, dst, metric: 0, ifindex: 0 },
        kind: RouteType::Local,
        protocol: 0,
        scope: RT_SCOPE_HOST,
        nexthops: RouteNexthops::None,
    }
}

impl Quals {
    pub fn trapped(&self, table: u32, dst: Prefix) -> bool {
        self.by_prefix.contains_key(&(table, dst))
    }

    /// Number of qualified routes.
    pub fn len(&self) -> usize {
        self.by_prefix.values().map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Number of trapped prefixes.
    pub fn prefixes(&self) -> usize {
        self.by_prefix.len()
    }

    /// Every qualified route, for status.
    pub fn routes(&self) -> impl Iterator<Item = (&QualKey, &QualPaths)> + '_ {
        self.by_prefix.values().flat_map(|m| m.iter())
    }

    /// A qualified route added or deleted; true when its prefix changed
    /// between trapped and not.
    pub fn change(&mut self, key: QualKey, paths: QualPaths, new: bool) -> bool {
        let p = (key.key.table, key.key.dst);
        let was = self.by_prefix.contains_key(&p);
        if new {
            let routes = self.by_prefix.entry(p).or_default();
            let have = routes.entry(key).or_default();
            if key.key.dst.family() == Family::V6 {
                // IPv6 siblings are announced one by one.
                for x in paths {
                    if !have.contains(&x) {
                        have.push(x);
                    }
                }
            } else {
                *have = paths;
            }
        } else if let Some(routes) = self.by_prefix.get_mut(&p) {
            let gone = match routes.get_mut(&key) {
                // An IPv6 delete names the siblings it removes.
                Some(have) if key.key.dst.family() == Family::V6 && !paths.is_empty() => {
                    have.retain(|x| !paths.contains(x));
                    have.is_empty()
                }
                Some(_) => true,
                None => false,
            };
            if gone {
                routes.remove(&key);
            }
            if routes.is_empty() {
                self.by_prefix.remove(&p);
            }
        }
        was != self.by_prefix.contains_key(&p)
    }

    /// Forgets every qualified and hidden route (before a route re-dump).
    pub fn clear(&mut self) {
        self.by_prefix.clear();
        self.hidden.clear();
    }

    /// Folds a route dump: the plain routes of trapped prefixes move to
    /// `hidden`, and each trapped prefix gets its trap entry.
    pub fn fold(&mut self, fresh: &mut Vec<Object>) {
        let hidden = &mut self.hidden;
        let by_prefix = &self.by_prefix;
        fresh.retain(|o| match o {
            Object::Route(r) if by_prefix.contains_key(&(r.key.table, r.key.dst)) => {
                hidden.insert(r.key, r.clone());
                false
            }
            _ => true,
        });
        for &(table, dst) in by_prefix.keys() {
            fresh.push(Object::Route(trap(table, dst)));
        }
    }

    /// The hidden routes of one prefix, taken out (it is no longer trapped).
    pub fn unhide(&mut self, table: u32, dst: Prefix) -> Vec<Route> {
        let keys: Vec<RouteKey> =
            self.hidden.keys().filter(|k| k.table == table && k.dst == dst).copied().collect();
        keys.iter().filter_map(|k| self.hidden.remove(k)).collect()
    }
}

/// The mirrored route keys of one prefix (no decoding).
pub fn route_keys(keys: impl Iterator<Item = Key>, table: u32, dst: Prefix) -> Vec<RouteKey> {
    keys.filter_map(|k| match k {
        Key::Route(r) if r.table == table && r.dst == dst => Some(r),
        _ => None,
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(tos: u8, metric: u32) -> QualKey {
        let dst = Prefix::new(Ip::V4([10, 10, 0, 0]), 16);
        QualKey {
            key: RouteKey { table: 254, dst, metric, ifindex: 0 },
            tos,
            src: Prefix::new(Ip::V4([0; 4]), 0),
        }
    }

    #[test]
    fn a_prefix_is_trapped_while_one_qualified_route_exists() {
        let mut s = Quals::default();
        let gw = Some(Ip::V4([192, 0, 2, 5]));
        assert!(s.change(q(0x10, 0), vec![(2, gw)], true), "first: trapped");
        assert!(!s.change(q(0x08, 5), vec![(2, gw)], true), "second: still trapped");
        assert!(!s.change(q(0x10, 0), vec![(3, gw)], true), "replace");
        assert_eq!(s.len(), 2);
        assert!(!s.change(q(0x10, 0), vec![], false));
        assert!(s.change(q(0x08, 5), vec![], false), "last gone: untrapped");
        assert!(s.is_empty());
        assert!(!s.change(q(0x08, 5), vec![], false), "unknown delete: nothing");
    }

    #[test]
    fn ipv6_siblings_leave_one_by_one() {
        let mut s = Quals::default();
        let dst = Prefix::new(Ip::V6([0x20, 1, 0xd, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 64);
        let src = Prefix::new(Ip::V6([0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 64);
        let k = QualKey { key: RouteKey { table: 254, dst, metric: 1024, ifindex: 0 }, tos: 0, src };
        let a = (2, Some(Ip::V6([0xfe; 16])));
        let b = (3, Some(Ip::V6([0xfd; 16])));
        assert!(s.change(k, vec![a], true));
        assert!(!s.change(k, vec![b], true));
        assert!(!s.change(k, vec![a], false), "one sibling left");
        assert!(s.change(k, vec![b], false), "none left");
    }

    #[test]
    fn a_dump_folds_plain_routes_under_the_trap() {
        let mut s = Quals::default();
        s.change(q(0x10, 0), vec![], true);
        let dst = Prefix::new(Ip::V4([10, 10, 0, 0]), 16);
        let other = Prefix::new(Ip::V4([10, 11, 0, 0]), 16);
        let plain = |dst, metric| {
            Object::Route(Route {
                key: RouteKey { table: 254, dst, metric, ifindex: 0 },
                kind: RouteType::Blackhole,
                protocol: 3,
                scope: 0,
                nexthops: RouteNexthops::None,
            })
        };
        let mut fresh = vec![plain(dst, 0), plain(dst, 7), plain(other, 0)];
        s.fold(&mut fresh);
        assert_eq!(fresh, vec![plain(other, 0), Object::Route(trap(254, dst))]);
        assert_eq!(s.hidden.len(), 2);
        assert_eq!(s.unhide(254, dst).len(), 2);
        assert!(s.hidden.is_empty());
    }
}
