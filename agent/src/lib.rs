//! # dpu-agent: the DPU's firmware-style agent
//!
//! The agent runs on the DPU's aarch64 cores. It receives the host's
//! networking state as postcard frames (crate `dpu-wire`), programs the
//! forwarding hardware through the HAL (crate `dpu-hw`) and sends per-entry
//! results and counters back.
//!
//! Layers, one module each, in data-flow order:
//!
//! * [`transport`]: Unix socket, AF_VSOCK or virtio-serial, on smol;
//! * [`session`]: frames in and out, hello, sequence numbers, snapshots,
//!   results, stats;
//! * [`engine`]: objects to hardware entries, references, mark-and-sweep;
//! * [`tables`] and [`index`]: fixed-capacity bookkeeping per table;
//! * [`board`]: the capacities of the board this build is for.
//!
//! Every buffer and table is allocated once at start-up from the board's
//! compile-time capacities; nothing grows afterwards.

pub mod board;
pub mod engine;
pub mod index;
pub mod log;
pub mod session;
pub mod tables;
pub mod transport;

pub use engine::Engine;
pub use session::{Agent, Control};
