//! # host-bridge
//!
//! The host half of the offload: it mirrors the kernel's networking state
//! and streams it to the DPU agent. This crate starts with the piece every
//! host-side program needs, [`agent_link`]: a client that speaks the wire
//! protocol to an agent (hello, batches with per-entry results, snapshots,
//! stats).
pub mod agent_link;
pub mod channel;
pub mod config;
pub mod dpu;
pub mod fib_fw;
pub mod firmware;
pub mod kernel;
pub mod metrics;
pub mod mirror;
pub mod netlink;
pub mod notifier;
pub mod qualified;
pub mod shadow;
pub mod status;

pub use dpu_wire::logfmt;

/// A plain log line on stderr.
#[macro_export]
macro_rules! log {
    ($($a:tt)*) => { $crate::logfmt::line($crate::logfmt::Level::Info, format_args!($($a)*)) };
}

/// A line at WARN: something failed and is being handled.
#[macro_export]
macro_rules! warn {
    ($($a:tt)*) => { $crate::logfmt::line($crate::logfmt::Level::Warn, format_args!($($a)*)) };
}

/// A line at ERROR: something failed that host-bridge cannot handle.
#[macro_export]
macro_rules! error {
    ($($a:tt)*) => { $crate::logfmt::line($crate::logfmt::Level::Error, format_args!($($a)*)) };
}

/// A line at DEBUG, shown with `--log-level debug`.
#[macro_export]
macro_rules! debug {
    ($($a:tt)*) => { $crate::logfmt::line($crate::logfmt::Level::Debug, format_args!($($a)*)) };
}

pub use agent_link::{AgentEvent, AgentLink, BatchResult, LinkError};
pub use channel::{Channel, Dial};
