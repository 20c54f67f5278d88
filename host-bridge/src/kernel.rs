//! The kernel side of the mirror: subscribe, dump, listen, reconcile.
//!
//! Order of operations, the one that loses nothing: the event socket
//! subscribes to every group first, then each object type is dumped on a
//! second socket (a dump interrupted by a change, `NLM_F_DUMP_INTR`, is
//! repeated), then the events queued meanwhile are applied on top. A
//! receive-buffer overflow (`ENOBUFS`) means events were lost: every type
//! is dumped again and only the difference against the shadow goes to the
//! DPU. Deletes the kernel does not announce are worked out: routes through
//! a deleted nexthop object, and after a link goes down or away, a re-dump
//! of routes, nexthops, neighbours and FDB entries.
//!
//! With the notifier taps (`notifier::feed`) a link going down needs no
//! re-dump: the FIB and nexthop chains tell which routes and nexthop
//! objects went, and IPv4 routes whose every path died with the link (the
//! aliases the FIB notifier does not report, since it reports only the
//! route in use per prefix) are deleted by the kernel's own rule. Tap and
//! netlink events are applied by this one thread; a tap delete that may be
//! older than a netlink add of the same key (both arrived, in either order,
//! after the event) is settled by a re-dump of its type.

use crate::config::Config;
use crate::mirror::Mirror;
use crate::netlink::ring::EventRing;
use crate::netlink::socket::{
    self, group, messages, Datagrams, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP_INTR, NLM_F_REPLACE, SLOT,
};
use crate::netlink::{convert, filter_dump_request, kind_of, Change, Kind, NlSocket};
use crate::notifier::feed::{Feed, TapMsg, TapsStatus};
use crate::qualified;
use dpu_wire::{Key, LinkKind, Object, OperState, Route, RouteKey, RouteNexthops};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The shared mirror and how its writers wake the agent session.
pub struct Shared {
    pub mirror: Mutex<Mirror>,
    /// For waits on the mirror's state alone (`ready`).
    pub wake: Condvar,
    /// Rung with every [`Shared::notify`]: the agent session polls it
    /// together with the agent's socket, so that it wakes for either.
    pub bell: EventFd,
    /// The notifier taps' state, when they run.
    pub taps: Mutex<Option<TapsStatus>>,
    /// Rung when routes' or nexthops' offload flags are due
    /// (`Mirror::fib_dirty`, `nh_dirty`): the FIB firmware's thread polls
    /// it.
    pub fib_bell: EventFd,
    /// The FIB firmware's state, when it runs.
    pub fib: Mutex<Option<crate::fib_fw::FibFwStatus>>,
    /// In a burst, how long the netlink and DPU threads let work gather
    /// before they take it, in ns ([`BURST_PAUSE`] unless
    /// `--burst-pause`).
    pub burst_pause_ns: std::sync::atomic::AtomicU64,
}

impl Shared {
    pub fn new() -> io::Result<Arc<Self>> {
        let bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        let fib_bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(Arc::new(Shared {
            mirror: Mutex::new(Mirror::new()),
            wake: Condvar::new(),
            bell,
            taps: Mutex::new(None),
            fib_bell,
            fib: Mutex::new(None),
            burst_pause_ns: (BURST_PAUSE.as_nanos() as u64).into(),
        }))
    }

    /// See [`Shared::burst_pause_ns`].
    pub fn burst_pause(&self) -> Duration {
        Duration::from_nanos(self.burst_pause_ns.load(Relaxed))
    }

    pub fn taps(&self) -> std::sync::MutexGuard<'_, Option<TapsStatus>> {
        self.taps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fib(&self) -> std::sync::MutexGuard<'_, Option<crate::fib_fw::FibFwStatus>> {
        self.fib.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the FIB firmware's thread if route or nexthop flags are due.
    pub fn fib_due(&self, m: &Mirror) {
        if !m.fib_dirty.is_empty() || !m.nh_dirty.is_empty() {
            let _ = self.fib_bell.write(1);
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the waiters that the mirror changed.
    pub fn notify(&self) {
        self.wake.notify_all();
        // Fails only when the counter would overflow, and then it is
        // already non-zero: the bell is ringing either way.
        let _ = self.bell.write(1);
    }

    /// Silences the bell (before checking the mirror, so that no change
    /// made after the check goes unheard).
    pub fn quiet(&self) {
        let _ = self.bell.read();
    }
}

const BUF: usize = 1 << 20;

/// What a dump found.
#[derive(Default)]
pub struct Dumped {
    pub objects: Vec<Object>,
    /// Messages that did not parse.
    pub bad: u64,
    /// What the DPU cannot hold as dumped: `Change::NotOffloaded` and
    /// `Change::Qualified`.
    pub side: Vec<Change>,
}

/// Dumps one object type; retries while the kernel flags the dump as
/// interrupted.
pub fn dump(sock: &mut NlSocket, kind: Kind) -> io::Result<Dumped> {
    if kind == Kind::Setting {
        return Ok(Dumped { objects: settings(), ..Default::default() });
    }
    if kind == Kind::Filter {
        let links = dump(sock, Kind::Link)?;
        let mut filters = dump_filters(sock, &ifindexes(&links.objects))?;
        filters.bad += links.bad;
        return Ok(filters);
    }
    if kind == Kind::Route {
        read_linkdown_rule();
        // Set again by the dump if dead paths are still left out.
        crate::netlink::convert::DEAD_PATHS_LEFT_OUT.store(false, Relaxed);
    }
    dump_request(sock, kind, kind.dump_request())
}

/// `ignore_routes_with_linkdown` of this netns (`conf/all`), for
/// convert's rule on linkdown paths.
fn read_linkdown_rule() {
    let on = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/{f}/conf/all/ignore_routes_with_linkdown"))
            .is_ok_and(|v| v.trim() != "0")
    };
    let bits = on("ipv4") as u8 | (on("ipv6") as u8) << 1;
    crate::netlink::convert::IGNORE_LINKDOWN.store(bits, Relaxed);
}

/// The ECMP hash settings of this thread's netns, from /proc/sys (which
/// shows the reader's netns). A sysctl a kernel lacks (IPv6 off, or no
/// fib_multipath_hash_fields before 5.12) counts as 0.
pub fn settings() -> Vec<Object> {
    let read = |p: &str| -> u32 {
        std::fs::read_to_string(format!("/proc/sys/net/{p}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let mut out = Vec::new();
    for (family, policy, fields) in [
        (dpu_wire::Family::V4, "ipv4/fib_multipath_hash_policy", "ipv4/fib_multipath_hash_fields"),
        (dpu_wire::Family::V6, "ipv6/fib_multipath_hash_policy", "ipv6/fib_multipath_hash_fields"),
    ] {
        let o = Object::EcmpHash(dpu_wire::EcmpHash {
            family,
            policy: read(policy).min(u8::MAX as u32) as u8,
            fields: read(fields) & dpu_wire::EcmpHash::KNOWN_FIELDS,
        });
        // The kernel's default is no setting at all on the DPU.
        if !matches!(&o, Object::EcmpHash(h) if h.policy == 0) {
            out.push(o);
        }
    }
    out
}

fn ifindexes(links: &[Object]) -> Vec<u32> {
    links.iter().filter_map(|o| if let Object::Link(l) = o { Some(l.ifindex) } else { None }).collect()
}

/// The kernel dumps tc filters per device: the ingress hook of each of
/// these links.
fn dump_filters(sock: &mut NlSocket, ifindexes: &[u32]) -> io::Result<Dumped> {
    let mut out = Dumped::default();
    for &ifindex in ifindexes {
        match dump_request(sock, Kind::Filter, filter_dump_request(ifindex)) {
            Ok(f) => {
                out.objects.extend(f.objects);
                out.side.extend(f.side);
                out.bad += f.bad;
            }
            // The link went meanwhile; its filters with it.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn dump_request(sock: &mut NlSocket, kind: Kind, req: (u16, Vec<u8>)) -> io::Result<Dumped> {
    let mut buf = vec![0u8; BUF];
    for _attempt in 0..16 {
        let (t, hdr) = &req;
        let seq = sock.request_dump(*t, hdr)?;
        let (mut out, mut bad, mut intr) = (Vec::new(), 0u64, false);
        let mut side = Vec::new();
        'recv: loop {
            let n = sock.recv(&mut buf)?;
            for m in messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                intr |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.kind {
                    NLMSG_DONE => break 'recv,
                    NLMSG_ERROR => {
                        let e = socket::error_code(m.payload);
                        if e != 0 {
                            return Err(io::Error::from_raw_os_error(-e));
                        }
                        break 'recv;
                    }
                    t if kind_of(t, m.payload) == Some(kind) => match convert(t, m.payload) {
                        Ok(Change::Upsert(o)) => out.push(o),
                        // Parsed, but not something the DPU can hold.
                        Ok(c @ (Change::NotOffloaded(..) | Change::Qualified { .. })) => side.push(c),
                        Ok(Change::Many(v)) => out.extend(v.into_iter().filter_map(|c| match c {
                            Change::Upsert(o) => Some(o),
                            _ => None,
                        })),
                        Ok(_) => {}
                        Err(_) => bad += 1,
                    },
                    _ => {}
                }
            }
        }
        if !intr {
            return Ok(Dumped { objects: out, bad, side });
        }
    }
    Err(io::Error::other(format!("{kind:?} dump interrupted 16 times in a row")))
}

/// Dumps `kinds` and reconciles the shadow with them.
pub fn resync(shared: &Shared, cfg: &Config, sock: &mut NlSocket, kinds: &[Kind]) -> io::Result<()> {
    let mut fresh = Vec::new();
    let mut side = Vec::new();
    let mut bad = 0;
    // The links of this resync, when it dumps them, for the filter dump
    // (per link) to reuse rather than dump them again.
    let mut links: Option<Vec<u32>> = None;
    for &k in kinds {
        let r = match (k, &links) {
            (Kind::Filter, Some(ix)) => dump_filters(sock, ix),
            _ => dump(sock, k),
        };
        match r {
            Ok(d) => {
                if k == Kind::Link {
                    links = Some(ifindexes(&d.objects));
                }
                fresh.extend(d.objects);
                side.extend(d.side);
                bad += d.bad;
            }
            // A kernel without the feature (no bridge, say) has none of it.
            Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => {}
            Err(e) => return Err(e),
        }
    }
    let mut m = shared.lock();
    // After the dump's last read: a tap delete from before this may
    // predate what the dump found.
    m.set_read_time(monotonic_ns());
    m.counters.resyncs += 1;
    m.counters.parse_errors += bad;
    // Links first, so that the others can be filtered by link name.
    if kinds.contains(&Kind::Link) {
        let links: Vec<Object> = fresh
            .iter()
            .filter(|o| matches!(o, Object::Link(_)) && cfg.offloaded(o, |_| None))
            .cloned()
            .collect();
        m.reconcile(&[Kind::Link], links);
    }
    let mut fresh: Vec<Object> = fresh.into_iter().filter(|o| offloaded(&m, cfg, o)).collect();
    // What the DPU cannot hold, as this dump found it; logged only when
    // new since the last dump.
    let mut before = HashMap::new();
    m.not_offloaded.retain(|k, why| {
        let dumped = Kind::of_key(k).is_some_and(|kind| kinds.contains(&kind));
        if dumped {
            before.insert(*k, std::mem::take(why));
        }
        !dumped
    });
    if kinds.contains(&Kind::Route) {
        m.quals.clear();
    }
    for c in side {
        match c {
            Change::NotOffloaded(k, why) => match before.remove(&k) {
                Some(old) if *old == *why => {
                    m.not_offloaded.insert(k, old);
                }
                _ => note_not_offloaded(&mut m, k, why),
            },
            Change::Qualified { key, paths, new: true } => {
                let t = qualified::trap(key.key.table, key.key.dst);
                if offloaded(&m, cfg, &Object::Route(t)) {
                    m.quals.change(key, paths, true);
                }
            }
            _ => {}
        }
    }
    let shared_keys = if kinds.contains(&Kind::Route) { m.quals.fold(&mut fresh) } else { Vec::new() };
    m.reconcile(kinds, fresh);
    // After the reconcile: a trap's upsert clears what is listed at its
    // key, which an IPv4 shared key at metric 0 is.
    for k in shared_keys {
        let n = m.quals.hidden_at(&k).len();
        let k = Key::Route(k);
        match before.remove(&k) {
            Some(old) if old.ends_with(qualified::SHARED_WHY) => {
                m.not_offloaded.insert(k, qualified::shared_why(n).into());
            }
            _ => note_not_offloaded(&mut m, k, qualified::shared_why(n)),
        }
    }
    drop(m);
    shared.notify();
    Ok(())
}

fn link_up(o: &Object) -> bool {
    matches!(o, Object::Link(l) if l.admin_up && matches!(l.oper, OperState::Up | OperState::Unknown))
}

/// What a batch of changes leaves to do once the mirror's lock is free:
/// types to re-dump, and links whose own FDB entries to read back.
#[derive(Default)]
struct Todo {
    kinds: Vec<Kind>,
    link_fdb: Vec<u32>,
}

impl Todo {
    fn push(&mut self, k: Kind) {
        self.kinds.push(k);
    }
    fn extend(&mut self, k: impl IntoIterator<Item = Kind>) {
        self.kinds.extend(k);
    }
}

/// How a change is applied.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    cfg: &'a Config,
    /// The FIB and nexthop taps are attached (see the module's text).
    tapped: bool,
}

/// IPv4 routes that die with a link going admin-down, by the rule of the
/// kernel's fib_sync_down_dev: every path's device is down (this one, or
/// one that went before), except host-scope routes, whose nexthops have
/// scope nowhere and survive a down. Routes through nexthop objects go
/// with their objects (the nexthop tap's deletes).
fn dead_with(m: &Mirror, ifindex: u32) -> Vec<Key> {
    const RT_SCOPE_HOST: u8 = 254;
    let down = |i: u32| i == ifindex || matches!(m.get(&Key::Link(i)), Some(Object::Link(l)) if !l.admin_up);
    m.select(|o| match o {
        Object::Route(r) if r.key.dst.family() == dpu_wire::Family::V4 && r.scope != RT_SCOPE_HOST => {
            matches!(&r.nexthops, RouteNexthops::Paths(p) if !p.is_empty() && p.iter().all(|p| down(p.ifindex)))
        }
        _ => false,
    })
}

/// Records an object the DPU cannot represent exactly: counted, listed in
/// status, logged the first time its key is refused (and at powers of two
/// of the count, so that a flood shows without flooding the log).
fn note_not_offloaded(m: &mut Mirror, k: Key, why: String) {
    m.counters.not_offloaded += 1;
    let first = !m.not_offloaded.contains_key(&k);
    if first || m.counters.not_offloaded.is_power_of_two() {
        crate::log!("{k:?} not offloaded: {why} ({} so far)", m.counters.not_offloaded);
    }
    m.not_offloaded.insert(k, why.into_boxed_str());
}

/// Multipath routes with paths through a link going admin-down and paths
/// through links that stay up, without the dead ones (the kernel's
/// fib_sync_down_dev and rt6_sync_down_dev flag them `RTNH_F_DEAD`).
fn dead_paths_with(m: &Mirror, ifindex: u32) -> Vec<Route> {
    let down = |i: u32| i == ifindex || matches!(m.get(&Key::Link(i)), Some(Object::Link(l)) if !l.admin_up);
    m.objects()
        .filter_map(|(_, o)| match o {
            Object::Route(mut r) => {
                let RouteNexthops::Paths(p) = &r.nexthops else { return None };
                if p.len() < 2 || !p.iter().any(|p| p.ifindex == ifindex) || p.iter().all(|p| down(p.ifindex))
                {
                    return None;
                }
                let left = p.iter().filter(|p| !down(p.ifindex)).copied().collect();
                r.nexthops = RouteNexthops::Paths(left);
                Some(r)
            }
            _ => None,
        })
        .collect()
}

/// Applies one change; returns the object types to re-dump because of it.
fn apply(m: &mut Mirror, cx: Ctx, change: Change, redump: &mut Todo) {
    let cfg = cx.cfg;
    match change {
        // A plain route of a trapped prefix stays off the DPU (see
        // qualified.rs): its changes go to the hidden copy.
        Change::Upsert(Object::Route(r)) if m.quals.trapped(r.key.table, r.key.dst) => {
            let k = r.key;
            m.quals.replace_hidden(r);
            hidden_changed(m, cx, k, redump);
        }
        Change::Add(r) if m.quals.trapped(r.key.table, r.key.dst) => {
            let k = r.key;
            m.quals.add_hidden(r);
            hidden_changed(m, cx, k, redump);
        }
        Change::Add(r) => {
            let o = Object::Route(r);
            // A key the mirror does not hold yet, the usual case: taken in
            // the one lookup that finds it absent.
            if !offloaded(m, cfg, &o) {
                return apply(m, cx, Change::Upsert(o), redump);
            }
            let Err(have) = m.insert_new(&o) else { return };
            let Object::Route(r) = o else { return };
            match have.map(|b| *b) {
                Some(Object::Route(have))
                    if !qualified::same_route(&have, &r)
                        && offloaded(m, cfg, &Object::Route(qualified::trap(r.key.table, r.key.dst))) =>
                {
                    // A second route of the key: the prefix is trapped.
                    let k = r.key;
                    trap_prefix(m, k.table, k.dst);
                    m.quals.add_hidden(r);
                    hidden_changed(m, cx, k, redump);
                }
                _ => apply(m, cx, Change::Upsert(Object::Route(r)), redump),
            }
        }
        Change::Delete(Key::Route(k)) if m.quals.trapped(k.table, k.dst) => {
            if m.quals.hidden_at(&k).len() > 1 {
                // Routes share the key, and the delete does not say which
                // one went (every path dead, or a route without paths):
                // the dump does.
                dump_again(m, redump, Kind::Route);
                return;
            }
            m.quals.remove_hidden(&k);
            hidden_changed(m, cx, k, redump);
        }
        Change::DeletePaths(gone) if m.quals.trapped(gone.key.table, gone.key.dst) => {
            let k = gone.key;
            m.quals.delete_hidden(&gone);
            hidden_changed(m, cx, k, redump);
        }
        Change::NotOffloaded(Key::Route(k), why) if m.quals.trapped(k.table, k.dst) => {
            if m.quals.hidden_at(&k).len() > 1 {
                dump_again(m, redump, Kind::Route);
                return;
            }
            m.quals.remove_hidden(&k);
            note_not_offloaded(m, Key::Route(k), why);
            hidden_changed(m, cx, k, redump);
        }
        Change::Qualified { key, paths, new } => {
            let (table, dst) = (key.key.table, key.key.dst);
            let t = qualified::trap(table, dst);
            if !offloaded(m, cfg, &Object::Route(t.clone())) {
                return;
            }
            if new && !m.quals.trapped(table, dst) {
                crate::log!(
                    "route {dst} table {table} tos {:#x} from {} not offloaded: the DPU matches on the destination only; {dst} is trapped to the host while it exists",
                    key.tos,
                    key.src
                );
            }
            if !m.quals.change(key, paths, new) {
                return;
            }
            if new {
                trap_prefix(m, table, dst);
            } else {
                m.delete(&Key::Route(t.key));
                for r in m.quals.unhide(table, dst) {
                    apply(m, cx, Change::Upsert(Object::Route(r)), redump);
                }
            }
        }
        Change::Upsert(o) if !offloaded(m, cfg, &o) => m.delete(&o.key()),
        Change::Upsert(o) => {
            if let Object::Link(l) = &o {
                let before = m.get(&Key::Link(l.ifindex));
                let was_up = before.as_ref().is_some_and(link_up);
                let was_admin_up = matches!(&before, Some(Object::Link(b)) if b.admin_up);
                if was_up && !link_up(&o) && l.kind != LinkKind::Loopback && cx.tapped {
                    // The taps tell the FIB's and the nexthop chain's
                    // deletes; neighbours and FDB entries flushed with the
                    // link are announced (RTM_DELNEIGH). A carrier loss
                    // only flags routes linkdown.
                    if was_admin_up && !l.admin_up {
                        // Hidden routes (of trapped prefixes) through it
                        // die or lose paths silently too: the dump tells.
                        let ix = l.ifindex;
                        if m.quals.any_hidden(
                            |r| matches!(&r.nexthops, RouteNexthops::Paths(p) if p.iter().any(|p| p.ifindex == ix)),
                        ) {
                            dump_again(m, redump, Kind::Route);
                        }
                        let dead = dead_with(m, l.ifindex);
                        m.counters.dead_routes += dead.len() as u64;
                        for k in dead {
                            m.delete(&k);
                        }
                        // The multipath routes that keep other paths: the
                        // kernel flags this link's paths dead, unannounced,
                        // and its lookup passes over them.
                        for r in dead_paths_with(m, l.ifindex) {
                            crate::netlink::convert::DEAD_PATHS_LEFT_OUT.store(true, Relaxed);
                            m.upsert(Object::Route(r));
                        }
                    } else if crate::netlink::convert::IGNORE_LINKDOWN.load(Relaxed) != 0 {
                        // A carrier loss flags paths linkdown, unannounced,
                        // and ignore_routes_with_linkdown makes the kernel
                        // pass over them.
                        redump.push(Kind::Route);
                    }
                    // The device's own address filter (the multicast
                    // groups IPv4 and IPv6 leave at a down) changes with
                    // no message and no notifier: read back that one
                    // device's FDB entries.
                    redump.link_fdb.push(l.ifindex);
                } else if was_up && !link_up(&o) && l.kind != LinkKind::Loopback {
                    // IPv4 routes and neighbours go silently with the link.
                    redump.extend([Kind::Nexthop, Kind::Route, Kind::Neighbour, Kind::Fdb]);
                } else if !was_up && link_up(&o) && crate::netlink::convert::DEAD_PATHS_LEFT_OUT.load(Relaxed)
                {
                    // The kernel clears the dead (and linkdown) flags of
                    // the paths through a link coming up without a word:
                    // the routes whose paths were left out are read again.
                    redump.push(Kind::Route);
                    redump.link_fdb.push(l.ifindex);
                } else if before.is_none() || (!was_up && link_up(&o)) {
                    // A new device's, or a device coming up's, address
                    // filter entries (the `self` permanent FDB entries of
                    // its multicast list) come with no RTM_NEWNEIGH: read
                    // back that one device's.
                    redump.link_fdb.push(l.ifindex);
                }
            }
            m.upsert(o)
        }
        Change::Delete(k) => {
            match k {
                Key::Link(ifindex) => {
                    redump.extend([
                        Kind::Nexthop,
                        Kind::Route,
                        Kind::Neighbour,
                        Kind::Fdb,
                        Kind::Vlan,
                        Kind::Address,
                        Kind::Filter,
                    ]);
                    // What lived on the link is gone now, whatever the
                    // re-dump finds later.
                    let on_link: Vec<Key> = m.select(|o| match o {
                        Object::Neighbour(n) => n.ifindex == ifindex,
                        Object::Fdb(f) => f.ifindex == ifindex,
                        Object::Vlan(v) => v.ifindex == ifindex,
                        Object::Address(a) => a.ifindex == ifindex,
                        // The firmware's too: their device is gone.
                        Object::Flow(f) => f.ifindex == ifindex,
                        Object::BridgeAgeing(a) => a.ifindex == ifindex,
                        Object::PortStp(p) => p.ifindex == ifindex,
                        _ => false,
                    });
                    for k in on_link {
                        m.delete(&k);
                    }
                }
                Key::Nexthop(id) | Key::NexthopGroup(id) => {
                    // The kernel deletes routes through a deleted nexthop
                    // object without a word.
                    let users = m
                        .select(|o| matches!(o, Object::Route(r) if r.nexthops == RouteNexthops::Object(id)));
                    for u in users {
                        m.delete(&u);
                    }
                    if m.quals.any_hidden(|r| r.nexthops == RouteNexthops::Object(id)) {
                        dump_again(m, redump, Kind::Route);
                    }
                }
                _ => {}
            }
            m.delete(&k)
        }
        Change::Many(v) => {
            for c in v {
                apply(m, cx, c, redump);
            }
        }
        Change::NotOffloaded(k, why) => {
            m.delete(&k);
            note_not_offloaded(m, k, why);
        }
        // An IPv4 delete takes the route of its key (its paths name it
        // only where routes share the key: handled above).
        Change::DeletePaths(gone) if gone.key.dst.family() == dpu_wire::Family::V4 => {
            apply(m, cx, Change::Delete(Key::Route(gone.key)), redump)
        }
        Change::DeletePaths(gone) => {
            let key = Key::Route(gone.key);
            let Some(Object::Route(have)) = m.get(&key) else { return };
            match qualified::paths_left(&have, &gone) {
                None => m.delete(&key),
                Some(left) if left != have => apply(m, cx, Change::Upsert(Object::Route(left)), redump),
                // The kernel deleted a path the mirror does not hold.
                Some(_) => {}
            }
        }
        Change::Redump(k) => redump.push(k),
        Change::Ignore => {}
    }
}

/// A kind to dump again, counted as a re-dump.
fn dump_again(m: &mut Mirror, redump: &mut Todo, kind: Kind) {
    m.counters.redumps += 1;
    redump.push(kind);
}

/// A new route that replaces none (no `NLM_F_REPLACE`) is added beside
/// the kernel's others of its key: [`Change::Add`].
fn beside(c: Change, flags: u16) -> Change {
    match c {
        Change::Upsert(Object::Route(r)) if flags & NLM_F_REPLACE == 0 => Change::Add(r),
        c => c,
    }
}

/// Traps a prefix: its plain routes leave the DPU for the hidden copy,
/// and the trap entry takes the prefix (see qualified.rs).
fn trap_prefix(m: &mut Mirror, table: u32, dst: dpu_wire::Prefix) {
    for k in qualified::route_keys(m.keys().copied(), table, dst) {
        if let Some(Object::Route(r)) = m.get(&Key::Route(k)) {
            m.quals.hide(r);
        }
        m.delete(&Key::Route(k));
    }
    m.upsert(Object::Route(qualified::trap(table, dst)));
}

/// After a change to the hidden routes of `k`: a shared key is listed as
/// not offloaded (logged when it becomes shared), a key held once is not,
/// and a prefix no longer trapped gets its routes back on the DPU.
fn hidden_changed(m: &mut Mirror, cx: Ctx, k: RouteKey, redump: &mut Todo) {
    let key = Key::Route(k);
    let n = m.quals.hidden_at(&k).len();
    let shared_note = m.not_offloaded.get(&key).is_some_and(|w| w.ends_with(qualified::SHARED_WHY));
    if n > 1 && !shared_note {
        note_not_offloaded(m, key, qualified::shared_why(n));
    } else if n == 1 || (n == 0 && shared_note) {
        m.not_offloaded.remove(&key);
    }
    // Called for prefixes trapped before the change.
    if !m.quals.trapped(k.table, k.dst) {
        m.delete(&Key::Route(qualified::trap(k.table, k.dst).key));
        for r in m.quals.unhide(k.table, k.dst) {
            apply(m, cx, Change::Upsert(Object::Route(r)), redump);
        }
    }
}

fn offloaded(m: &Mirror, cfg: &Config, o: &Object) -> bool {
    cfg.offloaded(o, |i| match m.get(&Key::Link(i)) {
        Some(Object::Link(l)) => Some(l.name.as_str().to_string()),
        _ => None,
    })
}

/// A channel to the netlink thread whose sender rings `bell` after each
/// message (and when it closes), so that the thread waits for it and its
/// socket in one `poll`.
pub struct Belled<T> {
    pub rx: smol::channel::Receiver<T>,
    pub bell: Arc<EventFd>,
}

/// The sending side of a [`Belled`] channel. Dropped, on a return or a
/// panic alike, it closes the channel and rings, so the netlink thread
/// wakes to find it closed.
pub struct BellSender<T> {
    tx: Option<smol::channel::Sender<T>>,
    bell: Arc<EventFd>,
}

impl<T> BellSender<T> {
    /// Sends, waiting for room; false once the netlink thread is gone.
    pub fn send_blocking(&self, m: T) -> bool {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send_blocking(m).is_ok());
        let _ = self.bell.write(1);
        sent
    }

    /// Sends if there is room (a full channel already has a wake due).
    pub fn try_send(&self, m: T) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(m);
        }
        let _ = self.bell.write(1);
    }
}

impl<T> Drop for BellSender<T> {
    fn drop(&mut self) {
        drop(self.tx.take());
        let _ = self.bell.write(1);
    }
}

/// A bounded [`Belled`] channel and its sender.
pub fn belled<T>(cap: usize) -> io::Result<(BellSender<T>, Belled<T>)> {
    let bell = Arc::new(EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?);
    let (tx, rx) = smol::channel::bounded(cap);
    Ok((BellSender { tx: Some(tx), bell: bell.clone() }, Belled { rx, bell }))
}

/// Options of the kernel listener.
pub struct Listen {
    pub rcvbuf: usize,
    /// Bytes of the event ring (`netlink::ring`); 0 reads the event
    /// socket itself.
    pub event_ring: usize,
    pub config: Config,
    /// Where the config came from, to read again at SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
    /// One message per SIGHUP.
    pub reload: Option<Belled<()>>,
    /// The notifier taps' feed, if they run.
    pub taps: Option<Feed>,
}

/// The kernel's CLOCK_MONOTONIC, bpf_ktime_get_ns()'s clock.
pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Whether a tap delete (or setting) from `ts` may predate the mirror's
/// copy of `k`: the netlink message or dump that last upserted it was read
/// at or after `ts` (see `Mirror::read_at`). Such a delete is not applied;
/// the kind is dumped again instead.
fn raced(m: &Mirror, k: &Key, ts: u64) -> bool {
    m.read_at(k).is_some_and(|t| t >= ts)
}

/// Applies one tap message; returns the types to re-dump.
fn apply_tap(m: &mut Mirror, cx: Ctx, msg: TapMsg, redump: &mut Todo) {
    let (keys, ts) = match msg {
        TapMsg::RouteGone { key, ts_ns } => (vec![Key::Route(key)], ts_ns),
        TapMsg::NexthopGone { id, ts_ns } => (vec![Key::Nexthop(id), Key::NexthopGroup(id)], ts_ns),
        TapMsg::FdbGone { key, ts_ns } => (vec![Key::Fdb(key)], ts_ns),
        TapMsg::Setting { object, ts_ns } => {
            let k = object.key();
            // A port's STP state and a bridge's ageing are set from a
            // deferred work item: one may come for a port already gone
            // from its bridge (or gone altogether) after netlink said so.
            let stale = match &*object {
                Object::PortStp(p) => {
                    !matches!(m.get(&Key::Link(p.ifindex)), Some(Object::Link(l)) if l.master != 0)
                }
                Object::BridgeAgeing(a) => {
                    !matches!(m.get(&Key::Link(a.ifindex)), Some(Object::Link(l)) if l.kind == LinkKind::Bridge)
                }
                _ => false,
            };
            if stale {
                return;
            }
            if raced(m, &k, ts_ns) {
                dump_again(m, redump, Kind::of_key(&k).unwrap_or(Kind::Link));
            } else {
                m.counters.tap_settings += 1;
                // Policy 0 is the kernel's default: no setting on the DPU,
                // as a resync finds it (kernel::settings).
                let c = match *object {
                    Object::EcmpHash(h) if h.policy == 0 => Change::Delete(k),
                    o => Change::Upsert(o),
                };
                apply(m, cx, c, redump);
            }
            return;
        }
        TapMsg::Lost(n) => {
            m.counters.tap_loss_resyncs += 1;
            crate::log!("taps lost {n} records (ring buffer full): resyncing");
            redump.extend(Kind::ALL);
            return;
        }
    };
    for k in keys {
        if m.get(&k).is_none() {
            if matches!(&k, Key::Route(r) if !m.quals.hidden_at(r).is_empty()) {
                // A hidden route of a trapped prefix (its key maybe
                // shared): the dump tells which one went.
                dump_again(m, redump, Kind::Route);
            }
            continue;
        }
        if raced(m, &k, ts) {
            dump_again(m, redump, Kind::of_key(&k).unwrap_or(Kind::Route));
            continue;
        }
        m.counters.tap_deletes += 1;
        apply(m, cx, Change::Delete(k), redump);
    }
}

/// Where the listener reads the kernel's notifications: the event ring,
/// or the event socket itself (`--event-ring 0`, or a kernel where the
/// ring's filter does not load).
struct Events {
    sock: NlSocket,
    ring: Option<EventRing>,
    /// The socket's datagrams, read by `next_wake` and the drain.
    dgrams: Datagrams,
    /// The ring's loss count as last answered with a resync.
    lost: u64,
}

impl Events {
    /// The event socket, its ring attached before it joins the groups:
    /// no event is queued on the socket before the ring takes over.
    fn open(rcvbuf: usize, ring_bytes: usize) -> io::Result<Events> {
        let sock = NlSocket::open(&[], rcvbuf)?;
        let ring = match ring_bytes {
            0 => None,
            n => match EventRing::attach(&sock, n) {
                Ok(r) => Some(r),
                Err(e) => {
                    crate::warn!("netlink event ring unavailable ({e}): reading the event socket");
                    None
                }
            },
        };
        sock.join(&group::ALL)?;
        Ok(Events { sock, ring, dgrams: Datagrams::default(), lost: 0 })
    }

    /// What the status calls the event source.
    fn via(&self) -> &'static str {
        if self.ring.is_some() {
            "ring"
        } else {
            "socket"
        }
    }
}

/// Waits for the next thing to do: netlink events (in the ring, or taken
/// from the socket into `ev.dgrams`), then a SIGHUP, then a tap message,
/// in that order when several wait. One `poll` over the ring or socket
/// and the channels' bells, on this thread: an async reactor woke a thread
/// of its own for each wake and handed over, which cost the bare receive
/// of a 1.2M-route install 1.7-1.9 us per route against 1.1-1.4
/// (`bench-mirror.sh ... floor`, with and without FLOOR_ASYNC=1).
fn next_wake(ev: &mut Events, reload: Option<&Belled<()>>, taps: Option<&Belled<TapMsg>>) -> Wake {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        if let Some(r) = &ev.ring {
            // Records wait, or some were lost.
            if r.ready() || r.lost() != ev.lost {
                return Wake::Netlink(Ok(0));
            }
        }
        // With the ring too: the kernel reports on the socket what it lost
        // before the filter ran (a failed clone of the skb in
        // do_one_broadcast, a notification it could not build), as its
        // error. Nothing else comes there, as the filter takes every
        // message.
        match ev.sock.recv_many(&mut ev.dgrams) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Ok(_) if ev.ring.is_some() => {}
            r => return Wake::Netlink(r),
        }
        if reload.is_some_and(|r| r.rx.try_recv().is_ok()) {
            return Wake::Reload;
        }
        if let Some(t) = taps {
            match t.rx.try_recv() {
                Ok(m) => return Wake::Tap(Some(m)),
                Err(smol::channel::TryRecvError::Closed) => return Wake::Tap(None),
                Err(smol::channel::TryRecvError::Empty) => {}
            }
        }
        // A bell rung since the checks above keeps its count: poll
        // returns at once, as the ring's fd does while records wait. An
        // absent channel polls the first fd twice.
        let fd = ev.sock.as_fd();
        let mut fds = [
            PollFd::new(fd, PollFlags::POLLIN),
            PollFd::new(ev.ring.as_ref().map_or(fd, |r| r.as_fd()), PollFlags::POLLIN),
            PollFd::new(reload.map_or(fd, |r| r.bell.as_fd()), PollFlags::POLLIN),
            PollFd::new(taps.map_or(fd, |t| t.bell.as_fd()), PollFlags::POLLIN),
        ];
        // With the ring, a second look each second: a loss counted while
        // the ring was empty rings nothing.
        let wait = if ev.ring.is_some() { PollTimeout::from(1000u16) } else { PollTimeout::NONE };
        match poll(&mut fds, wait) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // ENOMEM, say: no spinning while it lasts.
            Err(e) => {
                crate::warn!("poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // Reset the bells (non-blocking: an unrung one is EAGAIN).
        for b in reload.iter().map(|r| &r.bell).chain(taps.iter().map(|t| &t.bell)) {
            let _ = b.read();
        }
    }
}

/// What woke the listener.
enum Wake {
    Netlink(io::Result<usize>),
    Tap(Option<TapMsg>),
    /// SIGHUP: read the config again.
    Reload,
}

/// First wait after a failed dump; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A resync that does not give up: a dump that fails (the kernel out of
/// memory, a dump interrupted again and again, a socket error) is logged
/// and tried again on a fresh socket after a growing wait. Events keep
/// queueing meanwhile; an overflow they cause is one more resync.
fn resync_retrying(shared: &Shared, cfg: &Config, sock: &mut NlSocket, kinds: &[Kind]) {
    let mut wait = RETRY_FIRST;
    loop {
        match resync(shared, cfg, sock, kinds) {
            Ok(()) => return,
            Err(e) => {
                shared.lock().counters.dump_errors += 1;
                crate::warn!("dump of {kinds:?} failed ({e}): trying again in {} ms", wait.as_millis());
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
                if let Ok(s) = NlSocket::open(&[], 0) {
                    *sock = s;
                }
            }
        }
    }
}

/// Runs forever: initial sync, then events.
/// Datagrams read under one hold of the mirror lock.
pub const DRAIN: usize = 1024;
/// In a burst, how long the kernel may queue events before they are read
/// (and the DPU thread's least time between two batches). A wake costs
/// far more than the events it serves on a virtualised host (a context
/// switch here is some 10-25 us of CPU, bench-mirror.sh's per-thread
/// figures). In a 1.2M-route install: 4 ms against 1 ms cut host-bridge's
/// wakes by two thirds and its CPU by 12%; 10 ms against 4 ms cut them by
/// another 60% and its CPU from 2.67 to 2.12-2.57 us per route, for a
/// kernel event to DPU acknowledgement of p50 <= 12.8 ms and p99 <= 102
/// ms instead of 6.4 and 25.6, in bursts only: a lone event is taken at
/// once. `--burst-pause` sets it.
pub const BURST_PAUSE: Duration = Duration::from_millis(10);

/// An error read from the event socket. ENOBUFS is an overflow; another
/// error the kernel sets on a listener (netlink_set_err: a notification
/// it could not build, EMSGSIZE or ENOBUFS) also means an event it did
/// not send: a re-dump, not the end of the daemon. Only an error that says
/// the socket itself is broken ends the listener.
fn socket_error(shared: &Shared, ev: &mut Events, redump: &mut Todo, e: io::Error) -> io::Result<()> {
    use nix::libc::{EBADF, EFAULT, EINVAL, ENOTSOCK};
    match e.raw_os_error() {
        Some(nix::libc::ENOBUFS) => overflowed(shared, ev, redump),
        Some(EBADF | ENOTSOCK | EFAULT | EINVAL) | None => return Err(e),
        Some(_) => {
            crate::warn!("netlink event socket: {e}: an event was not sent, re-dumping everything");
            events_lost(shared, ev, redump);
        }
    }
    Ok(())
}

/// Events were lost: counted, what the ring holds (older than the loss)
/// freed unread, and everything dumped again.
fn events_lost(shared: &Shared, ev: &mut Events, redump: &mut Todo) {
    shared.lock().counters.overflows += 1;
    if let Some(r) = &mut ev.ring {
        r.discard();
    }
    redump.extend(Kind::ALL);
}

/// The receive buffer overflowed: events were lost. The kernel reports an
/// overflow once, then drops silently until the queue has been empty:
/// the queue is drained first, so that a loss during the re-dump is
/// reported again. What is drained is in the dump.
fn overflowed(shared: &Shared, ev: &mut Events, redump: &mut Todo) {
    crate::log!("netlink receive buffer overflowed: events lost, re-dumping everything");
    events_lost(shared, ev, redump);
    loop {
        match ev.sock.recv_many(&mut ev.dgrams) {
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOBUFS) => continue,
            Err(_) => break,
        }
    }
}

pub fn run(shared: Arc<Shared>, opts: Listen) -> io::Result<()> {
    let mut ev = Events::open(opts.rcvbuf, opts.event_ring)?;
    shared.lock().events_via = ev.via();
    let mut dumper = NlSocket::open(&[], 0)?;
    let mut config = opts.config;
    resync_retrying(&shared, &config, &mut dumper, &Kind::ALL);
    {
        let mut m = shared.lock();
        m.ready = true;
        crate::log!("initial sync: {} objects mirrored", m.len());
    }
    shared.notify();
    let mut tapped = opts.taps.as_ref().is_some_and(|t| t.routes_tapped);
    let mut taps = opts.taps.as_ref().map(|t| &t.chan);
    let reload = opts.reload.as_ref();
    let mut last_wake: Option<Instant> = None;
    let mut behind = false;
    loop {
        let wake = next_wake(&mut ev, reload, taps);
        let mut redump = Todo::default();
        if let Wake::Reload = wake {
            // Only the difference goes to the DPU: the re-dump's
            // reconcile touches what the new config changes.
            let Some(path) = &opts.config_path else {
                crate::log!("SIGHUP: no --config to read again");
                continue;
            };
            match Config::load(path) {
                Ok(c) if c == config => crate::log!("SIGHUP: {} unchanged", path.display()),
                Ok(c) => {
                    config = c;
                    let before = shared.lock().counters.changes;
                    resync_retrying(&shared, &config, &mut dumper, &Kind::ALL);
                    let changed = shared.lock().counters.changes - before;
                    crate::log!("SIGHUP: {} reloaded: {changed} objects changed", path.display());
                }
                Err(e) => {
                    crate::warn!("SIGHUP: {} not reloaded, keeping the running config: {e}", path.display())
                }
            }
            shared.notify();
            continue;
        }
        let cx = Ctx { cfg: &config, tapped };
        match wake {
            Wake::Reload => {}
            Wake::Tap(None) => {
                crate::log!("taps stopped: netlink alone from now on, after a resync");
                (taps, tapped) = (None, false);
                redump.extend(Kind::ALL);
            }
            Wake::Tap(Some(msg)) => {
                {
                    let mut m = shared.lock();
                    // Taps come in order: what one sets is never
                    // raced by a later one.
                    m.set_read_time(0);
                    apply_tap(&mut m, cx, msg, &mut redump);
                    // What else waits, under the same hold of the lock.
                    if let Some(t) = taps {
                        while let Ok(msg) = t.rx.try_recv() {
                            apply_tap(&mut m, cx, msg, &mut redump);
                        }
                    }
                }
                shared.notify();
            }
            Wake::Netlink(Ok(_)) => {
                // In a burst (this wake within BURST_PAUSE of the
                // previous one), let the kernel queue more first: one
                // wake, one hold of the lock and one bell then serve
                // dozens of events instead of one, at the cost of at
                // most BURST_PAUSE of latency, and only in bursts. A
                // lone event is taken at once.
                // Not when the last drain stopped at DRAIN: then the
                // socket is full already and a pause only risks ENOBUFS.
                let pause = shared.burst_pause();
                if !behind && last_wake.is_some_and(|l| l.elapsed() < pause) {
                    std::thread::sleep(pause);
                }
                behind = true;
                let mut bad = Vec::new();
                let mut failed = None;
                let mut truncated = 0;
                {
                    let mut m = shared.lock();
                    // What the ring or socket holds, up to DRAIN
                    // datagrams, under one hold of the lock.
                    let mut taken = 0;
                    let mut take = |m: &mut Mirror, dg: &[u8], redump: &mut Todo| {
                        for msg in messages(dg) {
                            let Some(kind) = kind_of(msg.kind, msg.payload) else { continue };
                            m.counters.events += 1;
                            match convert(msg.kind, msg.payload) {
                                Ok(c) => apply(m, cx, beside(c, msg.flags), redump),
                                Err(e) => {
                                    m.counters.parse_errors += 1;
                                    crate::log!("unparsable {kind:?} message ({e}): resyncing {kind:?}");
                                    bad.push(kind);
                                }
                            }
                        }
                    };
                    match &mut ev.ring {
                        Some(ring) => loop {
                            let end = ring.produced();
                            // Made by now (see EventRing::produced).
                            m.set_read_time(monotonic_ns());
                            let n = ring.drain(end, DRAIN - taken, |ts, dg| {
                                m.set_event_time(ts);
                                take(&mut m, dg, &mut redump)
                            });
                            truncated += ring.truncated;
                            taken += n;
                            if taken >= DRAIN {
                                break;
                            }
                            if n == 0 {
                                behind = false;
                                break;
                            }
                        },
                        None => loop {
                            // Read by now: their upserts are stamped no
                            // earlier than their read (see `raced`).
                            m.set_read_time(monotonic_ns());
                            truncated += ev.dgrams.truncated;
                            for dg in ev.dgrams.iter() {
                                take(&mut m, dg, &mut redump);
                            }
                            taken += ev.dgrams.len();
                            if taken >= DRAIN {
                                break;
                            }
                            match ev.sock.recv_many(&mut ev.dgrams) {
                                Ok(_) => {}
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                                    ) =>
                                {
                                    behind = false;
                                    break;
                                }
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        },
                    }
                }
                if let Some(lost) = ev.ring.as_ref().map(EventRing::lost).filter(|&l| l != ev.lost) {
                    crate::log!(
                        "netlink event ring full: {} events lost, re-dumping everything",
                        lost - ev.lost
                    );
                    ev.lost = lost;
                    events_lost(&shared, &mut ev, &mut redump);
                }
                if truncated > 0 {
                    shared.lock().counters.overflows += 1;
                    crate::warn!(
                        "{truncated} netlink events larger than {} KiB were cut: re-dumping everything",
                        if ev.ring.is_some() { crate::netlink::ring::EVENT_MAX } else { SLOT } >> 10
                    );
                    redump.extend(Kind::ALL);
                }
                last_wake = Some(Instant::now());
                shared.notify();
                if !redump.kinds.is_empty() {
                    shared.lock().counters.redumps += 1;
                }
                redump.extend(bad);
                if let Some(e) = failed {
                    socket_error(&shared, &mut ev, &mut redump, e)?;
                }
            }
            Wake::Netlink(Err(e)) => socket_error(&shared, &mut ev, &mut redump, e)?,
        }
        for ifindex in std::mem::take(&mut redump.link_fdb) {
            if let Err(e) = resync_link_fdb(&shared, &config, &mut dumper, ifindex) {
                crate::warn!("reading back the FDB of link {ifindex} failed ({e}): re-dumping the FDB");
                redump.kinds.push(Kind::Fdb);
            }
        }
        let mut kinds = redump.kinds;
        if !kinds.is_empty() {
            kinds.sort();
            kinds.dedup();
            resync_retrying(&shared, &config, &mut dumper, &kinds);
        }
    }
}

/// Reads back the FDB entries of one device (a bridge port's, or a
/// device's own address filter: `bridge fdb show dev X`) and reconciles
/// the mirror's entries of that device with them.
fn resync_link_fdb(shared: &Shared, cfg: &Config, sock: &mut NlSocket, ifindex: u32) -> io::Result<()> {
    // The legacy filter of rtnl_fdb_dump: an ifinfomsg header whose
    // ifi_index names the device.
    let mut h = vec![nix::libc::AF_BRIDGE as u8, 0, 0, 0];
    h.extend_from_slice(&ifindex.to_ne_bytes());
    h.extend_from_slice(&[0; 8]);
    let fresh = match dump_request(sock, Kind::Fdb, (socket::RTM_GETNEIGH, h)) {
        Ok(f) => f.objects,
        // Gone meanwhile: its entries go with its delete.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut m = shared.lock();
    m.set_read_time(monotonic_ns());
    m.counters.link_fdb_dumps += 1;
    let fresh: Vec<Object> = fresh
        .into_iter()
        .filter(|o| matches!(o, Object::Fdb(f) if f.ifindex == ifindex) && offloaded(&m, cfg, o))
        .collect();
    let keep: std::collections::HashSet<Key> = fresh.iter().map(|o| o.key()).collect();
    let have = m.select(|o| matches!(o, Object::Fdb(f) if f.ifindex == ifindex));
    for k in have {
        if !keep.contains(&k) {
            m.delete(&k);
        }
    }
    for o in fresh {
        m.upsert(o);
    }
    drop(m);
    shared.notify();
    Ok(())
}

#[cfg(test)]
mod belled_tests {
    use super::*;

    #[test]
    fn a_belled_sender_rings_per_message_and_at_its_drop_even_in_a_panic() {
        let (tx, rx) = belled::<u32>(4).expect("eventfd");
        assert!(rx.bell.read().is_err(), "not rung yet");
        assert!(tx.send_blocking(7));
        assert_eq!(rx.bell.read().ok(), Some(1));
        tx.try_send(8);
        assert_eq!(rx.bell.read().ok(), Some(1));
        // A thread that panics holding the sender still closes and rings.
        let t = std::thread::spawn(move || {
            let _tx = tx;
            panic!("taps thread dies");
        });
        assert!(t.join().is_err());
        assert_eq!(rx.bell.read().ok(), Some(1));
        assert_eq!((rx.rx.try_recv(), rx.rx.try_recv()), (Ok(7), Ok(8)));
        assert_eq!(rx.rx.try_recv(), Err(smol::channel::TryRecvError::Closed));
    }
}
