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
pub mod mirror;
pub mod netlink;
pub mod notifier;
pub mod qualified;
pub mod status;

/// A plain log line on stderr.
#[macro_export]
macro_rules! log {
    ($($a:tt)*) => {{
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{}.{:03} host-bridge: {}", now.as_secs(), now.subsec_millis(), format_args!($($a)*));
    }};
}

pub use agent_link::{AgentEvent, AgentLink, BatchResult, LinkError};
pub use channel::{Channel, Dial};
