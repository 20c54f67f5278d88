//! The session layer: frames in, engine calls, frames out.
//!
//! [`Agent`] owns the receive buffer, the transmit buffers and the engine,
//! all sized at start-up. It never allocates afterwards, whatever bytes
//! arrive: `on_bytes` feeds the deframer, decodes each checked frame one
//! item at a time, applies updates and encodes the answers, handing every
//! encoded frame to the caller's `out`.

use crate::engine::{Engine, SweepReport};
use crate::{board, info, warn};
use dpu_hw::Hal;
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use std::time::Instant;

/// Most updates one frame can carry: every encoded update takes at least
/// two bytes.
pub const MAX_OPS_PER_FRAME: usize = MAX_FRAME / 2;

/// The most output one input frame can produce, encoded: its batch's
/// failures (a failure is its update's key plus at most five bytes, and an
/// update takes at least two bytes, so failures take at most 3.5 times the
/// frame), split over result frames, plus one small message (resync,
/// error). Transports feed a frame only when this much room is free, so
/// no output is ever dropped (`agent/tests/flow_control.rs` checks the
/// bound against the worst frames).
pub const MAX_OUT_PER_FRAME: usize = 4 * MAX_ENCODED_FRAME + 256;

/// The most output one [`Agent::pump`] step can produce, encoded: one stat
/// entry per slot visited (at most [`MAX_STAT_ENTRY`] bytes each), split
/// over frames, plus the closing frame.
pub const MAX_OUT_PER_PUMP: usize =
    Agent::<dpu_hw::MmioHal>::STATS_BUDGET as usize * MAX_STAT_ENTRY * 2 + 2 * MAX_ENCODED_FRAME;

/// Upper bound of one encoded [`StatEntry`] item, with margin: an IPv6
/// route key (tags, table, 16-byte address, length, metric, ifindex: 34
/// bytes), five
/// varint counters (45) and the item's framing.
pub const MAX_STAT_ENTRY: usize = 96;

/// What the transport should do after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// The peer is incompatible: close the connection.
    Close,
}

/// Session counters, reported in heartbeats and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionCounters {
    pub frames: u64,
    pub frame_errors: u64,
    pub ops: u64,
    pub ok: u64,
    pub refused: u64,
    pub resync_requests: u64,
    pub sessions: u64,
}

/// A stats pass in progress.
#[derive(Clone, Copy)]
struct StatsJob {
    all: bool,
    /// Some frame of this pass has been sent.
    started: bool,
}

struct Tx {
    builder: FrameBuilder<Box<[u8]>>,
    enc: Box<[u8]>,
    seq: u32,
}

impl Tx {
    fn start(&mut self, msg: AgentMsg) {
        let h = AgentHeader { seq: self.seq, msg };
        // A bare header always fits an empty frame.
        let _ = self.builder.start(&h);
    }

    fn send(&mut self, out: &mut dyn FnMut(&[u8])) {
        if let Ok(n) = self.builder.finish(&mut self.enc) {
            out(&self.enc[..n]);
            self.seq = self.seq.wrapping_add(1);
        }
    }

    fn message(&mut self, msg: AgentMsg, out: &mut dyn FnMut(&[u8])) {
        self.start(msg);
        self.send(out);
    }
}

/// One agent: engine plus session state.
pub struct Agent<H: Hal> {
    pub engine: Engine<H>,
    deframer: Deframer<Box<[u8]>>,
    tx: Tx,
    failures: Vec<Failure>,
    hello: bool,
    expect_seq: u32,
    snapshot: Option<u32>,
    resync_pending: bool,
    started: Instant,
    stats_interval_ms: u32,
    last_stats: Instant,
    stats_job: Option<StatsJob>,
    pub counters: SessionCounters,
}

impl<H: Hal> Agent<H> {
    pub fn new(engine: Engine<H>, stats_interval_ms: u32) -> Self {
        Agent {
            engine,
            deframer: Deframer::new(vec![0u8; max_encoded_len(MAX_FRAME)].into_boxed_slice()),
            tx: Tx {
                builder: FrameBuilder::new(vec![0u8; MAX_FRAME].into_boxed_slice()),
                enc: vec![0u8; max_encoded_len(MAX_FRAME)].into_boxed_slice(),
                seq: 0,
            },
            failures: Vec::with_capacity(MAX_OPS_PER_FRAME),
            hello: false,
            expect_seq: 0,
            snapshot: None,
            resync_pending: false,
            started: Instant::now(),
            stats_interval_ms,
            last_stats: Instant::now(),
            stats_job: None,
            counters: SessionCounters::default(),
        }
    }

    /// A new connection: forget the previous session, keep the hardware.
    pub fn on_connect(&mut self) {
        self.deframer.reset();
        self.restart_session();
    }

    /// A new session: state back to "before hello", an unfinished snapshot
    /// abandoned.
    fn restart_session(&mut self) {
        self.end_session();
        self.expect_seq = 0;
        self.resync_pending = false;
        self.tx.seq = 0;
        self.stats_job = None;
        self.engine.restart_stats();
        self.counters.sessions += 1;
    }

    /// The session is over: an unfinished snapshot is abandoned (nothing
    /// is swept, the hardware stays as it is until the next snapshot).
    fn end_session(&mut self) {
        if self.snapshot.take().is_some() {
            warn!("session ended inside a snapshot; hardware left as it is until the next one");
        }
        if self.engine.in_snapshot() {
            self.engine.abandon_snapshot();
        }
        self.hello = false;
    }

    /// The connection is gone.
    pub fn on_disconnect(&mut self) {
        self.end_session();
        info!("hardware left as it is; waiting for the next session");
    }

    /// Handles received bytes.
    pub fn on_bytes(&mut self, data: &[u8], out: &mut dyn FnMut(&[u8])) -> Control {
        let mut control = Control::Continue;
        let Self { deframer, .. } = self;
        // The deframer hands out payloads borrowed from its own buffer, so
        // it is moved out for the duration of the call.
        let mut payloads = core::mem::replace(deframer, Deframer::new(Box::new([]) as Box<[u8]>));
        payloads.push(data, |frame| {
            if control == Control::Close {
                return;
            }
            control = match frame {
                Ok(p) => self.on_frame(p, out),
                Err(e) => {
                    self.on_frame_error(e, out);
                    Control::Continue
                }
            };
        });
        self.deframer = payloads;
        control
    }

    fn request_resync(&mut self, reason: ResyncReason, out: &mut dyn FnMut(&[u8])) {
        if self.hello && !self.resync_pending {
            self.resync_pending = true;
            self.counters.resync_requests += 1;
            warn!("asking the host for a resync: {reason:?}");
            self.tx.message(AgentMsg::ResyncNeeded { reason }, out);
        }
    }

    fn on_frame_error(&mut self, e: FrameError, out: &mut dyn FnMut(&[u8])) {
        self.counters.frame_errors += 1;
        if self.counters.frame_errors.is_power_of_two() {
            warn!("dropped a frame: {e} ({} dropped so far)", self.counters.frame_errors);
        }
        self.request_resync(ResyncReason::SequenceGap, out);
    }

    fn on_frame(&mut self, payload: &[u8], out: &mut dyn FnMut(&[u8])) -> Control {
        self.counters.frames += 1;
        let mut r = FrameReader::new(payload);
        let header: HostHeader = match r.header() {
            Ok(h) => h,
            Err(_) => {
                self.counters.frame_errors += 1;
                self.request_resync(ResyncReason::Undecodable, out);
                return Control::Continue;
            }
        };
        if let HostMsg::Hello(h) = &header.msg {
            return self.on_hello(h, out);
        }
        if !self.hello {
            self.error(ErrorCode::NoHello, format_args!("expected hello first"), out);
            return Control::Continue;
        }
        if header.seq != self.expect_seq {
            warn!("sequence gap: expected {}, got {}", self.expect_seq, header.seq);
            self.request_resync(ResyncReason::SequenceGap, out);
        }
        self.expect_seq = header.seq.wrapping_add(1);
        match header.msg {
            HostMsg::Hello(_) => {}
            HostMsg::SnapshotBegin { generation } => {
                info!("snapshot {generation} begins");
                self.snapshot = Some(generation);
                self.resync_pending = false;
                self.engine.begin_snapshot();
            }
            HostMsg::SnapshotEnd { generation } => {
                if self.snapshot != Some(generation) {
                    self.error(
                        ErrorCode::BadSnapshot,
                        format_args!("snapshot end {generation} without its begin"),
                        out,
                    );
                } else {
                    self.snapshot = None;
                    let SweepReport { unchanged, written, removed } = self.engine.end_snapshot();
                    info!("snapshot {generation} done: {unchanged} unchanged, {written} written, {removed} removed");
                    self.tx.message(AgentMsg::SnapshotDone { generation, unchanged, written, removed }, out);
                }
            }
            HostMsg::Batch => self.on_batch(header.seq, &mut r, out),
            HostMsg::Heartbeat { .. } => {
                self.tx.message(AgentMsg::Usage(self.engine.usage()), out);
                let msg = AgentMsg::Heartbeat {
                    uptime_ms: self.started.elapsed().as_millis() as u64,
                    rx_frames: self.counters.frames,
                    rx_errors: self.counters.frame_errors,
                };
                self.tx.message(msg, out);
            }
            HostMsg::StatsRequest => self.request_stats(true),
        }
        Control::Continue
    }

    fn error(&mut self, code: ErrorCode, text: std::fmt::Arguments<'_>, out: &mut dyn FnMut(&[u8])) {
        let mut s: heapless::String<96> = heapless::String::new();
        let _ = core::fmt::write(&mut s, text);
        warn!("error to host: {code:?}: {s}");
        self.tx.message(AgentMsg::Error { code, text: s }, out);
    }

    fn on_hello(&mut self, h: &HostHello, out: &mut dyn FnMut(&[u8])) -> Control {
        if h.version.major != VERSION.major {
            crate::error!(
                "host {:?} speaks protocol {}.{}, this agent {}.{}: refusing the session",
                h.name.as_str(),
                h.version.major,
                h.version.minor,
                VERSION.major,
                VERSION.minor
            );
            self.error(
                ErrorCode::VersionMismatch,
                format_args!(
                    "host protocol {}.{}, agent {}.{}",
                    h.version.major, h.version.minor, VERSION.major, VERSION.minor
                ),
                out,
            );
            return Control::Close;
        }
        if self.hello {
            // A new hello on a live stream (a host restarted behind a
            // channel that stayed up, as virtio-serial between two VMs
            // does): a new session.
            info!("hello on a live channel: a new host session");
            self.restart_session();
        }
        info!("host {:?} protocol {}.{} connected", h.name.as_str(), h.version.major, h.version.minor);
        let mut name: heapless::String<32> = heapless::String::new();
        let _ = name.push_str(board::NAME);
        let hello = AgentHello {
            version: VERSION,
            board: name,
            capabilities: board::capabilities(),
            capacities: self.engine.capacities(),
            max_frame: MAX_FRAME as u32,
            stats_interval_ms: self.stats_interval_ms,
        };
        self.tx.message(AgentMsg::Hello(hello), out);
        self.hello = true;
        self.expect_seq = 1;
        Control::Continue
    }

    fn on_batch(&mut self, seq: u32, r: &mut FrameReader<'_>, out: &mut dyn FnMut(&[u8])) {
        self.failures.clear();
        let mut ok: u16 = 0;
        let mut index: u16 = 0;
        while let Some(item) = r.next_item::<Op>() {
            self.counters.ops += 1;
            let (status, key) = match item {
                Ok(op) => (self.engine.apply(&op), Some(op.key())),
                Err(_) => (Status::Invalid, None),
            };
            if status == Status::Ok {
                ok = ok.saturating_add(1);
                self.counters.ok += 1;
            } else {
                self.counters.refused += 1;
                if self.failures.len() < self.failures.capacity() {
                    self.failures.push(Failure { index, status, key });
                }
                if self.counters.refused.is_power_of_two() || key.is_none() {
                    warn!("refused update {index} of batch {seq}: {status:?} {key:?}");
                }
            }
            if key.is_none() {
                // The rest of the frame cannot be delimited.
                self.request_resync(ResyncReason::Undecodable, out);
                break;
            }
            index = index.wrapping_add(1);
        }
        self.send_results(seq, ok, out);
    }

    /// Sends the failures of a batch, in as many frames as they need.
    fn send_results(&mut self, ack: u32, ok: u16, out: &mut dyn FnMut(&[u8])) {
        let mut next = 0;
        loop {
            // First pass: how many fit, assuming more follow.
            self.tx.start(AgentMsg::Results { ack, ok, more: true });
            let mut fit = 0;
            while next + fit < self.failures.len() && self.tx.builder.push(&self.failures[next + fit]).is_ok()
            {
                fit += 1;
            }
            let last = next + fit >= self.failures.len();
            if last {
                self.tx.start(AgentMsg::Results { ack, ok, more: false });
                for f in &self.failures[next..next + fit] {
                    let _ = self.tx.builder.push(f);
                }
            }
            self.tx.send(out);
            next += fit;
            if last || fit == 0 {
                return;
            }
        }
    }

    /// Slots visited per [`Agent::pump`] call: bounds the output of one
    /// call to a few frames ([`MAX_OUT_PER_PUMP`]).
    pub const STATS_BUDGET: u32 = 1024;

    /// Queues a stats pass: changed counters, or all with `all`. A request
    /// for all restarts a periodic pass in progress from the beginning, so
    /// that its answer covers every object.
    pub fn request_stats(&mut self, all: bool) {
        if all || self.stats_job.is_none() {
            self.engine.restart_stats();
            self.stats_job = Some(StatsJob { all, started: false });
        }
        self.last_stats = Instant::now();
    }

    /// Runs a bounded step of pending work (a stats pass); returns true if
    /// more remains. Transports call it until it returns false, writing
    /// the output in between, so the output buffer stays bounded.
    pub fn pump(&mut self, out: &mut dyn FnMut(&[u8])) -> bool {
        let Some(mut job) = self.stats_job.take() else {
            return false;
        };
        let Self { engine, tx, .. } = self;
        let mut open = false;
        let done = engine.collect_stats(job.all, Self::STATS_BUDGET, |e| {
            if !open {
                tx.start(AgentMsg::Stats { more: true, requested: job.all });
                open = true;
            }
            if tx.builder.push(&e).is_err() {
                tx.send(out);
                tx.start(AgentMsg::Stats { more: true, requested: job.all });
                let _ = tx.builder.push(&e);
            }
        });
        if open {
            tx.send(out);
            job.started = true;
        }
        if done {
            if job.started || job.all {
                tx.message(AgentMsg::Stats { more: false, requested: job.all }, out);
            }
            false
        } else {
            self.stats_job = Some(job);
            true
        }
    }

    /// Periodic work: queues a stats pass every interval once a session
    /// is up.
    pub fn on_tick(&mut self) {
        if self.hello
            && self.stats_interval_ms > 0
            && self.stats_job.is_none()
            && self.last_stats.elapsed().as_millis() as u64 >= self.stats_interval_ms as u64
        {
            self.request_stats(false);
        }
    }

    pub fn session_up(&self) -> bool {
        self.hello
    }
}

/// The frame that refuses a connection while another session owns the
/// agent: an [`ErrorCode::Busy`] error, encoded (sequence number 0).
pub fn busy_frame(owner: &str) -> Vec<u8> {
    let mut text: heapless::String<96> = heapless::String::new();
    let _ = core::fmt::write(&mut text, format_args!("another host session owns this agent ({owner})"));
    let mut b = FrameBuilder::new(vec![0u8; MAX_FRAME]);
    let mut enc = vec![0u8; MAX_ENCODED_FRAME];
    let _ = b.start(&AgentHeader { seq: 0, msg: AgentMsg::Error { code: ErrorCode::Busy, text } });
    match b.finish(&mut enc) {
        Ok(n) => enc[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}
