//! The DPU side of the mirror: keep the agent equal to the shadow.
//!
//! One session at a time: connect, hello, snapshot of the whole shadow (the
//! agent keeps what it already has and removes the rest), then pending
//! updates in batches as they come, per-entry results recorded in the
//! mirror. Lost connection or a resync request from the agent: start over
//! with a snapshot. Stats frames are kept for the status output.

use crate::agent_link::{AgentEvent, AgentLink, LinkError};
use crate::channel::{Channel, Dial};
use crate::firmware::{FwMaps, FwState};
use crate::kernel::Shared;
use crate::mirror::Freed;
use dpu_wire::{AgentHello, Capacities, HostMsg, Key, StatEntry, StatKey};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the DPU reported, for the status output.
#[derive(Clone, Debug, Default)]
pub struct DpuState {
    pub connected: bool,
    pub hello: Option<AgentHello>,
    pub sessions: u64,
    pub snapshots: u64,
    /// (generation, unchanged, written, removed) of the last snapshot.
    pub last_snapshot: Option<(u32, u32, u32, u32)>,
    pub stats: HashMap<StatKey, StatEntry>,
    pub resync_requests: u64,
    pub last_error: Option<String>,
    pub wire_bytes: u64,
    /// The BPF firmware's counters, when it is loaded.
    pub firmware: Option<FwState>,
    /// The flow capacity last published to the firmware.
    pub firmware_capacity: Option<u32>,
    /// The agent's last heartbeat: (uptime ms, frames received, bad frames).
    pub agent_frames: Option<(u64, u64, u64)>,
    /// The agent's entries in use per table (protocol 1.3).
    pub usage: Option<Capacities>,
}

impl DpuState {
    /// Drops the counters of objects no longer mirrored: the agent reports
    /// live entries only, and without this the map would keep every
    /// deleted route's last counters.
    pub fn prune_stats(&mut self, mirrored: impl Fn(&Key) -> bool) {
        self.stats.retain(|k, _| {
            mirrored(&match *k {
                StatKey::Route(r) => Key::Route(r),
                StatKey::Nexthop(id) => Key::Nexthop(id),
                StatKey::Flow(c) => Key::Flow(c),
                StatKey::Port(i) => Key::Link(i),
            })
        });
    }
}

/// How often the stats kept for the status output are pruned.
const PRUNE: Duration = Duration::from_secs(10);

/// Largest batch taken from the mirror at once.
const BATCH: usize = 8192;

/// How long the agent has to answer the hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(3);

/// A heartbeat goes to the agent after this long without other traffic.
const HEARTBEAT: Duration = Duration::from_secs(1);

pub fn run(shared: Arc<Shared>, state: Arc<Mutex<DpuState>>, agent: Dial, fw: Option<Arc<FwMaps>>) {
    let mut generation = 0u32;
    loop {
        match session(&shared, &state, &agent, &mut generation, fw.as_deref()) {
            Ok(()) => {}
            Err(e) => {
                let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                if s.connected || s.last_error.as_deref() != Some(&e.to_string()) {
                    if let LinkError::Agent { code: dpu_wire::ErrorCode::Busy, text } = &e {
                        crate::log!("agent {agent}: refused: {text}; retrying");
                    } else {
                        crate::log!("agent {agent}: {e}");
                    }
                }
                s.connected = false;
                s.last_error = Some(e.to_string());
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn session(
    shared: &Shared,
    state: &Mutex<DpuState>,
    agent: &Dial,
    generation: &mut u32,
    fw: Option<&FwMaps>,
) -> Result<(), LinkError> {
    let st = |f: &mut dyn FnMut(&mut DpuState)| f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
    // Nothing goes to the agent before the kernel's state is known: a
    // snapshot of a half-filled shadow would remove what the DPU holds.
    {
        let m = shared.lock();
        drop(shared.wake.wait_while(m, |m| !m.ready).unwrap_or_else(|p| p.into_inner()));
    }
    let mut link: AgentLink<Channel> = AgentLink::dial(agent)?;
    // A short wait for the hello's answer: on a virtio-serial port the
    // hello is lost if no agent had the port open when it arrived (the
    // DPU still booting); the next attempt sends another.
    link.timeout = HELLO_TIMEOUT;
    let hello = link.hello(concat!("host-bridge ", env!("CARGO_PKG_VERSION")))?;
    link.timeout = Duration::from_secs(60);
    crate::log!(
        "agent connected: board {} protocol {}.{}",
        hello.board,
        hello.version.major,
        hello.version.minor
    );
    st(&mut |s| {
        s.connected = true;
        s.hello = Some(hello.clone());
        s.sessions += 1;
        s.last_error = None;
    });
    loop {
        match synced(shared, state, &mut link, &hello, generation, fw) {
            Err(LinkError::Resync(reason)) => {
                // In the middle of a batch or a snapshot: acted on at
                // once, not after waiting for results that will not come.
                crate::log!("agent asks for a resync ({reason:?}): a snapshot follows");
                st(&mut |s| s.resync_requests += 1);
            }
            other => return other,
        }
    }
}

/// A snapshot, then updates as they come, until the connection fails
/// (`Err`), or the agent asks for a resync (`Err(Resync)`).
fn synced(
    shared: &Shared,
    state: &Mutex<DpuState>,
    link: &mut AgentLink<Channel>,
    hello: &AgentHello,
    generation: &mut u32,
    fw: Option<&FwMaps>,
) -> Result<(), LinkError> {
    let st = |f: &mut dyn FnMut(&mut DpuState)| f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
    // A full snapshot: everything in the shadow.
    *generation = generation.wrapping_add(1);
    let all = {
        let mut m = shared.lock();
        m.clear_pending();
        m.snapshot()
    };
    link.send(HostMsg::SnapshotBegin { generation: *generation })?;
    let (mut freed, mut refused) = (Freed::default(), 0);
    for ops in all.chunks(BATCH) {
        let r = link.apply(ops)?;
        refused += r.failures.len();
        let mut m = shared.lock();
        let f = m.results(ops, &r.failures);
        for (a, b) in freed.slots.iter_mut().zip(f.slots) {
            *a += b;
        }
        freed.deps |= f.deps;
        shared.fib_due(&m);
        if let Some(fw) = fw {
            fw.answer(m.take_fw_answers());
        }
    }
    let (unchanged, written, removed) = link.end_snapshot(*generation)?;
    crate::log!(
        "snapshot {}: {} objects, {refused} refused; hardware {unchanged} unchanged, {written} written, {removed} removed",
        generation,
        all.len(),
    );
    let objects = all.len();
    drop(all);
    let g = *generation;
    st(&mut |s| {
        s.snapshots += 1;
        s.last_snapshot = Some((g, unchanged, written, removed));
    });
    // systemd (Type=notify): ready once the DPU holds the first snapshot.
    // Without NOTIFY_SOCKET this does nothing.
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| {
        let status = format!("first snapshot: {objects} objects, {refused} refused");
        let _ = sd_notify::notify(
            false,
            &[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)],
        );
    });
    // The sweep removed what the snapshot did not mention: entries it
    // refused for want of room go again, as many as the sweep freed.
    freed.any = removed;
    if !freed.is_empty() {
        shared.lock().retry_refused(&freed);
    }
    // Then updates as they come, and the agent's frames as they come:
    // stats go to the firmware's map within the agent's interval.
    let mut last_tx = Instant::now();
    let mut pruned = Instant::now();
    let mut last_batch: Option<Instant> = None;
    let resync: LinkError = 'updates: loop {
        // In a burst (the last batch went less than the burst pause ago), let
        // updates gather first: fewer, fuller batches, each one round
        // trip to the agent, for at most the pause of latency, and only
        // in bursts.
        if let Some(left) = last_batch.and_then(|t| shared.burst_pause().checked_sub(t.elapsed())) {
            std::thread::sleep(left);
        }
        shared.quiet();
        let ops = shared.lock().take(BATCH);
        last_batch = None;
        if !ops.is_empty() {
            let r = link.apply(&ops)?;
            last_tx = Instant::now();
            last_batch = Some(last_tx);
            let mut m = shared.lock();
            let freed = m.results(&ops, &r.failures);
            if !freed.is_empty() {
                m.retry_refused(&freed);
            }
            shared.fib_due(&m);
            if let Some(fw) = fw {
                fw.answer(m.take_fw_answers());
            }
        } else if last_tx.elapsed() >= HEARTBEAT {
            if let AgentEvent::Heartbeat { uptime_ms, rx_frames, rx_errors } = link.heartbeat()? {
                st(&mut |s| s.agent_frames = Some((uptime_ms, rx_frames, rx_errors)));
            }
            last_tx = Instant::now();
        } else {
            // Wait for a mirror change, an agent frame or the heartbeat.
            let left = HEARTBEAT.saturating_sub(last_tx.elapsed());
            let mut fds = [
                PollFd::new(shared.bell.as_fd(), PollFlags::POLLIN),
                PollFd::new(link.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(LinkError::Io(e.into())),
            }
            if fds[1].any() == Some(true) {
                link.pump()?;
            }
        }
        let wire = link.tx_bytes;
        let mut resync = None;
        for ev in link.take_events() {
            match ev {
                AgentEvent::ResyncNeeded { reason } => {
                    resync = Some(reason);
                }
                AgentEvent::Usage(u) => st(&mut |s| s.usage = Some(u)),
                AgentEvent::Stats { entries, .. } => {
                    if let Some(fw) = fw {
                        fw.write_counters(shared, &entries);
                    }
                    st(&mut |s| {
                        for e in &entries {
                            s.stats.insert(e.key, *e);
                        }
                    })
                }
                _ => {}
            }
        }
        st(&mut |s| s.wire_bytes = wire);
        if pruned.elapsed() >= PRUNE {
            pruned = Instant::now();
            let m = shared.lock();
            st(&mut |s| s.prune_stats(|k| m.contains(k)));
        }
        if let Some(fw) = fw {
            // What the DPU's flow table has left for the firmware: its
            // capacity less the flows mirrored from tc filters.
            let mirrored = shared.lock().count(crate::netlink::Kind::Filter) as u32;
            let cap = fw.capacity_for(hello.capacities.flows.saturating_sub(mirrored));
            let fs = fw.state();
            st(&mut |s| {
                if s.firmware_capacity != Some(cap) {
                    fw.set_capacity(cap);
                    s.firmware_capacity = Some(cap);
                }
                s.firmware = Some(fs);
            });
        }
        if let Some(reason) = resync {
            break 'updates LinkError::Resync(reason);
        }
    };
    Err(resync)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dpu_wire::{Ip, Prefix, RouteKey};

    fn entry(key: StatKey) -> StatEntry {
        StatEntry { key, packets: 1, bytes: 100, tx_packets: 0, tx_bytes: 0, idle_ms: 0 }
    }

    #[test]
    fn prune_keeps_the_counters_of_mirrored_objects_only() {
        let live = RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, 0, 0, 0]), 8), metric: 0, ifindex: 0 };
        let gone =
            RouteKey { table: 254, dst: Prefix::new(Ip::V4([10, 1, 0, 0]), 16), metric: 0, ifindex: 0 };
        let mut s = DpuState::default();
        for k in [
            StatKey::Route(live),
            StatKey::Route(gone),
            StatKey::Port(2),
            StatKey::Flow(7),
            StatKey::Nexthop(3),
        ] {
            s.stats.insert(k, entry(k));
        }
        s.prune_stats(|k| {
            matches!(k, Key::Route(r) if *r == live) || *k == Key::Link(2) || *k == Key::Nexthop(3)
        });
        assert_eq!(s.stats.len(), 3);
        assert!(s.stats.contains_key(&StatKey::Route(live)));
        assert!(s.stats.contains_key(&StatKey::Port(2)));
        assert!(s.stats.contains_key(&StatKey::Nexthop(3)));
    }
}
