//! # dpu-wire: the host <-> DPU wire protocol
//!
//! One definition of every message that crosses the channel between the
//! host's `host-bridge` and the DPU `agent`, shared by both sides.
//!
//! The protocol has three layers, one module each:
//!
//! * [`types`] and [`objects`]: the networking objects mirrored from the
//!   host kernel (links, addresses, routes, nexthops, neighbours, bridge FDB
//!   and VLANs, flow rules), each with its natural key.
//! * [`msg`]: the session messages (hello, snapshot, batches of updates,
//!   per-entry results, stats, heartbeats). A frame is one header followed
//!   by zero or more items, all postcard-encoded.
//! * [`framing`]: COBS framing with a CRC-32C trailer and a maximum frame
//!   size, so a receiver resynchronises at the next frame after a corrupt or
//!   truncated one.
//!
//! Everything here is `no_std` and allocation-free: bounded collections are
//! `heapless`, and decoding reads one item at a time out of the caller's
//! buffer. See `docs/PROTOCOL.md` for the normative description.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
extern crate std;

pub mod crc32c;
pub mod framing;
pub mod logfmt;
pub mod msg;
pub mod objects;
pub mod types;

pub use framing::{Deframer, FrameBuilder, FrameError, FrameReader};
pub use msg::*;
pub use objects::*;
pub use types::*;

/// Protocol version spoken by this build.
///
/// Versioning rule: peers with a different `major` refuse each other with
/// [`msg::ErrorCode::VersionMismatch`]. A `minor` bump may only append new
/// enum variants (messages, objects, actions) at the end; a peer sends a
/// variant only if the other side's `minor` announces it.
///
/// 2.0 added the route key's `ifindex` (a layout change: postcard has no
/// field names); it carries everything 1.3 had.
pub const VERSION: Version = Version { major: 2, minor: 0 };

/// Largest decoded frame payload (header, items and CRC) either side accepts.
pub const MAX_FRAME: usize = 16 * 1024;

/// Largest encoded frame on the wire: COBS adds one byte per 254, plus the
/// terminating zero.
pub const MAX_ENCODED_FRAME: usize = MAX_FRAME + MAX_FRAME / 254 + 2;
