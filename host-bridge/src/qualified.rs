//! Routes the DPU cannot match exactly: qualified by more than their
//! destination, or sharing their key with another route.
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
//! Routes also share a key: an address in one subnet on two links gives
//! two prefix routes of one (table, dst, metric), one per device, and
//! `ip route append` adds more. The kernel keeps them all and chooses per
//! lookup (IPv4: the first whose nexthop is alive; IPv6: by the nexthop's
//! neighbour state, round robin among equals), which no table entry of
//! the DPU can follow. A shared key traps its prefix the same way, for as
//! long as two live routes share it.
//!
//! ```text
//! netlink ─▶ convert (Change::Qualified) ─▶ Quals ─▶ trap entry in the mirror
//!            a second route of a key     ─▶ Quals::hidden (shared) ─▶ trap
//!                 plain routes of a trapped prefix ─▶ Quals::hidden
//! ```

use crate::mirror::HashMap;
use crate::netlink::convert::QualKey;
use dpu_wire::{Family, Ip, Key, Object, Path, Prefix, Route, RouteKey, RouteNexthops, RouteType, MAX_PATHS};

/// The paths of one qualified route: (ifindex, gateway).
pub type QualPaths = Vec<(u32, Option<Ip>)>;

/// What status and the log say of a shared key.
pub const SHARED_WHY: &str = "routes through other devices or gateways share its table, prefix and metric, and the kernel chooses among them per lookup: its prefix is trapped to the host";

/// The not-offloaded reason of a key `n` routes share.
pub fn shared_why(n: usize) -> String {
    format!("{n} routes: {SHARED_WHY}")
}

/// Qualified routes and the prefixes they trap.
#[derive(Default)]
pub struct Quals {
    /// Qualified routes per trapped prefix (table, dst), with the paths
    /// the kernel announced for each (an IPv6 route's siblings come and go
    /// one by one).
    by_prefix: HashMap<(u32, Prefix), HashMap<QualKey, QualPaths>>,
    /// Plain routes of trapped prefixes, kept off the DPU: per prefix and
    /// key, the kernel's routes of that key in its order, more than one
    /// where routes share the key.
    hidden: HashMap<(u32, Prefix), HashMap<RouteKey, Vec<Route>>>,
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

/// Whether a route added beside `a` (no `NLM_F_REPLACE`) is `a` again
/// rather than a second route of the key. IPv4 announces an existing
/// route again only unchanged (a route that differs in anything, even
/// its protocol, is a second alias); IPv6 grows a route sibling by
/// sibling, so a path in common is the same route.
pub fn same_route(a: &Route, b: &Route) -> bool {
    if a.key.dst.family() == Family::V4 {
        return a == b;
    }
    names(a, b)
}

/// Whether a delete naming `b` is about `a`: a path in common, the same
/// nexthop object, or the same type without paths.
pub fn names(a: &Route, b: &Route) -> bool {
    match (&a.nexthops, &b.nexthops) {
        (RouteNexthops::Paths(x), RouteNexthops::Paths(y)) => {
            x.iter().any(|p| y.iter().any(|q| same_path(p, q)))
        }
        (RouteNexthops::Object(x), RouteNexthops::Object(y)) => x == y,
        (RouteNexthops::None, RouteNexthops::None) => a.kind == b.kind,
        _ => false,
    }
}

/// One path of the kernel's: its device and gateway (weights and flags
/// change with the route).
fn same_path(a: &Path, b: &Path) -> bool {
    a.ifindex == b.ifindex && a.gateway == b.gateway
}

/// What an IPv6 sibling delete leaves of a route: `None` when no path is
/// left (or the route is not a set of siblings).
pub fn paths_left(have: &Route, gone: &Route) -> Option<Route> {
    let (RouteNexthops::Paths(paths), RouteNexthops::Paths(named)) = (&have.nexthops, &gone.nexthops) else {
        // Mirrored through a nexthop object, or without nexthops: not a
        // set of siblings.
        return None;
    };
    let left: heapless::Vec<Path, MAX_PATHS> =
        paths.iter().filter(|p| !named.iter().any(|n| same_path(p, n))).copied().collect();
    if left.is_empty() {
        return None;
    }
    let mut r = have.clone();
    r.nexthops = RouteNexthops::Paths(left);
    Some(r)
}

impl Quals {
    pub fn trapped(&self, table: u32, dst: Prefix) -> bool {
        if self.by_prefix.is_empty() && self.hidden.is_empty() {
            return false; // the common case, on the per-event path
        }
        let p = (table, dst);
        self.by_prefix.contains_key(&p)
            || self.hidden.get(&p).is_some_and(|m| m.values().any(|v| v.len() > 1))
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
        let shared = self
            .hidden
            .iter()
            .filter(|(p, m)| !self.by_prefix.contains_key(p) && m.values().any(|v| v.len() > 1))
            .count();
        self.by_prefix.len() + shared
    }

    /// Number of plain routes kept off the DPU.
    pub fn hidden_len(&self) -> usize {
        self.hidden.values().flat_map(|m| m.values()).map(|v| v.len()).sum()
    }

    /// Every key that routes share, with its routes, for status.
    pub fn shared(&self) -> impl Iterator<Item = (&RouteKey, &Vec<Route>)> + '_ {
        self.hidden.values().flat_map(|m| m.iter()).filter(|(_, v)| v.len() > 1)
    }

    /// The hidden routes of `k`.
    pub fn hidden_at(&self, k: &RouteKey) -> &[Route] {
        self.hidden.get(&(k.table, k.dst)).and_then(|m| m.get(k)).map_or(&[], |v| v.as_slice())
    }

    /// Every qualified route, for status.
    pub fn routes(&self) -> impl Iterator<Item = (&QualKey, &QualPaths)> + '_ {
        self.by_prefix.values().flat_map(|m| m.iter())
    }

    /// A qualified route added or deleted; true when its prefix changed
    /// between trapped and not.
    pub fn change(&mut self, key: QualKey, paths: QualPaths, new: bool) -> bool {
        let p = (key.key.table, key.key.dst);
        let was = self.trapped(p.0, p.1);
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
        was != self.trapped(p.0, p.1)
    }

    /// The hidden routes of `k`, an empty list made where it has none.
    fn at_mut(&mut self, k: RouteKey) -> &mut Vec<Route> {
        self.hidden.entry((k.table, k.dst)).or_default().entry(k).or_default()
    }

    /// Keeps a route off the DPU, after those of its key.
    pub fn hide(&mut self, r: Route) {
        self.at_mut(r.key).push(r);
    }

    /// A hidden route replaced (`NLM_F_REPLACE`): the kernel replaces the
    /// first route of the key.
    pub fn replace_hidden(&mut self, r: Route) {
        let v = self.at_mut(r.key);
        match v.first_mut() {
            Some(first) => *first = r,
            None => v.push(r),
        }
    }

    /// A route added beside the key's others: a later version of one of
    /// them, or one more. True when the key is shared now.
    pub fn add_hidden(&mut self, r: Route) -> bool {
        let v = self.at_mut(r.key);
        match v.iter_mut().find(|h| same_route(h, &r)) {
            Some(h) => *h = r,
            None => v.push(r),
        }
        v.len() > 1
    }

    /// Whether a hidden route passes `f`.
    pub fn any_hidden(&self, f: impl Fn(&Route) -> bool) -> bool {
        self.hidden.values().flat_map(|m| m.values()).flatten().any(f)
    }

    /// Forgets the hidden routes of `k`.
    pub fn remove_hidden(&mut self, k: &RouteKey) {
        let p = (k.table, k.dst);
        if let Some(m) = self.hidden.get_mut(&p) {
            m.remove(k);
            if m.is_empty() {
                self.hidden.remove(&p);
            }
        }
    }

    /// A hidden route's delete, which names its paths (an IPv6 delete may
    /// name some siblings only): the first route with a path named loses
    /// them, and goes when none is left. An IPv4 delete of a key held once
    /// takes that route whatever it names.
    pub fn delete_hidden(&mut self, gone: &Route) {
        let k = gone.key;
        let Some(v) = self.hidden.get_mut(&(k.table, k.dst)).and_then(|m| m.get_mut(&k)) else { return };
        match v.iter().position(|h| names(h, gone)) {
            Some(i) => match paths_left(&v[i], gone) {
                Some(left) => v[i] = left,
                None => {
                    v.remove(i);
                }
            },
            None if v.len() == 1 && k.dst.family() == Family::V4 => v.clear(),
            None => {}
        }
        if v.is_empty() {
            self.remove_hidden(&k);
        }
    }

    /// Forgets every qualified and hidden route (before a route re-dump).
    pub fn clear(&mut self) {
        self.by_prefix.clear();
        self.hidden.clear();
    }

    /// Folds a route dump: routes that share a key, and the plain routes
    /// of trapped prefixes, move to `hidden`, and each trapped prefix gets
    /// its trap entry. Returns the shared keys.
    ///
    /// The kernel dumps the routes of one key one after another (IPv4: a
    /// trie leaf's aliases in order; IPv6: a node's routes by metric), so
    /// a shared key shows as the same key twice in a row: no set of every
    /// dumped key is built for it.
    pub fn fold(&mut self, fresh: &mut Vec<Object>) -> Vec<RouteKey> {
        let mut shared = Vec::new();
        let mut prev: Option<RouteKey> = None;
        for o in fresh.iter() {
            let Object::Route(r) = o else { continue };
            if prev == Some(r.key) && shared.last() != Some(&r.key) {
                shared.push(r.key);
            }
            prev = Some(r.key);
        }
        let set: std::collections::HashSet<(u32, Prefix)> =
            self.by_prefix.keys().copied().chain(shared.iter().map(|k| (k.table, k.dst))).collect();
        let mut taken = Vec::new();
        fresh.retain(|o| match o {
            Object::Route(r) if set.contains(&(r.key.table, r.key.dst)) => {
                taken.push(r.clone());
                false
            }
            _ => true,
        });
        for r in taken {
            self.hide(r);
        }
        for (table, dst) in set {
            fresh.push(Object::Route(trap(table, dst)));
        }
        shared
    }

    /// The hidden routes of one prefix, taken out (it is no longer
    /// trapped: one route per key).
    pub fn unhide(&mut self, table: u32, dst: Prefix) -> Vec<Route> {
        self.hidden.remove(&(table, dst)).into_iter().flat_map(|m| m.into_values()).flatten().collect()
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
        assert_eq!(s.hidden_len(), 2);
        assert_eq!(s.unhide(254, dst).len(), 2);
        assert!(s.hidden.is_empty());
    }

    fn dev_route(dst: Prefix, ifindex: u32, gateway: Option<Ip>) -> Route {
        let mut p = heapless::Vec::new();
        let _ = p.push(Path { ifindex, gateway, weight: 1, onlink: false });
        Route {
            key: RouteKey { table: 254, dst, metric: 0, ifindex: 0 },
            kind: RouteType::Unicast,
            protocol: 2,
            scope: 253,
            nexthops: RouteNexthops::Paths(p),
        }
    }

    #[test]
    fn a_dump_traps_a_shared_key() {
        let mut s = Quals::default();
        let dst = Prefix::new(Ip::V4([10, 9, 0, 0]), 24);
        let other = Prefix::new(Ip::V4([10, 8, 0, 0]), 24);
        let (a, b) = (dev_route(dst, 2, None), dev_route(dst, 3, None));
        let mut at7 = dev_route(dst, 2, None);
        at7.key.metric = 7;
        let lone = dev_route(other, 2, None);
        let mut fresh: Vec<Object> =
            [&at7, &a, &b, &lone].into_iter().map(|r| Object::Route(r.clone())).collect();
        assert_eq!(s.fold(&mut fresh), vec![a.key]);
        assert_eq!(fresh, vec![Object::Route(lone), Object::Route(trap(254, dst))]);
        assert!(s.trapped(254, dst) && !s.trapped(254, other));
        assert_eq!((s.prefixes(), s.hidden_len(), s.shared().count()), (1, 3, 1));
        assert_eq!(s.hidden_at(&a.key), [a.clone(), b.clone()]);
    }

    #[test]
    fn a_shared_key_traps_until_one_route_is_left() {
        let mut s = Quals::default();
        let dst = Prefix::new(Ip::V6([0x20, 1, 0xd, 0xb8, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 64);
        let gw = |b| Some(Ip::V6([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b]));
        let (a, b) = (dev_route(dst, 2, None), dev_route(dst, 3, None));
        s.hide(a.clone());
        assert!(!s.trapped(254, dst), "one route of a key: no trap of its own");
        assert!(s.add_hidden(b.clone()), "a second device: shared");
        assert!(s.trapped(254, dst));
        // A later version of the route through device 3 is that route.
        let mut b2 = b.clone();
        b2.protocol = 4;
        assert!(s.add_hidden(b2.clone()));
        assert_eq!(s.hidden_at(&a.key), [a.clone(), b2.clone()]);
        // The delete names its device: that route goes, the other stays.
        s.delete_hidden(&a);
        assert!(!s.trapped(254, dst));
        assert_eq!(s.unhide(254, dst), vec![b2]);
        // Two IPv6 router routes with one key (RA routes are not
        // siblings): the delete of one gateway takes that one only.
        let (r1, r2) = (dev_route(dst, 2, gw(1)), dev_route(dst, 2, gw(2)));
        s.hide(r1.clone());
        assert!(s.add_hidden(r2.clone()));
        s.delete_hidden(&r2);
        assert_eq!(s.hidden_at(&r1.key), std::slice::from_ref(&r1));
        // A replace takes the first route's place.
        s.replace_hidden(r2.clone());
        assert_eq!(s.hidden_at(&r1.key), std::slice::from_ref(&r2));
        // An IPv6 delete naming a path the key does not hold is nothing.
        s.delete_hidden(&r1);
        assert_eq!(s.hidden_len(), 1);
    }
}
