//! Session messages.
//!
//! A frame's payload is one header ([`HostHeader`] from the host,
//! [`AgentHeader`] from the agent) followed by zero or more items whose type
//! the header's message fixes:
//!
//! | message                  | items            |
//! |--------------------------|------------------|
//! | `HostMsg::Batch`         | [`Op`]           |
//! | `AgentMsg::Results`      | [`Failure`]      |
//! | `AgentMsg::Stats`        | [`StatEntry`]    |
//! | every other message      | none             |
//!
//! Items are decoded one at a time, so a batch of thousands of updates never
//! needs more memory than one update.

use crate::objects::Key;
use serde::{Deserialize, Serialize};

#[allow(unused_imports)]
use crate::objects::Op;

/// Protocol version: see [`crate::VERSION`] for the rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

/// Capacities of the agent's hardware tables, announced in its hello.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacities {
    pub links: u32,
    pub addresses: u32,
    pub routes_v4: u32,
    pub routes_v6: u32,
    pub nexthops: u32,
    pub nexthop_groups: u32,
    pub ecmp_members: u32,
    pub neighbours: u32,
    pub fdb: u32,
    pub vlans: u32,
    pub flows: u32,
}

/// Capability bits in [`AgentHello::capabilities`].
pub mod caps {
    pub const L3_V4: u32 = 1 << 0;
    pub const L3_V6: u32 = 1 << 1;
    pub const ECMP: u32 = 1 << 2;
    pub const NEXTHOP_OBJECTS: u32 = 1 << 3;
    pub const L2_BRIDGE: u32 = 1 << 4;
    pub const VXLAN: u32 = 1 << 5;
    pub const FLOWS: u32 = 1 << 6;
    pub const STATS: u32 = 1 << 7;
}

/// The host's hello, first frame of every session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHello {
    pub version: Version,
    /// Free text for logs: the host-bridge's name and build.
    pub name: heapless::String<32>,
}

/// The agent's hello, its answer to the host's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHello {
    pub version: Version,
    /// Board name from the board config.
    pub board: heapless::String<32>,
    pub capabilities: u32,
    pub capacities: Capacities,
    /// Largest frame payload the agent accepts.
    pub max_frame: u32,
    /// Periodic stats interval in milliseconds; 0 if off.
    pub stats_interval_ms: u32,
}

/// Frames from the host to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostMsg {
    Hello(HostHello),
    /// A full resync starts: every object follows in batches.
    SnapshotBegin {
        generation: u32,
    },
    /// The resync is complete: objects not mentioned since the matching
    /// begin are removed.
    SnapshotEnd {
        generation: u32,
    },
    /// Items: [`Op`]s, applied in order.
    Batch,
    Heartbeat {
        uptime_ms: u64,
    },
    /// Ask for a stats frame now.
    StatsRequest,
}

/// Header of a frame from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHeader {
    /// Increments by one per frame from the host, starting at 1 after hello
    /// (the hello itself carries 0).
    pub seq: u32,
    pub msg: HostMsg,
}

/// Outcome of one update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Ok,
    /// The hardware table for this object is full.
    TableFull,
    /// The board cannot offload this object (type, family or size).
    Unsupported,
    /// The object is malformed.
    Invalid,
    /// It references an object the agent does not hold (a nexthop id, a
    /// group member).
    NotFound,
    /// A delete of an object that others still reference.
    InUse,
}

/// Why the agent needs a full resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResyncReason {
    /// A frame was lost (corrupt or oversized): sequence gap.
    SequenceGap,
    /// A frame failed to decode after its CRC matched.
    Undecodable,
}

/// Error codes of [`AgentMsg::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// Different major version: the agent closes the session.
    VersionMismatch,
    /// A message other than hello before the hello.
    NoHello,
    /// Snapshot end without a matching begin.
    BadSnapshot,
    /// Another host session owns the agent (protocol 1.1): this connection
    /// is refused and closed; the session that owns it goes on.
    Busy,
}

/// One refused update in a [`AgentMsg::Results`] frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Position of the update in its batch, from 0.
    pub index: u16,
    pub status: Status,
    /// The key of the refused update, so logs on both sides name it.
    pub key: Option<Key>,
}

/// What a counter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatKey {
    Route(crate::objects::RouteKey),
    /// Nexthop object id.
    Nexthop(u32),
    /// Flow cookie.
    Flow(u64),
    /// Port ifindex: receive counters in `packets`/`bytes`, transmit in
    /// `tx_packets`/`tx_bytes`.
    Port(u32),
}

/// Counters of one object, totals since it was installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub key: StatKey,
    pub packets: u64,
    pub bytes: u64,
    /// Milliseconds since the last hit; `u32::MAX` if never hit.
    pub idle_ms: u32,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

/// Frames from the agent to the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentMsg {
    Hello(AgentHello),
    Error {
        code: ErrorCode,
        text: heapless::String<96>,
    },
    /// Results of the batch with sequence number `ack`: `ok` updates
    /// applied; items: one [`Failure`] per refused update. A batch whose
    /// failures do not fit one frame is answered by several frames with the
    /// same `ack`, `more` set on all but the last.
    Results {
        ack: u32,
        ok: u16,
        more: bool,
    },
    /// Answer to snapshot end: what the resync did to the hardware.
    SnapshotDone {
        generation: u32,
        unchanged: u32,
        written: u32,
        removed: u32,
    },
    /// Items: [`StatEntry`] for objects whose counters moved since their
    /// last report (periodic pass), or for every counted object (`requested`:
    /// the answer to [`HostMsg::StatsRequest`]). A pass ends with a frame
    /// whose `more` is false.
    Stats {
        more: bool,
        requested: bool,
    },
    Heartbeat {
        uptime_ms: u64,
        rx_frames: u64,
        rx_errors: u64,
    },
    /// The agent lost a frame and asks for a snapshot.
    ResyncNeeded {
        reason: ResyncReason,
    },
    /// Protocol 1.3: entries in use per hardware table, in the shape of the
    /// hello's capacities (`ecmp_members` 0). Sent before each heartbeat
    /// answer.
    Usage(Capacities),
}

/// Header of a frame from the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHeader {
    pub seq: u32,
    pub msg: AgentMsg,
}
