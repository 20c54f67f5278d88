//! What the mirror takes from the taps: the deletes netlink does not
//! announce, and the loss of tap records.
//!
//! The taps run on their own thread ([`start`]); what matters to the
//! mirror goes to the netlink thread (`kernel::run`) through a bounded
//! channel, so that one thread applies netlink events, tap events and
//! resyncs in one order. A full channel blocks the tap thread, its ring
//! buffer fills, and the kernel counts drops: loss is always seen, and
//! repaired by a resync.

use super::record::{Attr, Event, FdbEvent, FibEvent, NhEvent, Record};
use super::{current_netns, Counts, TapState, Taps};
use crate::kernel::Shared;
use dpu_wire::{BridgeAgeing, EcmpHash, Family, FdbKey, Ip, Mac, Object, PortStp, Prefix, RouteKey};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// One message from the taps to the mirror. `ts_ns` is the kernel's
/// CLOCK_MONOTONIC at the event (bpf_ktime_get_ns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TapMsg {
    /// The kernel told its drivers an IPv4 route is gone (and no alias of
    /// the same prefix took over): whether netlink said so or not.
    RouteGone { key: RouteKey, ts_ns: u64 },
    /// A nexthop object is gone (a link's flush removes them unannounced).
    NexthopGone { id: u32, ts_ns: u64 },
    /// A bridge FDB entry left a port: deleted, or moved to another port
    /// (a station move, which netlink announces only as the new entry).
    FdbGone { key: FdbKey, ts_ns: u64 },
    /// A setting netlink has no event for: the ECMP hash policy and fields
    /// (a sysctl), a bridge's ageing time, a port's STP state.
    Setting { object: Box<Object>, ts_ns: u64 },
    /// `n` records were lost since the last report: resync.
    Lost(u64),
}

/// What the status shows of the taps.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TapsStatus {
    pub netns_inum: u32,
    pub ring_bytes: usize,
    pub states: Vec<TapState>,
    pub counts: Counts,
    /// Per record kind, by name.
    pub per_kind: Vec<(&'static str, Counts)>,
    /// Records that did not decode (skipped).
    pub undecodable: u64,
}

/// The mirror's view of one record, if it has one.
pub fn translate(r: &Record) -> Option<TapMsg> {
    let ts_ns = r.meta.ts_ns;
    // A change a driver vetoed did not happen.
    if r.meta.ret.is_some_and(|e| e != 0) {
        return None;
    }
    match &r.event {
        Event::Fib(e) if e.event == FibEvent::Del => {
            let std::net::IpAddr::V4(dst) = e.dst else { return None };
            // Routes that differ only by TOS share the mirror's key (see
            // RouteKey); netlink announces the user's deletes of those.
            if e.tos != 0 {
                return None;
            }
            let key = RouteKey {
                table: e.table,
                dst: Prefix::new(Ip::from(dst).masked(e.dst_len), e.dst_len),
                metric: e.metric,
                ifindex: 0,
            };
            Some(TapMsg::RouteGone { key, ts_ns })
        }
        Event::Nexthop(n) if n.event == NhEvent::Del => Some(TapMsg::NexthopGone { id: n.id, ts_ns }),
        Event::MpathHash(h) => {
            let family = if h.v6 { Family::V6 } else { Family::V4 };
            let fields = h.fields & EcmpHash::KNOWN_FIELDS;
            Some(TapMsg::Setting {
                object: Box::new(Object::EcmpHash(EcmpHash { family, policy: h.policy, fields })),
                ts_ns,
            })
        }
        Event::PortAttr(a) => match a.attr {
            Attr::StpState(state) => Some(TapMsg::Setting {
                object: Box::new(Object::PortStp(PortStp { ifindex: a.ifindex, state })),
                ts_ns,
            }),
            Attr::AgeingTime(t) => Some(TapMsg::Setting {
                object: Box::new(Object::BridgeAgeing(BridgeAgeing {
                    ifindex: a.ifindex,
                    ageing_cs: t.min(u32::MAX as u64) as u32,
                })),
                ts_ns,
            }),
            _ => None,
        },
        Event::Fdb(f) if matches!(f.event, FdbEvent::DelToDevice | FdbEvent::TpDelete) => {
            Some(TapMsg::FdbGone { key: FdbKey { ifindex: f.ifindex, mac: Mac(f.mac), vid: f.vid }, ts_ns })
        }
        _ => None,
    }
}

const KIND_NAMES: [&str; 13] = [
    "",
    "fib4",
    "fib6",
    "fib_rule",
    "nexthop",
    "nexthop_bucket",
    "fdb",
    "port_obj",
    "port_attr",
    "netdev",
    "neigh",
    "probe_time",
    "mpath_hash",
];

/// The running taps, as the mirror sees them.
pub struct Feed {
    /// Rung after each message and when the taps stop: the netlink thread
    /// polls its bell beside its socket.
    pub chan: crate::kernel::Belled<TapMsg>,
    /// The FIB and nexthop taps are attached: the mirror can do without
    /// re-dumps after a link goes down.
    pub routes_tapped: bool,
}

/// Depth of the channel to the netlink thread: about one link's worth of
/// routes; past it the ring buffer takes the rest, then drops are counted.
pub const CHANNEL: usize = 1 << 16;

/// Loads the taps on a thread of their own, in the netns of the calling
/// thread, and returns once they are attached (or failed to load). Their
/// status goes into `shared.taps`.
pub fn start(shared: Arc<Shared>, ring_bytes: usize) -> Result<Feed, String> {
    let inum = current_netns().map_err(|e| format!("/proc/thread-self/ns/net: {e}"))?;
    let (tx, chan) = crate::kernel::belled(CHANNEL).map_err(|e| format!("eventfd: {e}"))?;
    let (ready_tx, ready) = mpsc::channel::<Result<Vec<TapState>, String>>();
    let st = shared;
    std::thread::Builder::new()
        .name("taps".into())
        .spawn(move || {
            // Threads start in the process's netns: the caller's, which
            // entered --netns before calling.
            let taps = match Taps::load(inum, ring_bytes) {
                Ok(t) => t,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            *st.taps() = Some(TapsStatus {
                netns_inum: inum,
                ring_bytes: taps.ring_bytes,
                states: taps.states.clone(),
                ..Default::default()
            });
            let _ = ready_tx.send(Ok(taps.states.clone()));
            let (mut drops, undecodable) = (0u64, std::cell::Cell::new(0u64));
            let r = taps.run(
                Duration::from_millis(100),
                |rec| {
                    match rec {
                        Ok(r) => {
                            if let Some(m) = translate(&r) {
                                // Blocks while the netlink thread is behind;
                                // an error means it is gone: stop.
                                return tx.send_blocking(m);
                            }
                        }
                        Err(e) => {
                            undecodable.set(undecodable.get() + 1);
                            if undecodable.get().is_power_of_two() {
                                crate::log!("taps: undecodable record ({e}; {} so far)", undecodable.get());
                            }
                        }
                    }
                    true
                },
                |t| {
                    let (per, all) = t.counts();
                    if let Some(s) = st.taps().as_mut() {
                        s.counts = all;
                        s.undecodable = undecodable.get();
                        s.per_kind = per
                            .iter()
                            .enumerate()
                            .skip(1)
                            .map(|(i, c)| (KIND_NAMES.get(i).copied().unwrap_or("?"), *c))
                            .collect();
                    }
                    if all.drops != drops {
                        let lost = all.drops - drops;
                        drops = all.drops;
                        return tx.send_blocking(TapMsg::Lost(lost));
                    }
                    true
                },
            );
            if let Err(e) = r {
                crate::log!("taps stopped: {e}");
            }
        })
        .map_err(|e| format!("taps thread: {e}"))?;
    let states = ready.recv().map_err(|_| "taps thread ended".to_string())??;
    let on = |n: &str| states.iter().any(|s| s.name == n && s.attached.is_some());
    Ok(Feed { chan, routes_tapped: on("fib") && on("nexthop") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notifier::record::{FibEntry, Meta};

    fn fib(event: FibEvent, tos: u8, ret: Option<i32>) -> Record {
        Record {
            meta: Meta { ts_ns: 7, ret, tracepoint: false, truncated: false },
            event: Event::Fib(FibEntry {
                event,
                table: 254,
                dst: "10.1.2.0".parse().unwrap(),
                dst_len: 24,
                src: None,
                tos,
                rtype: 1,
                protocol: 3,
                scope: 0,
                metric: 20,
                nh_id: None,
                nexthops: vec![],
                paths: 1,
            }),
        }
    }

    #[test]
    fn only_deletes_that_happened_reach_the_mirror() {
        let key =
            RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, 1, 2, 0]), 24), metric: 20, ifindex: 0 };
        assert_eq!(translate(&fib(FibEvent::Del, 0, Some(0))), Some(TapMsg::RouteGone { key, ts_ns: 7 }));
        assert_eq!(translate(&fib(FibEvent::Replace, 0, Some(0))), None);
        // Vetoed by a driver: nothing happened.
        assert_eq!(translate(&fib(FibEvent::Del, 0, Some(-95))), None);
        // A TOS route: its key is shared, netlink's delete is the one used.
        assert_eq!(translate(&fib(FibEvent::Del, 0x10, Some(0))), None);
    }
}
