//! `--metrics ADDR`: the mirror, the DPU session and the agent's own
//! counters in the OpenMetrics text format (Prometheus scrapes it), at
//! `http://ADDR/metrics`.
//!
//! Everything but the latency histogram is read at scrape time from what
//! host-bridge keeps anyway (the mirror's counters and per-kind counts, the
//! DPU state, the agent's last heartbeat and table use), under one short
//! hold of each lock: a scrape costs the same with ten routes or a million
//! (only the refusals are walked, to count them per kind).
//!
//! ```text
//! host_bridge_events_total, _changes_total, _resyncs_total, _overflows_total,
//!   _parse_errors_total, _dump_errors_total, _redumps_total,
//!   _refusals_total{reason}, _not_offloaded_total, _retries_total
//! host_bridge_objects{kind}, _objects_held{kind}, _objects_refused{kind},
//!   _objects_not_offloaded, _qualified_routes, _pending
//! host_bridge_dpu_connected, _dpu_sessions_total, _dpu_snapshots_total,
//!   _dpu_resync_requests_total, _wire_bytes_total
//! host_bridge_event_to_ack_seconds (histogram): the kernel's event (its
//!   time in the event ring; its read, when the socket is read itself)
//!   to the DPU's answer
//! dpu_agent_uptime_seconds, dpu_agent_rx_frames_total,
//!   dpu_agent_rx_errors_total, dpu_table_entries{table},
//!   dpu_table_capacity{table}
//! ```

use crate::dpu::DpuState;
use crate::kernel::Shared;
use crate::netlink::Kind;
use dpu_wire::{Capacities, Status};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The state a scrape reads.
struct State {
    shared: Arc<Shared>,
    dpu: Arc<Mutex<DpuState>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host-bridge state")
    }
}

const KINDS: [(Kind, &str); 9] = [
    (Kind::Link, "link"),
    (Kind::Address, "address"),
    (Kind::Route, "route"),
    (Kind::Nexthop, "nexthop"),
    (Kind::Neighbour, "neighbour"),
    (Kind::Fdb, "fdb"),
    (Kind::Vlan, "vlan"),
    (Kind::Filter, "flow"),
    (Kind::Setting, "setting"),
];

const REASONS: [(Status, &str); 5] = [
    (Status::TableFull, "table_full"),
    (Status::Unsupported, "unsupported"),
    (Status::Invalid, "invalid"),
    (Status::NotFound, "not_found"),
    (Status::InUse, "in_use"),
];

fn tables(c: &Capacities) -> [(&'static str, u32); 10] {
    [
        ("port", c.links),
        ("addr", c.addresses),
        ("route4", c.routes_v4),
        ("route6", c.routes_v6),
        ("nexthop", c.nexthops),
        ("group", c.nexthop_groups),
        ("neigh", c.neighbours),
        ("fdb", c.fdb),
        ("vlan", c.vlans),
        ("flow", c.flows),
    ]
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One metric with a label, one sample per (label value, value).
fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    counter: bool,
    samples: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let t = if counter { ConstCounter::new(0u64).metric_type() } else { ConstGauge::new(0i64).metric_type() };
    let mut d = e.encode_descriptor(name, help, None, t)?;
    for &(v, n) in samples {
        let labels = [(label, v)];
        let labels = labels.as_slice();
        let m = d.encode_family(&labels)?;
        if counter {
            ConstCounter::new(n).encode(m)?;
        } else {
            ConstGauge::new(n as i64).encode(m)?;
        }
    }
    Ok(())
}

impl Collector for State {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Copied under short holds of the locks, encoded after.
        let (c, counts, refused_kind, pending, not_offloaded, qualified, waiting) = {
            let m = self.shared.lock();
            let counts = KINDS.map(|(k, _)| m.count(k) as u64);
            let mut refused = [0u64; 9];
            for k in m.refused.keys() {
                if let Some(i) = Kind::of_key(k).and_then(|kind| KINDS.iter().position(|(x, _)| *x == kind)) {
                    refused[i] += 1;
                }
            }
            (
                m.counters,
                counts,
                refused,
                m.pending_len(),
                m.not_offloaded.len(),
                m.quals.len(),
                m.waiting_for_room(),
            )
        };
        let (connected, sessions, snapshots, resyncs, wire, frames, usage, caps) = {
            let d = self.dpu.lock().unwrap_or_else(|p| p.into_inner());
            (
                d.connected,
                d.sessions,
                d.snapshots,
                d.resync_requests,
                d.wire_bytes,
                d.agent_frames,
                d.usage,
                d.hello.as_ref().map(|h| h.capacities),
            )
        };
        let e = &mut e;
        counter(e, "host_bridge_events", "Kernel messages read (netlink)", c.events)?;
        counter(e, "host_bridge_changes", "Changes to the mirror", c.changes)?;
        counter(e, "host_bridge_resyncs", "Dumps reconciled with the mirror", c.resyncs)?;
        counter(
            e,
            "host_bridge_overflows",
            "Kernel events lost (netlink receive buffer or event ring full), each answered by a resync",
            c.overflows,
        )?;
        counter(e, "host_bridge_parse_errors", "Kernel messages that did not parse", c.parse_errors)?;
        counter(e, "host_bridge_dump_errors", "Dumps that failed and were tried again", c.dump_errors)?;
        counter(e, "host_bridge_redumps", "Re-dumps for deletes the kernel does not announce", c.redumps)?;
        counter(e, "host_bridge_retries", "Refused entries sent again", c.retried)?;
        counter(
            e,
            "host_bridge_not_offloaded",
            "Objects found not representable on the DPU",
            c.not_offloaded,
        )?;
        let by: Vec<(&str, u64)> = REASONS.iter().map(|&(s, n)| (n, c.refused_by[s as usize])).collect();
        family(e, "host_bridge_refusals", "Updates the DPU refused, by its answer", "reason", true, &by)?;
        let objs: Vec<(&str, u64)> = KINDS.iter().zip(counts).map(|((_, n), v)| (*n, v)).collect();
        family(e, "host_bridge_objects", "Objects mirrored, per kind", "kind", false, &objs)?;
        let refused: Vec<(&str, u64)> = KINDS.iter().zip(refused_kind).map(|((_, n), v)| (*n, v)).collect();
        family(
            e,
            "host_bridge_objects_refused",
            "Mirrored objects the DPU refused",
            "kind",
            false,
            &refused,
        )?;
        let held: Vec<(&str, u64)> = KINDS
            .iter()
            .zip(counts.iter().zip(refused_kind))
            .map(|((_, n), (c, r))| (*n, c.saturating_sub(r)))
            .collect();
        family(
            e,
            "host_bridge_objects_held",
            "Mirrored objects the DPU holds (sent and not refused)",
            "kind",
            false,
            &held,
        )?;
        gauge(e, "host_bridge_objects_not_offloaded", "Objects kept off the DPU", not_offloaded as i64)?;
        gauge(e, "host_bridge_qualified_routes", "TOS or source routes (prefix trapped)", qualified as i64)?;
        gauge(e, "host_bridge_waiting_for_room", "Refusals waiting for room on the DPU", waiting as i64)?;
        gauge(e, "host_bridge_pending", "Updates not yet sent to the DPU", pending as i64)?;
        gauge(e, "host_bridge_dpu_connected", "1 while a session with the agent is up", connected as i64)?;
        counter(e, "host_bridge_dpu_sessions", "Sessions with the agent", sessions)?;
        counter(e, "host_bridge_dpu_snapshots", "Snapshots sent to the agent", snapshots)?;
        counter(e, "host_bridge_dpu_resync_requests", "Resyncs the agent asked for", resyncs)?;
        counter(e, "host_bridge_wire_bytes", "Bytes sent to the agent", wire)?;
        if let Some((uptime_ms, rx, errs)) = frames {
            gauge(e, "dpu_agent_uptime_seconds", "The agent's uptime", (uptime_ms / 1000) as i64)?;
            counter(e, "dpu_agent_rx_frames", "Frames the agent received", rx)?;
            counter(e, "dpu_agent_rx_errors", "Frames the agent dropped (CRC, size, decoding)", errs)?;
        }
        if let Some(u) = usage {
            let t = tables(&u);
            family(
                e,
                "dpu_table_entries",
                "Hardware entries in use, per table",
                "table",
                false,
                &t.map(|(n, v)| (n, v as u64)),
            )?;
        }
        if let Some(c) = caps {
            let t = tables(&c);
            family(
                e,
                "dpu_table_capacity",
                "Hardware entries per table",
                "table",
                false,
                &t.map(|(n, v)| (n, v as u64)),
            )?;
        }
        Ok(())
    }
}

/// The latency histogram's buckets: 100 µs to about 105 s, doubling, so
/// that the burst pauses' few milliseconds (kernel.rs, dpu.rs) show.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(1e-4, 2.0, 21))
}

/// The registry `serve` answers from (public for tests and the benchmark).
pub fn registry(shared: Arc<Shared>, dpu: Arc<Mutex<DpuState>>) -> Registry {
    let mut r = Registry::default();
    let h = latency();
    shared.lock().latency = Some(h.clone());
    r.register(
        "host_bridge_event_to_ack_seconds",
        "From a kernel event (as the event ring timed it, or its read from the socket) to the DPU's answer for it",
        h,
    );
    r.register_collector(Box::new(State { shared, dpu }));
    r
}

/// The text a scrape gets.
pub fn render(r: &Registry) -> String {
    let mut s = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut s, r);
    s
}

/// Binds `addr` and serves `GET /metrics` on a thread of its own.
/// Serves scrapes on `l`, bound by the caller: `run --netns` binds it
/// before entering the mirrored netns, so that the metrics are reached
/// from where the daemon was started.
pub fn serve(l: TcpListener, shared: Arc<Shared>, dpu: Arc<Mutex<DpuState>>) -> io::Result<SocketAddr> {
    let bound = l.local_addr()?;
    let r = registry(shared, dpu);
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for c in l.incoming().flatten() {
            if let Err(e) = answer(c, &r) {
                crate::debug!("metrics client: {e}");
            }
        }
    })?;
    Ok(bound)
}

/// One HTTP/1.1 exchange, then close: a scrape per connection.
fn answer(mut c: TcpStream, r: &Registry) -> io::Result<()> {
    c.set_read_timeout(Some(Duration::from_secs(2)))?;
    c.set_write_timeout(Some(Duration::from_secs(10)))?;
    // The request head, bounded; only its first line matters.
    let mut head = Vec::with_capacity(512);
    let mut b = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = c.read(&mut b)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&b[..n]);
    }
    let line = head.split(|&x| x == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&x| x == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            let t = std::time::Instant::now();
            let body = render(r);
            crate::debug!("metrics: {} bytes rendered in {} us", body.len(), t.elapsed().as_micros());
            ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", body)
        }
        (b"GET", _) => ("404 Not Found", "text/plain", "only /metrics is here\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics\n".to_string()),
    };
    write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    c.write_all(body.as_bytes())?;
    c.flush()
}
