//! The shadow of the kernel's state and what the DPU still has to hear.
//!
//! The shadow keeps each object in its wire encoding (postcard, about 16
//! bytes for an IPv4 route) keyed by its natural key: what the DPU gets is
//! exactly what is compared, and memory stays near 100 bytes per route.
//!
//! Every kernel change updates the shadow first. A change that really
//! changes an object marks its key pending; a key pending twice is sent
//! once, with its latest state, so memory is bounded by the number of
//! objects, not of events. Pending work leaves in dependency order (see
//! [`Mirror::take`]): deletes of what no DPU entry refers to, then upserts
//! of links, addresses, flows, nexthops, groups, routes, neighbours, FDB,
//! VLANs, then the other deletes in the reverse order.

use crate::netlink::Kind;
use crate::shadow::{Enc, Shadow, Upserted};
use dpu_wire::{Key, Object, Op, RouteKey, RouteNexthops, RouteType, Status};
use std::collections::VecDeque;

/// The mirror's maps hash with foldhash, not SipHash: the keys come from
/// this host's own kernel, so HashDoS resistance buys nothing, and
/// SipHash was the largest single user-space cost per route (profiled
/// with qemu-tests/bench-mirror.sh, HB_PERF). Random seeds still.
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

const RANKS: usize = 10;

/// Upserts go in rank order, deletes in reverse: what an entry refers to
/// is on the DPU before it and leaves after it. Flows refer to nothing the
/// mirror sends (a port is a number in their key), so they come early: a
/// tc request may be waiting for the DPU's answer (`--tc-answer dpu`),
/// which must not queue behind a burst of routes.
fn rank(k: &Key) -> usize {
    match k {
        Key::Link(_) => 0,
        Key::Address(_) => 1,
        Key::Flow(_) => 2,
        Key::Nexthop(_) => 3,
        Key::NexthopGroup(_) => 4,
        Key::Route(_) => 5,
        Key::Neighbour(_) => 6,
        Key::Fdb(_) => 7,
        Key::Vlan(_) => 8,
        Key::EcmpHash(_) | Key::BridgeAgeing(_) | Key::PortStp(_) => 9,
    }
}

/// Ranks of the kinds no DPU entry refers to: their deletes go before
/// every upsert, so that a replace in a full table (one entry out, another
/// in, in one batch) finds the room the delete frees instead of a
/// TableFull it would then retry.
const LEAF_RANKS: [usize; 4] = [2, 5, 6, 7];

/// The DPU table an entry takes room in, as far as the host can tell
/// (routes by family): refused entries are retried against the room that
/// deletes of the same table freed.
fn room(k: &Key) -> usize {
    match k {
        Key::Link(_) => 0,
        Key::Address(_) => 1,
        Key::Route(r) if r.dst.family() == dpu_wire::Family::V4 => 2,
        Key::Route(_) => 3,
        Key::Nexthop(_) => 4,
        Key::NexthopGroup(_) => 5,
        Key::Neighbour(_) => 6,
        Key::Fdb(_) => 7,
        Key::Vlan(_) => 8,
        Key::Flow(_) => 9,
        Key::EcmpHash(_) | Key::BridgeAgeing(_) | Key::PortStp(_) => 10,
    }
}
pub const ROOMS: usize = 11;

/// What a batch's results freed on the DPU, for [`Mirror::retry_refused`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    /// Entries deleted that the DPU held, per room.
    pub slots: [u32; ROOMS],
    /// Room freed by a snapshot's sweep (not known per table).
    pub any: u32,
    /// A nexthop or group was installed, or something deleted: entries
    /// that waited for a reference (NotFound) or on one (InUse) may go.
    pub deps: bool,
}

impl Freed {
    pub fn is_empty(&self) -> bool {
        *self == Freed::default()
    }
}

/// Counters of the mirror, for status and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct MirrorCounters {
    pub events: u64,
    pub changes: u64,
    pub collapsed: u64,
    pub parse_errors: u64,
    pub resyncs: u64,
    pub overflows: u64,
    pub sent: u64,
    pub refused: u64,
    /// Refusals by the agent's answer (`Status as usize`).
    pub refused_by: [u64; 6],
    pub retried: u64,
    /// tc filter events kept off the DPU (a key or action it has no field
    /// for); filters found so by a dump are logged, not counted.
    pub not_offloaded: u64,
    /// Re-dumps for deletes the kernel does not announce (a link down or
    /// gone), and for tap deletes that raced a netlink add of their key.
    pub redumps: u64,
    /// Objects deleted from the mirror on a tap's word (the FIB's and the
    /// nexthop chain's deletes) that were still there.
    pub tap_deletes: u64,
    /// Routes deleted at a link's down because every path died with it,
    /// as the kernel's fib_sync_down_dev does, with the taps attached.
    pub dead_routes: u64,
    /// Dumps that failed and were tried again.
    pub dump_errors: u64,
    /// Resyncs after the taps lost records.
    pub tap_loss_resyncs: u64,
    /// Read-backs of one device's FDB entries after it went down with the
    /// taps attached (its address filter changes unannounced).
    pub link_fdb_dumps: u64,
    /// Settings netlink has no event for, taken from the taps: the ECMP
    /// hash, a bridge's ageing time, a port's STP state.
    pub tap_settings: u64,
}

#[derive(Default)]
pub struct Mirror {
    shadow: Shadow,
    /// The read time upserts are stamped with ([`Mirror::set_read_time`]).
    read_ns: u64,
    /// Where changes start for the latency histogram
    /// ([`Mirror::set_event_time`]).
    event_ns: u64,
    /// Objects in the shadow per kind (`Kind as usize`), kept as they
    /// come and go so that counting never scans the shadow.
    counts: [usize; Kind::ALL.len()],
    /// Pending keys: the update each waits for, and its queues.
    pending: HashMap<Key, Pending>,
    /// Pending keys in the order they came, per rank: upserts and deletes
    /// apart, so that a pass over one never scans the other. A key whose
    /// pending state changed kind is queued again in the other queue; the
    /// stale place is skipped when it comes up. A key is queued at most
    /// once per queue while it is pending, so the queues stay bounded by
    /// the keys even when updates flip while the DPU is away.
    ups: [VecDeque<Key>; RANKS],
    downs: [VecDeque<Key>; RANKS],
    /// Entries the DPU refused, with its answer.
    pub refused: HashMap<Key, Status>,
    /// TableFull refusals in the order they came, per room: retried
    /// oldest first, as many as deletes free room. A key is queued once.
    full_q: [VecDeque<Key>; ROOMS],
    full_queued: HashSet<Key>,
    /// Refusals that wait for a reference (NotFound) or on one (InUse).
    dep_waits: HashSet<Key>,
    /// Deletes queued for keys the DPU had refused: they free nothing.
    unheld_deletes: HashSet<Key>,
    /// With `--metrics`: the latency from a kernel event to the DPU's
    /// answer, and the start times of the last take's ops.
    pub latency: Option<prometheus_client::metrics::histogram::Histogram>,
    taken_since: Vec<u64>,
    /// Objects the DPU cannot represent exactly, kept off it, with the
    /// reason (see `Change::NotOffloaded`).
    pub not_offloaded: HashMap<Key, Box<str>>,
    /// Routes qualified by TOS or source prefix, and the prefixes they
    /// trap (see `qualified.rs`).
    pub quals: crate::qualified::Quals,
    pub counters: MirrorCounters,
    /// The initial dump is complete: the shadow is the kernel's state and
    /// may be sent as a snapshot (an empty shadow would flush the DPU).
    pub ready: bool,
    /// Where kernel events are read: "ring" (`netlink::ring`) or "socket".
    pub events_via: &'static str,
    /// With the FIB firmware (`--fib-firmware`): what the DPU did with
    /// each route, from its results: true, it holds it; false, it refused
    /// it. A route changed since its last result has no entry: its flags
    /// wait for the DPU's answer.
    fib_hw: Option<HashMap<RouteKey, bool>>,
    /// Routes whose kernel offload flags must be set again (see
    /// `fib_fw.rs`).
    pub fib_dirty: HashSet<RouteKey>,
    /// The same for nexthop objects (single and groups, by the kernel's
    /// id, which both share).
    nh_hw: Option<HashMap<u32, bool>>,
    pub nh_dirty: HashSet<u32>,
    /// With the flow firmware answering from the DPU (`--tc-answer dpu`):
    /// the DPU's answers to firmware flows, for the tc requests that wait.
    fw_answers: Option<Vec<crate::firmware::RawAnswer>>,
}

/// A pending key: the update it waits for, and the queues it is in.
#[derive(Clone)]
struct Pending {
    upsert: bool,
    in_ups: bool,
    in_downs: bool,
    /// CLOCK_MONOTONIC ns of the first change the DPU has not answered
    /// yet (0 without the latency histogram).
    since: u64,
    /// The upsert's encoding, as the shadow holds it, when the change
    /// came with it at hand (a kernel upsert): the DPU thread's take then
    /// reads it here, from a small table, instead of from the shadow's
    /// slot, a cache miss on the other core per route (the profile of a
    /// 1.2M-route install put the DPU thread's shadow reads at 9% of
    /// host-bridge's CPU). `None`: read the shadow at take.
    enc: Option<Enc>,
}

/// An update taken for the DPU, still in its wire encoding: the shadow's
/// bytes of the object (an upsert) or the key's (a delete). It goes into
/// a frame as it is (`FrameBuilder::push_encoded`), never decoded and
/// encoded again: at a full table that was most of the DPU thread's work.
#[derive(Clone, PartialEq, Eq)]
pub struct Taken {
    pub key: Key,
    pub upsert: bool,
    enc: Enc,
}

impl Taken {
    pub fn delete(key: Key) -> Self {
        let mut b = [0u8; 64];
        let enc = match postcard::to_slice(&key, &mut b) {
            Ok(b) => Enc::new(b),
            Err(_) => Enc::new(&postcard::to_allocvec(&key).unwrap_or_default()),
        };
        Taken { key, upsert: false, enc }
    }

    /// The `Op` variant index and the encoded value: `Op`'s encoding.
    pub fn parts(&self) -> [&[u8]; 2] {
        [if self.upsert { &[0] } else { &[1] }, &self.enc]
    }

    /// The update decoded (for tests, logs and the rare object that needs
    /// a look, a firmware flow).
    pub fn op(&self) -> Option<Op> {
        if self.upsert {
            postcard::from_bytes(&self.enc).ok().map(Op::Upsert)
        } else {
            Some(Op::Delete(self.key))
        }
    }
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op() {
            Some(op) => op.fmt(f),
            None => write!(f, "undecodable {:?}", self.key),
        }
    }
}

impl PartialEq<Op> for Taken {
    fn eq(&self, op: &Op) -> bool {
        self.op().as_ref() == Some(op)
    }
}

impl Taken {
    /// The flow of a flow upsert (decoded on demand).
    fn flow(&self) -> Option<dpu_wire::FlowRule> {
        match (self.upsert, self.key) {
            (true, Key::Flow(_)) => match self.op() {
                Some(Op::Upsert(Object::Flow(f))) => Some(f),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Route offload flags, as `bpf_nsim_fib_hw_flags_set` takes them.
pub const FIB_F_OFFLOAD: u8 = 1;
pub const FIB_F_OFFLOAD_FAILED: u8 = 4;

/// A nexthop object as netdevsim holds it, from the FIB firmware's event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldNexthop {
    pub id: u32,
    pub shape: HeldShape,
    pub fdb: bool,
}

/// What a held nexthop object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldShape {
    /// A single nexthop: its device (none for a blackhole).
    Single { ifindex: u32, blackhole: bool },
    /// A group with this many members.
    Group(u32),
    /// A resilient group with this many buckets.
    Resilient(u32),
}

/// A route as netdevsim holds it, from the FIB firmware's event: what is
/// compared with the mirrored route before its flags are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldRoute {
    pub key: RouteKey,
    /// `RTN_*`.
    pub rtn_type: u8,
    pub nhs: u32,
    pub nh_id: u32,
}

impl Mirror {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the DPU's answers to firmware flows from now on, for the tc
    /// requests that wait for them.
    pub fn track_fw_answers(&mut self, on: bool) {
        self.fw_answers = on.then(Vec::new);
    }

    /// The answers gathered since the last call.
    pub fn take_fw_answers(&mut self) -> Vec<crate::firmware::RawAnswer> {
        self.fw_answers.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn fw_answer(&mut self, op: &Taken, status: Option<Status>) {
        let Some(v) = &mut self.fw_answers else { return };
        let Some(f) = op.flow() else { return };
        if f.cookie >> 63 == 1 {
            // By flow id: FwMaps::answer puts the kernel's cookie in.
            v.push(crate::firmware::RawAnswer {
                cookie: f.cookie,
                ifindex: f.ifindex,
                err: crate::firmware::answer_errno(status),
            });
        }
    }

    /// Keeps the DPU's answer for every route from now on, for the kernel's
    /// route offload flags.
    pub fn track_fib_flags(&mut self) {
        self.fib_hw.get_or_insert_with(HashMap::default);
        self.nh_hw.get_or_insert_with(HashMap::default);
    }

    /// The offload flags the DPU's answer gives a nexthop object, if it
    /// answered for its current state: offload, or none for one it refused
    /// (nexthop objects have no offload_failed flag).
    pub fn nh_flags(&self, id: u32) -> Option<u8> {
        match self.nh_hw.as_ref()?.get(&id)? {
            true => Some(FIB_F_OFFLOAD),
            false => Some(0),
        }
    }

    /// netdevsim took this nexthop object: its flags go again if the DPU
    /// answered for the object as the mirror has it and it is the one
    /// netdevsim holds (see [`Mirror::fib_asked`]).
    pub fn nh_asked(&mut self, held: &HeldNexthop) -> bool {
        if self.nh_flags(held.id).is_none() {
            return false;
        }
        let same = match held.shape {
            HeldShape::Single { ifindex, blackhole } => {
                matches!(self.get(&Key::Nexthop(held.id)), Some(Object::Nexthop(n))
                    if n.blackhole == blackhole && n.fdb == held.fdb && (blackhole || n.ifindex == ifindex))
            }
            HeldShape::Group(nhs) => {
                matches!(self.get(&Key::NexthopGroup(held.id)), Some(Object::NexthopGroup(g))
                    if g.resilient_buckets.is_none() && g.members.len() as u32 == nhs)
            }
            HeldShape::Resilient(buckets) => {
                matches!(self.get(&Key::NexthopGroup(held.id)), Some(Object::NexthopGroup(g))
                    if g.resilient_buckets.map(u32::from) == Some(buckets))
            }
        };
        if same {
            self.nh_dirty.insert(held.id);
        }
        same
    }

    /// The offload flags the DPU's answer gives a route, if it answered
    /// for its current state.
    pub fn fib_flags(&self, k: &RouteKey) -> Option<u8> {
        match self.fib_hw.as_ref()?.get(k)? {
            true => Some(FIB_F_OFFLOAD),
            false => Some(FIB_F_OFFLOAD_FAILED),
        }
    }

    /// netdevsim took this route (the kernel uses it): its flags go again,
    /// if the DPU answered for the route as the mirror has it and netdevsim
    /// holds the same route. Otherwise the mirror is behind the kernel (its
    /// netlink message is still on the way) or the DPU has not answered;
    /// the DPU's result sets the flags then.
    pub fn fib_asked(&mut self, held: &HeldRoute) -> bool {
        if self.fib_flags(&held.key).is_none() {
            return false;
        }
        let Some(Object::Route(r)) = self.get(&Key::Route(held.key)) else { return false };
        let rtn = match r.kind {
            RouteType::Unicast => 1,
            RouteType::Local => 2,
            RouteType::Blackhole => 6,
            RouteType::Unreachable => 7,
            RouteType::Prohibit => 8,
        };
        let same = rtn == held.rtn_type
            && match &r.nexthops {
                RouteNexthops::Object(id) => *id == held.nh_id,
                // IPv6 multipath routes grow path by path (APPEND): only
                // IPv4 counts them.
                RouteNexthops::Paths(p) => {
                    held.nh_id == 0
                        && (held.key.dst.family() == dpu_wire::Family::V6 || p.len() as u32 == held.nhs)
                }
                RouteNexthops::None => held.nh_id == 0,
            };
        if same {
            self.fib_dirty.insert(held.key);
        }
        same
    }

    /// Every route the DPU answered for goes again (the firmware lost
    /// events).
    pub fn fib_all_dirty(&mut self) {
        if let Some(h) = &self.fib_hw {
            self.fib_dirty.extend(h.keys().copied());
        }
        if let Some(h) = &self.nh_hw {
            self.nh_dirty.extend(h.keys().copied());
        }
    }

    /// Marks a kernel change pending; it started when it was read.
    fn mark(&mut self, key: Key, upsert: bool) {
        self.mark_since(key, upsert, self.event_ns, None)
    }

    /// Marks `key` pending for a change that started at `start` (0: now);
    /// `enc` is the upsert's encoding, when at hand.
    fn mark_since(&mut self, key: Key, upsert: bool, start: u64, enc: Option<&[u8]>) {
        let enc = enc.map(Enc::new);
        let p = match self.pending.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => {
                self.counters.collapsed += 1;
                let p = e.into_mut();
                p.upsert = upsert;
                p.enc = enc;
                p
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                // The read time of the event stands for its start (no
                // clock read per event); a tap's change has none.
                let since = match (&self.latency, start) {
                    (None, _) => 0,
                    (Some(_), 0) => crate::kernel::monotonic_ns(),
                    (Some(_), t) => t,
                };
                e.insert(Pending { upsert, in_ups: false, in_downs: false, since, enc })
            }
        };
        let queued = if upsert { &mut p.in_ups } else { &mut p.in_downs };
        if !*queued {
            *queued = true;
            let q = if upsert { &mut self.ups } else { &mut self.downs };
            q[rank(&key)].push_back(key);
        }
    }

    /// A kernel upsert.
    pub fn upsert(&mut self, o: Object) {
        let _ = self.upsert_or(&o, false);
    }

    /// A kernel upsert of an object whose key the mirror does not hold
    /// yet; `Err` gives back the object held (`None` if undecodable), and
    /// changes nothing. One lookup for both: a route added beside others
    /// of its key (`kernel.rs`) is the per-event hot path.
    pub fn insert_new(&mut self, o: &Object) -> Result<(), Option<Box<Object>>> {
        self.upsert_or(o, true)
    }

    fn upsert_or(&mut self, o: &Object, only_new: bool) -> Result<(), Option<Box<Object>>> {
        let key = o.key();
        // Encoded on the stack (a route is about 16 bytes; only a wide
        // multipath route needs the heap), and the key hashed once for
        // the compare and the insert.
        let mut stack = [0u8; 256];
        let heap;
        let bytes: &[u8] = match postcard::to_slice(o, &mut stack) {
            Ok(b) => b,
            Err(_) => match postcard::to_allocvec(o) {
                Ok(v) => {
                    heap = v;
                    &heap
                }
                Err(_) => return Ok(()),
            },
        };
        let upserted = if only_new {
            match self.shadow.insert_new(key, bytes, self.read_ns) {
                Ok(()) => Upserted::Added,
                Err(have) => return Err(postcard::from_bytes(&have.enc).ok().map(Box::new)),
            }
        } else {
            // Stamped even when unchanged: a delete and an identical add
            // again are both in the kernel's past now.
            self.shadow.upsert(key, bytes, self.read_ns)
        };
        if !self.not_offloaded.is_empty() {
            self.not_offloaded.remove(&key);
        }
        if !self.unheld_deletes.is_empty() {
            self.unheld_deletes.remove(&key);
        }
        let added = match upserted {
            Upserted::Same => return Ok(()),
            Upserted::Changed => false,
            Upserted::Added => true,
        };
        self.counters.changes += 1;
        if let (Key::Route(k), Some(h)) = (&key, &mut self.fib_hw) {
            h.remove(k);
        }
        if let (Key::Nexthop(id) | Key::NexthopGroup(id), Some(h)) = (&key, &mut self.nh_hw) {
            h.remove(id);
        }
        if added {
            if let Some(k) = Kind::of_key(&key) {
                self.counts[k as usize] += 1;
            }
        }
        self.mark_since(key, true, self.event_ns, Some(bytes));
        Ok(())
    }

    /// The time upserts from now on are stamped with: at or after the read
    /// of the kernel message (or dump) they come from.
    pub fn set_read_time(&mut self, ns: u64) {
        self.read_ns = ns;
        self.event_ns = ns;
    }

    /// When the kernel made the event being applied (the event ring's
    /// timestamp; CLOCK_MONOTONIC): where the latency histogram starts
    /// its changes. Without it, at their read ([`Mirror::set_read_time`]).
    pub fn set_event_time(&mut self, ns: u64) {
        self.event_ns = ns;
    }

    /// When the object with this key was last upserted, as stamped by
    /// [`Mirror::set_read_time`]: a tap delete from before then may be
    /// older than that upsert.
    pub fn read_at(&self, key: &Key) -> Option<u64> {
        self.shadow.get(key).map(|s| s.read_ns)
    }

    /// The mirrored object with this key.
    pub fn get(&self, key: &Key) -> Option<Object> {
        self.shadow.get(key).and_then(|s| postcard::from_bytes(&s.enc).ok())
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.shadow.contains_key(key)
    }

    /// Every mirrored object.
    pub fn objects(&self) -> impl Iterator<Item = (Key, Object)> + '_ {
        self.shadow.iter().filter_map(|(k, s)| postcard::from_bytes(&s.enc).ok().map(|o| (*k, o)))
    }

    /// Every mirrored key (no decoding).
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.shadow.keys()
    }

    /// Keys of the objects `f` selects.
    pub fn select(&self, mut f: impl FnMut(&Object) -> bool) -> Vec<Key> {
        self.objects().filter(|(_, o)| f(o)).map(|(k, _)| k).collect()
    }

    /// Number of mirrored objects.
    pub fn len(&self) -> usize {
        self.shadow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shadow.is_empty()
    }

    /// A kernel delete (or one the mirror worked out).
    pub fn delete(&mut self, key: &Key) {
        if !self.not_offloaded.is_empty() {
            self.not_offloaded.remove(key);
        }
        if self.shadow.remove(key).is_some() {
            if let Some(k) = Kind::of_key(key) {
                self.counts[k as usize] -= 1;
            }
            self.counters.changes += 1;
            if self.refused.remove(key).is_some() {
                self.dep_waits.remove(key);
                self.unheld_deletes.insert(*key);
            }
            if let (Key::Route(k), Some(h)) = (key, &mut self.fib_hw) {
                h.remove(k);
                self.fib_dirty.remove(k);
            }
            if let (Key::Nexthop(id) | Key::NexthopGroup(id), Some(h)) = (key, &mut self.nh_hw) {
                h.remove(id);
                self.nh_dirty.remove(id);
            }
            self.mark(*key, false);
        }
    }

    /// Replaces everything of `kinds` with a fresh dump: what the dump
    /// lacks is deleted, what differs is updated, the rest is untouched.
    pub fn reconcile(&mut self, kinds: &[Kind], fresh: Vec<Object>) {
        let fresh_keys: HashSet<Key> = fresh.iter().map(|o| o.key()).collect();
        let gone: Vec<Key> = self
            .shadow
            .keys()
            .filter(|k| Kind::of_key(k).is_some_and(|kind| kinds.contains(&kind)) && !fresh_keys.contains(k))
            .copied()
            .collect();
        for k in &gone {
            self.delete(k);
        }
        for o in fresh {
            self.upsert(o);
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Takes up to `max` pending updates, in dependency order.
    pub fn take(&mut self, max: usize) -> Vec<Taken> {
        let mut out = Vec::new();
        self.taken_since.clear();
        for r in LEAF_RANKS {
            self.drain(r, false, max, &mut out);
        }
        // Upserts, in rank order; the other deletes wait for the last pass.
        for r in 0..RANKS {
            self.drain(r, true, max, &mut out);
        }
        for r in (0..RANKS).rev() {
            self.drain(r, false, max, &mut out);
        }
        out
    }

    fn drain(&mut self, r: usize, upserts: bool, max: usize, out: &mut Vec<Taken>) {
        while out.len() < max {
            let q = if upserts { &mut self.ups[r] } else { &mut self.downs[r] };
            let Some(k) = q.pop_front() else { break };
            // One lookup for the check and the take.
            let std::collections::hash_map::Entry::Occupied(mut e) = self.pending.entry(k) else {
                continue; // taken already
            };
            let p = e.get_mut();
            if upserts {
                p.in_ups = false;
            } else {
                p.in_downs = false;
            }
            if p.upsert != upserts {
                continue; // now of the other kind, queued there too
            }
            let Pending { since, enc, .. } = e.remove();
            if !upserts {
                out.push(Taken::delete(k));
            } else if let Some(enc) = enc {
                out.push(Taken { key: k, upsert: true, enc });
            } else if let Some(s) = self.shadow.get(&k) {
                out.push(Taken { key: k, upsert: true, enc: s.enc.clone() });
            } else {
                continue;
            }
            if self.latency.is_some() {
                self.taken_since.push(since);
            }
        }
    }

    /// Records the DPU's answers to `ops`. Returns the room the batch
    /// freed, for [`Mirror::retry_refused`].
    pub fn results(&mut self, ops: &[Taken], failures: &[(usize, Status, Option<Key>)]) -> Freed {
        self.counters.sent += ops.len() as u64;
        // The DPU answered: from the kernel's event to here, for the ops
        // of the last take (a snapshot's have no start time).
        if let Some(h) = &self.latency {
            if self.taken_since.len() == ops.len() {
                let now = crate::kernel::monotonic_ns();
                for &t in self.taken_since.iter().filter(|&&t| t > 0) {
                    h.observe(now.saturating_sub(t) as f64 / 1e9);
                }
            }
            self.taken_since.clear();
        }
        let mut failed = HashSet::default();
        for &(i, status, _) in failures {
            if let Some(op) = ops.get(i) {
                let k = op.key;
                failed.insert(i);
                self.fw_answer(op, Some(status));
                if op.upsert && self.shadow.contains_key(&k) {
                    self.counters.refused += 1;
                    self.counters.refused_by[status as usize] += 1;
                    // Every refusal is in the status; the log gets the
                    // first and then every power of two.
                    if self.counters.refused.is_power_of_two() {
                        crate::log!(
                            "the DPU refused {k:?}: {status:?} ({} refusals so far)",
                            self.counters.refused
                        );
                    }
                    self.refused.insert(k, status);
                    match status {
                        Status::TableFull if self.full_queued.insert(k) => {
                            self.full_q[room(&k)].push_back(k);
                        }
                        Status::NotFound | Status::InUse => {
                            self.dep_waits.insert(k);
                        }
                        _ => {}
                    }
                    self.fib_answer(&k, false);
                }
            }
        }
        let mut freed = Freed::default();
        for (i, op) in ops.iter().enumerate() {
            if failed.contains(&i) {
                continue;
            }
            self.fw_answer(op, None);
            let k = op.key;
            match op.upsert {
                true => {
                    if self.refused.remove(&k).is_some() {
                        self.dep_waits.remove(&k);
                    }
                    if matches!(k, Key::Nexthop(_) | Key::NexthopGroup(_)) {
                        freed.deps = true;
                    }
                    if (self.fib_hw.is_some() || self.nh_hw.is_some()) && self.shadow.contains_key(&k) {
                        self.fib_answer(&k, true);
                    }
                }
                false => {
                    freed.deps = true;
                    if !self.unheld_deletes.remove(&k) {
                        freed.slots[room(&k)] += 1;
                    }
                }
            }
        }
        freed
    }

    /// The DPU's answer for a route, if it is for the route's current state
    /// (not changed again since it was sent).
    fn fib_answer(&mut self, k: &Key, held: bool) {
        if self.pending.get(k).is_some_and(|p| p.upsert) {
            return;
        }
        match (k, &mut self.fib_hw, &mut self.nh_hw) {
            (Key::Route(rk), Some(h), _) => {
                let changed = h.insert(*rk, held) != Some(held);
                if changed {
                    self.fib_dirty.insert(*rk);
                }
            }
            (Key::Nexthop(id) | Key::NexthopGroup(id), _, Some(h)) => {
                let changed = h.insert(*id, held) != Some(held);
                if changed {
                    self.nh_dirty.insert(*id);
                }
            }
            _ => {}
        }
    }

    /// Queues refused entries again, bounded by the room `freed` says
    /// the DPU has now: per table, as many TableFull refusals as deletes
    /// freed entries there, oldest first (plus `freed.any`, a sweep's
    /// room, from any table); the ones that waited for a reference, when
    /// one may have come. A retry refused again goes to the back.
    pub fn retry_refused(&mut self, freed: &Freed) {
        let mut any = freed.any;
        for r in 0..ROOMS {
            let mut budget = freed.slots[r];
            while budget > 0 || any > 0 {
                let Some(k) = self.full_q[r].pop_front() else { break };
                self.full_queued.remove(&k);
                // Stale: since refused, deleted, held, or changed again.
                if self.refused.get(&k) != Some(&Status::TableFull)
                    || !self.shadow.contains_key(&k)
                    || self.pending.contains_key(&k)
                {
                    continue;
                }
                if budget > 0 {
                    budget -= 1;
                } else {
                    any -= 1;
                }
                self.counters.retried += 1;
                self.mark_since(k, true, 0, None);
            }
        }
        if freed.deps && !self.dep_waits.is_empty() {
            let keys: Vec<Key> = self.dep_waits.drain().collect();
            for k in keys {
                if self.shadow.contains_key(&k) && !self.pending.contains_key(&k) {
                    self.counters.retried += 1;
                    self.mark_since(k, true, 0, None);
                }
            }
        }
    }

    /// Refusals waiting for room, per table (for status).
    pub fn waiting_for_room(&self) -> usize {
        self.full_queued.len()
    }

    /// Everything in the shadow as upserts, in dependency order, still
    /// encoded: a snapshot to send in chunks.
    pub fn snapshot(&self) -> Vec<Taken> {
        let mut v: Vec<Taken> =
            self.shadow.iter().map(|(k, s)| Taken { key: *k, upsert: true, enc: s.enc.clone() }).collect();
        v.sort_by_key(|t| rank(&t.key));
        v
    }

    /// Forgets pending work (a snapshot covers it).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
        for q in self.ups.iter_mut().chain(self.downs.iter_mut()) {
            q.clear();
        }
    }

    /// Objects per kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.counts[kind as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpu_wire::*;

    fn nh(id: u32, gw: u8) -> Object {
        Object::Nexthop(Nexthop {
            id,
            ifindex: 2,
            gateway: Some(Ip::V4([10, 0, 0, gw])),
            blackhole: false,
            onlink: false,
            fdb: false,
        })
    }

    fn route(n: u8, nh: u32) -> Object {
        Object::Route(Route {
            key: RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, n, 0, 0]), 16), metric: 0, ifindex: 0 },
            kind: RouteType::Unicast,
            protocol: 4,
            scope: 0,
            nexthops: RouteNexthops::Object(nh),
        })
    }

    #[test]
    fn upserts_carry_the_read_time_of_their_message() {
        let mut m = Mirror::new();
        let r = route(1, 7);
        let k = r.key();
        m.set_read_time(100);
        m.upsert(r.clone());
        assert_eq!(m.read_at(&k), Some(100));
        // The same route again (deleted and added back in the kernel's
        // past): the later read counts.
        m.set_read_time(200);
        m.upsert(r.clone());
        assert_eq!(m.read_at(&k), Some(200));
        m.delete(&k);
        assert_eq!(m.read_at(&k), None);
    }

    #[test]
    fn updates_collapse_to_the_latest_and_keep_dependency_order() {
        let mut m = Mirror::new();
        m.upsert(route(1, 5));
        m.upsert(nh(5, 1));
        m.upsert(nh(5, 2));
        m.upsert(nh(5, 3));
        assert_eq!(m.pending_len(), 2);
        let ops = m.take(100);
        assert_eq!(ops, vec![Op::Upsert(nh(5, 3)), Op::Upsert(route(1, 5))], "nexthop first, latest only");
        // Deleting both: the route goes first.
        m.delete(&Key::Nexthop(5));
        m.delete(&route(1, 5).key());
        let ops = m.take(100);
        assert_eq!(ops, vec![Op::Delete(route(1, 5).key()), Op::Delete(Key::Nexthop(5))]);
        assert!(!m.has_pending());
        // Same object again: nothing to send.
        m.upsert(nh(5, 3));
        m.take(100);
        m.upsert(nh(5, 3));
        assert!(!m.has_pending());
    }

    #[test]
    fn insert_new_takes_an_absent_key_and_leaves_a_held_one() {
        let mut m = Mirror::new();
        assert_eq!(m.insert_new(&route(1, 5)), Ok(()));
        assert_eq!(m.take(100), vec![Op::Upsert(route(1, 5))]);
        assert_eq!(m.count(Kind::Route), 1);
        // Held: the held object comes back, and nothing changes.
        let changes = m.counters.changes;
        assert_eq!(m.insert_new(&route(1, 6)), Err(Some(Box::new(route(1, 5)))));
        assert_eq!((m.get(&route(1, 5).key()), m.counters.changes), (Some(route(1, 5)), changes));
        assert!(m.take(100).is_empty());
    }

    #[test]
    fn counts_per_kind_follow_the_shadow() {
        let mut m = Mirror::new();
        let scan = |m: &Mirror, k: Kind| m.objects().filter(|(key, _)| Kind::of_key(key) == Some(k)).count();
        m.upsert(nh(1, 1));
        m.upsert(nh(1, 2)); // a change, not a new object
        m.upsert(route(1, 1));
        m.upsert(route(2, 1));
        m.delete(&route(1, 1).key());
        m.delete(&route(1, 1).key()); // already gone
        m.reconcile(&[Kind::Route], vec![route(3, 1), route(4, 1)]);
        for k in Kind::ALL {
            assert_eq!(m.count(k), scan(&m, k), "{k:?}");
        }
        assert_eq!((m.count(Kind::Nexthop), m.count(Kind::Route)), (1, 2));
    }

    #[test]
    fn reconcile_sends_only_the_difference() {
        let mut m = Mirror::new();
        m.upsert(nh(1, 1));
        m.upsert(route(1, 1));
        m.upsert(route(2, 1));
        m.take(100);
        m.reconcile(&[Kind::Route, Kind::Nexthop], vec![nh(1, 1), route(1, 1), route(3, 1)]);
        let ops = m.take(100);
        assert_eq!(ops, vec![Op::Delete(route(2, 1).key()), Op::Upsert(route(3, 1))]);
    }

    #[test]
    fn leaf_deletes_free_room_before_upserts_and_shared_deletes_wait() {
        let mut m = Mirror::new();
        m.upsert(nh(1, 1));
        m.upsert(route(1, 1));
        m.take(100);
        // A route moves from nexthop 1 to 2, nexthop 1 goes, and another
        // route replaces route 1 in a full table.
        m.upsert(nh(2, 1));
        m.upsert(route(2, 2));
        m.delete(&route(1, 1).key());
        m.delete(&Key::Nexthop(1));
        let ops = m.take(100);
        assert_eq!(
            ops,
            vec![
                Op::Delete(route(1, 1).key()),
                Op::Upsert(nh(2, 1)),
                Op::Upsert(route(2, 2)),
                Op::Delete(Key::Nexthop(1)),
            ]
        );
    }

    fn held(r: &Object, nh_id: u32) -> HeldRoute {
        HeldRoute {
            key: match r.key() {
                Key::Route(k) => k,
                _ => unreachable!(),
            },
            rtn_type: 1,
            nhs: 1,
            nh_id,
        }
    }

    #[test]
    fn route_flags_follow_the_dpu_answer_for_the_current_route() {
        let mut m = Mirror::new();
        m.track_fib_flags();
        let (a, b) = (route(1, 5), route(2, 5));
        let (ka, kb) = (held(&a, 5).key, held(&b, 5).key);
        m.upsert(nh(5, 1));
        m.upsert(a.clone());
        m.upsert(b.clone());
        // Asked before the DPU answered: nothing to say yet.
        assert!(!m.fib_asked(&held(&a, 5)));
        let ops = m.take(100);
        // The DPU holds a and refuses b.
        let ib = ops.iter().position(|o| o.key == b.key()).expect("b sent");
        m.results(&ops, &[(ib, Status::TableFull, None)]);
        assert_eq!(m.fib_flags(&ka), Some(FIB_F_OFFLOAD));
        assert_eq!(m.fib_flags(&kb), Some(FIB_F_OFFLOAD_FAILED));
        assert_eq!(m.fib_dirty.drain().count(), 2);
        // The same answer again changes nothing.
        m.retry_refused(&Freed { any: 1, ..Freed::default() });
        let ops = m.take(100);
        m.results(&ops, &[(0, Status::TableFull, None)]);
        assert!(m.fib_dirty.is_empty());
        // A retry goes through: offload.
        m.retry_refused(&Freed { any: 1, ..Freed::default() });
        let ops = m.take(100);
        m.results(&ops, &[]);
        assert_eq!(m.fib_flags(&kb), Some(FIB_F_OFFLOAD));
        assert!(m.fib_dirty.contains(&kb));
        m.fib_dirty.clear();
        // netdevsim takes a again: its flags go again, if it holds the
        // route the mirror has (same nexthop object), not another one.
        assert!(m.fib_asked(&held(&a, 5)));
        assert!(!m.fib_asked(&held(&a, 6)));
        assert_eq!(m.fib_dirty.len(), 1);
        // A changed route has no answer until the DPU gives one.
        m.upsert(route(1, 6));
        assert_eq!(m.fib_flags(&ka), None);
        let ops = m.take(100);
        m.upsert(route(1, 5)); // changed again while the first change is in flight
        m.results(&ops, &[]);
        assert_eq!(m.fib_flags(&ka), None, "an answer for an older version");
        // A deleted route is forgotten.
        m.delete(&b.key());
        assert_eq!(m.fib_flags(&kb), None);
        assert!(!m.fib_dirty.contains(&kb));
    }

    #[test]
    fn nexthop_flags_follow_the_dpu_answer_for_the_current_object() {
        let mut m = Mirror::new();
        m.track_fib_flags();
        let single =
            |id| HeldNexthop { id, shape: HeldShape::Single { ifindex: 2, blackhole: false }, fdb: false };
        let group = |id, n| HeldNexthop { id, shape: HeldShape::Group(n), fdb: false };
        let members =
            heapless::Vec::from_slice(&[GroupMember { id: 5, weight: 1 }, GroupMember { id: 6, weight: 1 }])
                .expect("two members");
        m.upsert(nh(5, 1));
        m.upsert(nh(6, 1));
        m.upsert(Object::NexthopGroup(NexthopGroup { id: 9, members, resilient_buckets: None }));
        assert!(!m.nh_asked(&single(5)), "no answer yet");
        let ops = m.take(100);
        let i6 = ops.iter().position(|o| o.key == Key::Nexthop(6)).expect("6 sent");
        m.results(&ops, &[(i6, Status::TableFull, None)]);
        assert_eq!(
            (m.nh_flags(5), m.nh_flags(6), m.nh_flags(9)),
            (Some(FIB_F_OFFLOAD), Some(0), Some(FIB_F_OFFLOAD))
        );
        assert_eq!(m.nh_dirty.drain().count(), 3);
        // Asked again: only for the object netdevsim holds as the mirror has it.
        assert!(m.nh_asked(&single(5)));
        assert!(!m.nh_asked(&HeldNexthop {
            shape: HeldShape::Single { ifindex: 3, blackhole: false },
            ..single(5)
        }));
        assert!(m.nh_asked(&group(9, 2)));
        assert!(!m.nh_asked(&group(9, 3)));
        assert!(!m.nh_asked(&HeldNexthop { shape: HeldShape::Resilient(2), ..group(9, 2) }));
        assert_eq!(m.nh_dirty.len(), 2);
        // A changed nexthop waits for the DPU again; a deleted one is forgotten.
        m.upsert(nh(5, 2));
        assert_eq!(m.nh_flags(5), None);
        m.delete(&Key::NexthopGroup(9));
        assert_eq!(m.nh_flags(9), None);
        assert!(!m.nh_dirty.contains(&9));
        m.fib_all_dirty();
        assert!(m.nh_dirty.contains(&6));
    }

    #[test]
    fn firmware_flows_get_the_dpu_answer_as_an_errno() {
        let mut m = Mirror::new();
        m.track_fw_answers(true);
        let flow = |cookie: u64| {
            Object::Flow(FlowRule {
                cookie,
                ifindex: 4,
                chain: 0,
                prio: 1,
                matches: FlowMatch::default(),
                actions: heapless::Vec::from_slice(&[FlowAction::Drop]).expect("one action"),
            })
        };
        m.upsert(flow(1 << 63));
        m.upsert(flow((1 << 63) | 1));
        m.upsert(flow(7)); // a tc filter mirrored from netlink: nobody waits
        let ops = m.take(100);
        let i = ops.iter().position(|o| o.key == Key::Flow((1 << 63) | 1)).expect("sent");
        m.results(&ops, &[(i, Status::TableFull, None)]);
        let mut a = m.take_fw_answers();
        a.sort_by_key(|x| x.cookie);
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].cookie, a[0].ifindex, a[0].err), (1 << 63, 4, 0));
        assert_eq!((a[1].cookie, a[1].err), ((1 << 63) | 1, -nix::libc::ENOSPC));
        assert!(m.take_fw_answers().is_empty());
    }

    #[test]
    fn refused_entries_are_kept_and_retried() {
        let mut m = Mirror::new();
        m.upsert(route(1, 1));
        let ops = m.take(10);
        assert!(m.results(&ops, &[(0, Status::TableFull, None)]).is_empty());
        assert_eq!(m.refused.get(&route(1, 1).key()), Some(&Status::TableFull));
        m.retry_refused(&Freed { any: 1, ..Freed::default() });
        assert_eq!(m.take(10), ops);
        assert!(m.results(&ops, &[]).is_empty());
        assert!(m.refused.is_empty());
    }

    #[test]
    fn retries_are_bounded_by_the_room_deletes_free() {
        let mut m = Mirror::new();
        let route = |metric: u32, nh: u32| match route(1, nh) {
            Object::Route(mut r) => {
                r.key.metric = metric;
                Object::Route(r)
            }
            o => o,
        };
        // 1,000 routes refused by a full table.
        for i in 0..1000 {
            m.upsert(route(i, 1));
        }
        let ops = m.take(2000);
        let fails: Vec<_> = (0..ops.len()).map(|i| (i, Status::TableFull, None)).collect();
        assert!(m.results(&ops, &fails).is_empty());
        assert_eq!(m.refused.len(), 1000);
        // Ten held routes deleted (ten never mirrored here, held by the
        // DPU as far as the test goes): ten retries, oldest first.
        let before = m.counters.retried;
        let deletes: Vec<Taken> = (5000..5010).map(|i| Taken::delete(route(i, 1).key())).collect();
        let freed = m.results(&deletes, &[]);
        assert_eq!(freed.slots.iter().sum::<u32>(), 10);
        m.retry_refused(&freed);
        assert_eq!(m.counters.retried - before, 10);
        let retried = m.take(2000);
        assert_eq!(retried.len(), 10);
        assert_eq!(retried[0].key, ops[0].key, "oldest first");
        // Refused again: to the back of the queue; nothing more retried
        // without more room.
        let fails: Vec<_> = (0..retried.len()).map(|i| (i, Status::TableFull, None)).collect();
        assert!(m.results(&retried, &fails).is_empty());
        m.retry_refused(&Freed::default());
        assert!(m.take(2000).is_empty());
        // Deleting a refused entry frees nothing.
        m.delete(&ops[500].key);
        let del = m.take(10);
        assert_eq!(del, vec![Op::Delete(ops[500].key)]);
        assert!(m.results(&del, &[]).slots.iter().all(|&n| n == 0));
        assert_eq!(m.waiting_for_room(), 1000, "999 refused, one stale");
    }
}
