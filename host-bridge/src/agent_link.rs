//! A blocking client of the agent's wire protocol.
//!
//! [`AgentLink`] wraps any byte stream ([`Channel`]: a Unix socket in
//! tests and development, vsock or virtio-serial on a real host), in
//! non-blocking mode. Batches are pipelined with at most [`WINDOW`] frames
//! unacknowledged; per-entry failures are mapped back to the caller's
//! update list.
//!
//! Flow control: every write that would block waits in `poll` for the
//! stream to take more *or* for agent frames to read, and reads them, so
//! the host never stops reading while it writes. The agent, for its part,
//! takes input only while it has room for the output (agent transport),
//! so neither side drops anything and neither can deadlock the other,
//! whatever the channel's buffer sizes. A `ResyncNeeded` from the agent
//! ends the call at once ([`LinkError::Resync`]).

use crate::channel::{Channel, Dial};
use dpu_wire::framing::max_encoded_len;
use dpu_wire::*;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Frames in flight before the client waits for results.
pub const WINDOW: usize = 16;

/// Why a call failed.
#[derive(Debug)]
pub enum LinkError {
    Io(io::Error),
    /// The agent refused the session or a message.
    Agent {
        code: ErrorCode,
        text: String,
    },
    /// Nothing arrived in time.
    Timeout,
    /// The agent closed the connection.
    Closed,
    /// An update does not fit a frame on its own.
    TooLarge,
    /// The agent asked for a full resync (it lost a frame): whatever was
    /// in flight is moot, a snapshot follows.
    Resync(ResyncReason),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Io(e) => write!(f, "{e}"),
            LinkError::Agent { code, text } => write!(f, "agent error {code:?}: {text}"),
            LinkError::Timeout => f.write_str("timed out waiting for the agent"),
            LinkError::Closed => f.write_str("the agent closed the connection"),
            LinkError::TooLarge => f.write_str("update larger than a frame"),
            LinkError::Resync(r) => write!(f, "the agent asks for a resync ({r:?})"),
        }
    }
}

impl std::error::Error for LinkError {}

impl From<io::Error> for LinkError {
    fn from(e: io::Error) -> Self {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            LinkError::Timeout
        } else {
            LinkError::Io(e)
        }
    }
}

/// A decoded frame from the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentEvent {
    Hello(AgentHello),
    Error {
        code: ErrorCode,
        text: String,
    },
    Results {
        ack: u32,
        ok: u16,
        more: bool,
        failures: Vec<Failure>,
    },
    SnapshotDone {
        generation: u32,
        unchanged: u32,
        written: u32,
        removed: u32,
    },
    Stats {
        more: bool,
        requested: bool,
        entries: Vec<StatEntry>,
    },
    Heartbeat {
        uptime_ms: u64,
        rx_frames: u64,
        rx_errors: u64,
    },
    ResyncNeeded {
        reason: ResyncReason,
    },
    /// Entries in use per table (protocol 1.3).
    Usage(Capacities),
}

/// Outcome of a list of updates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchResult {
    pub ok: usize,
    /// (position in the caller's list, status, key)
    pub failures: Vec<(usize, Status, Option<Key>)>,
}

/// The stream types the link can run over: non-blocking fds. The fd is
/// also for waiting on the stream together with something else (see
/// [`AgentLink::pump`]).
pub trait Transport: Read + Write + AsFd {}
impl<T: Read + Write + AsFd> Transport for T {}

/// Waits for `events` on `fd` at most `wait`; returns what happened.
fn wait_fd(fd: BorrowedFd<'_>, events: PollFlags, wait: Duration) -> io::Result<PollFlags> {
    let mut fds = [PollFd::new(fd, events)];
    let t = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, t) {
        Ok(_) => Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
        Err(Errno::EINTR) => Ok(PollFlags::empty()),
        Err(e) => Err(e.into()),
    }
}

/// An update as a batch frame carries it: an [`Op`], or one the mirror
/// keeps encoded ([`crate::mirror::Taken`]).
pub trait WireOp {
    fn push_to(&self, b: &mut FrameBuilder<Vec<u8>>) -> Result<(), dpu_wire::FrameError>;
}

impl WireOp for Op {
    fn push_to(&self, b: &mut FrameBuilder<Vec<u8>>) -> Result<(), dpu_wire::FrameError> {
        b.push(self)
    }
}

impl WireOp for crate::mirror::Taken {
    fn push_to(&self, b: &mut FrameBuilder<Vec<u8>>) -> Result<(), dpu_wire::FrameError> {
        b.push_encoded(&self.parts())
    }
}

pub struct AgentLink<S: Transport> {
    stream: S,
    deframer: Deframer<Vec<u8>>,
    builder: FrameBuilder<Vec<u8>>,
    enc: Vec<u8>,
    seq: u32,
    inbox: VecDeque<AgentEvent>,
    /// Frames that are not results, kept for [`AgentLink::take_events`].
    events: Vec<AgentEvent>,
    /// Agent frames dropped by the deframer or undecodable.
    pub rx_errors: u64,
    /// Bytes written to the agent.
    pub tx_bytes: u64,
    pub timeout: Duration,
}

impl AgentLink<Channel> {
    pub fn connect_unix(path: &Path) -> io::Result<Self> {
        Self::dial(&Dial::Unix(path.into()))
    }

    /// Connects to the agent over any channel kind.
    pub fn dial(d: &Dial) -> io::Result<Self> {
        Ok(Self::new(Channel::dial(d, Duration::from_secs(5))?))
    }
}

impl<S: Transport> AgentLink<S> {
    /// Wraps a connected stream, which must be in non-blocking mode (a
    /// [`Channel`] is).
    pub fn new(stream: S) -> Self {
        AgentLink {
            stream,
            deframer: Deframer::new(vec![0u8; max_encoded_len(MAX_FRAME)]),
            builder: FrameBuilder::new(vec![0u8; MAX_FRAME]),
            enc: vec![0u8; max_encoded_len(MAX_FRAME)],
            seq: 0,
            inbox: VecDeque::new(),
            events: Vec::new(),
            rx_errors: 0,
            tx_bytes: 0,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Writes raw bytes, for tests of the agent's robustness.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        self.write_all(bytes)?;
        self.tx_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Writes all of `bytes`, reading the agent's frames into the inbox
    /// whenever the stream would block. Fails with [`LinkError::Timeout`]
    /// only if the stream takes nothing for `self.timeout`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let mut off = 0;
        let mut progress = Instant::now();
        while off < bytes.len() {
            match self.stream.write(&bytes[off..]) {
                Ok(0) => return Err(LinkError::Closed),
                Ok(n) => {
                    off += n;
                    progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let left = self.timeout.saturating_sub(progress.elapsed());
                    if left.is_zero() {
                        return Err(LinkError::Timeout);
                    }
                    let r = wait_fd(self.stream.as_fd(), PollFlags::POLLIN | PollFlags::POLLOUT, left)?;
                    if r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                        // Keep reading while writing: the agent may be
                        // waiting for room to send its results.
                        self.read_once(Duration::ZERO)?;
                    }
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                    // The agent closed the stream; what it said before
                    // (a Busy refusal, say) explains why, so it wins.
                    let _ = self.read_once(Duration::ZERO);
                    let said = self.inbox.iter().find_map(|ev| match ev {
                        AgentEvent::Error { code, text } => Some((*code, text.clone())),
                        _ => None,
                    });
                    return Err(match said {
                        Some((code, text)) => LinkError::Agent { code, text },
                        None => e.into(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<(), LinkError> {
        let n = self.builder.finish(&mut self.enc).map_err(|_| LinkError::TooLarge)?;
        let enc = std::mem::take(&mut self.enc);
        let r = self.write_all(&enc[..n]);
        self.enc = enc;
        r?;
        self.tx_bytes += n as u64;
        self.seq = self.seq.wrapping_add(1);
        Ok(())
    }

    /// Sends a message without items; returns its sequence number.
    pub fn send(&mut self, msg: HostMsg) -> Result<u32, LinkError> {
        let seq = self.seq;
        self.builder.start(&HostHeader { seq, msg }).map_err(|_| LinkError::TooLarge)?;
        self.flush_frame()?;
        Ok(seq)
    }

    /// Says hello with this build's protocol version.
    pub fn hello(&mut self, name: &str) -> Result<AgentHello, LinkError> {
        self.hello_as(VERSION, name)
    }

    /// Says hello claiming `version` (tests use other versions).
    pub fn hello_as(&mut self, version: Version, name: &str) -> Result<AgentHello, LinkError> {
        let mut n: heapless::String<32> = heapless::String::new();
        for c in name.chars() {
            if n.push(c).is_err() {
                break;
            }
        }
        self.seq = 0;
        self.send(HostMsg::Hello(HostHello { version, name: n }))?;
        loop {
            match self.recv()? {
                AgentEvent::Hello(h) => {
                    if h.version.major != VERSION.major {
                        return Err(LinkError::Agent {
                            code: ErrorCode::VersionMismatch,
                            text: format!("agent protocol {}.{}", h.version.major, h.version.minor),
                        });
                    }
                    return Ok(h);
                }
                AgentEvent::Error { code, text } => return Err(LinkError::Agent { code, text }),
                other => self.events.push(other),
            }
        }
    }

    /// Next frame from the agent, waiting at most `self.timeout`.
    pub fn recv(&mut self) -> Result<AgentEvent, LinkError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(ev) = self.inbox.pop_front() {
                return Ok(ev);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::Timeout);
            }
            self.read_once(left)?;
        }
    }

    /// One read from the stream, waiting at most `wait`; the frames it
    /// completes go to the inbox. Nothing to read in time is not an error.
    fn read_once(&mut self, wait: Duration) -> Result<(), LinkError> {
        let mut buf = [0u8; 65536];
        if !wait.is_zero() {
            wait_fd(self.stream.as_fd(), PollFlags::POLLIN, wait)?;
        }
        let n = match self.stream.read(&mut buf) {
            Ok(0) => return Err(LinkError::Closed),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        };
        let Self { deframer, inbox, rx_errors, .. } = self;
        deframer.push(&buf[..n], |frame| match frame.ok().and_then(decode) {
            Some(ev) => inbox.push_back(ev),
            None => *rx_errors += 1,
        });
        Ok(())
    }

    /// The stream's fd, to wait for agent frames with `poll` alongside
    /// other sources; call [`AgentLink::pump`] when it is readable.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Reads what the agent has sent (without waiting more than a
    /// millisecond), for [`AgentLink::take_events`]. For use between
    /// requests, when every frame is unsolicited: stats, heartbeats,
    /// resync requests.
    pub fn pump(&mut self) -> Result<(), LinkError> {
        self.read_once(Duration::from_millis(1))
    }

    /// Receives until `pick` accepts a frame; other frames are kept as
    /// events.
    fn recv_until<T>(
        &mut self,
        mut pick: impl FnMut(&AgentEvent) -> Option<T>,
    ) -> Result<(T, AgentEvent), LinkError> {
        loop {
            let ev = self.recv()?;
            if let Some(t) = pick(&ev) {
                return Ok((t, ev));
            }
            match ev {
                AgentEvent::Error { code, text } => return Err(LinkError::Agent { code, text }),
                AgentEvent::ResyncNeeded { reason } => return Err(LinkError::Resync(reason)),
                ev => self.events.push(ev),
            }
        }
    }

    /// Frames that arrived while waiting for something else or were read
    /// by [`AgentLink::pump`] (periodic stats, heartbeats, resync
    /// requests). Between requests every frame in the inbox is one of
    /// these too.
    pub fn take_events(&mut self) -> Vec<AgentEvent> {
        let mut evs = std::mem::take(&mut self.events);
        evs.extend(self.inbox.drain(..));
        evs
    }

    /// Sends `ops` in as many frames as they need, at most [`WINDOW`]
    /// frames in flight, and collects every per-entry result.
    pub fn apply(&mut self, ops: &[impl WireOp]) -> Result<BatchResult, LinkError> {
        let mut result = BatchResult::default();
        // seq -> index of the frame's first op
        let mut inflight: VecDeque<(u32, usize)> = VecDeque::new();
        let mut i = 0;
        while i < ops.len() {
            let seq = self.seq;
            self.builder.start(&HostHeader { seq, msg: HostMsg::Batch }).map_err(|_| LinkError::TooLarge)?;
            let first = i;
            while i < ops.len() && ops[i].push_to(&mut self.builder).is_ok() {
                i += 1;
            }
            if i == first {
                return Err(LinkError::TooLarge);
            }
            self.flush_frame()?;
            inflight.push_back((seq, first));
            while inflight.len() >= WINDOW {
                self.collect(&mut inflight, &mut result)?;
            }
        }
        while !inflight.is_empty() {
            self.collect(&mut inflight, &mut result)?;
        }
        Ok(result)
    }

    fn collect(
        &mut self,
        inflight: &mut VecDeque<(u32, usize)>,
        result: &mut BatchResult,
    ) -> Result<(), LinkError> {
        let Some(&(seq, first)) = inflight.front() else {
            return Ok(());
        };
        let (_, ev) =
            self.recv_until(|e| matches!(e, AgentEvent::Results { ack, .. } if *ack == seq).then_some(()))?;
        if let AgentEvent::Results { ok, more, failures, .. } = ev {
            for f in failures {
                result.failures.push((first + f.index as usize, f.status, f.key));
            }
            if !more {
                result.ok += ok as usize;
                inflight.pop_front();
            }
        }
        Ok(())
    }

    /// Ends a snapshot begun with `send(HostMsg::SnapshotBegin)` and waits
    /// for the agent's (unchanged, written, removed) report.
    pub fn end_snapshot(&mut self, generation: u32) -> Result<(u32, u32, u32), LinkError> {
        self.send(HostMsg::SnapshotEnd { generation })?;
        let (rep, _) = self.recv_until(|e| match e {
            AgentEvent::SnapshotDone { generation: g, unchanged, written, removed } if *g == generation => {
                Some((*unchanged, *written, *removed))
            }
            _ => None,
        })?;
        Ok(rep)
    }

    /// A full resync: begin, every object, end. Returns the per-entry
    /// results and the agent's (unchanged, written, removed) report.
    pub fn snapshot(
        &mut self,
        generation: u32,
        ops: &[Op],
    ) -> Result<(BatchResult, (u32, u32, u32)), LinkError> {
        self.send(HostMsg::SnapshotBegin { generation })?;
        let r = self.apply(ops)?;
        Ok((r, self.end_snapshot(generation)?))
    }

    /// Asks for every counter and waits for the complete answer.
    pub fn stats(&mut self) -> Result<Vec<StatEntry>, LinkError> {
        // Periodic stats already received are superseded by this pass.
        self.events.retain(|e| !matches!(e, AgentEvent::Stats { .. }));
        self.send(HostMsg::StatsRequest)?;
        let mut all = Vec::new();
        loop {
            // Periodic passes (requested: false) are kept as events.
            let (more, ev) = self.recv_until(|e| match e {
                AgentEvent::Stats { more, requested: true, .. } => Some(*more),
                _ => None,
            })?;
            if let AgentEvent::Stats { entries, .. } = ev {
                all.extend(entries);
            }
            if !more {
                return Ok(all);
            }
        }
    }

    /// Round trip of a heartbeat.
    pub fn heartbeat(&mut self) -> Result<AgentEvent, LinkError> {
        self.send(HostMsg::Heartbeat { uptime_ms: 0 })?;
        let (_, ev) = self.recv_until(|e| matches!(e, AgentEvent::Heartbeat { .. }).then_some(()))?;
        Ok(ev)
    }
}

/// Decodes one agent frame payload with its items.
pub fn decode(payload: &[u8]) -> Option<AgentEvent> {
    let mut r = FrameReader::new(payload);
    let h: AgentHeader = r.header().ok()?;
    Some(match h.msg {
        AgentMsg::Hello(x) => AgentEvent::Hello(x),
        AgentMsg::Error { code, text } => AgentEvent::Error { code, text: text.as_str().to_string() },
        AgentMsg::Results { ack, ok, more } => {
            let mut failures = Vec::new();
            while let Some(f) = r.next_item::<Failure>() {
                failures.push(f.ok()?);
            }
            AgentEvent::Results { ack, ok, more, failures }
        }
        AgentMsg::SnapshotDone { generation, unchanged, written, removed } => {
            AgentEvent::SnapshotDone { generation, unchanged, written, removed }
        }
        AgentMsg::Stats { more, requested } => {
            let mut entries = Vec::new();
            while let Some(e) = r.next_item::<StatEntry>() {
                entries.push(e.ok()?);
            }
            AgentEvent::Stats { more, requested, entries }
        }
        AgentMsg::Heartbeat { uptime_ms, rx_frames, rx_errors } => {
            AgentEvent::Heartbeat { uptime_ms, rx_frames, rx_errors }
        }
        AgentMsg::ResyncNeeded { reason } => AgentEvent::ResyncNeeded { reason },
        AgentMsg::Usage(u) => AgentEvent::Usage(u),
    })
}
