//! # host-bridge
//!
//! The host half of the offload: it mirrors the kernel's networking state
//! and streams it to the DPU agent. This crate starts with the piece every
//! host-side program needs, [`agent_link`]: a client that speaks the wire
//! protocol to an agent (hello, batches with per-entry results, snapshots,
//! stats).
pub mod agent_link;

pub use agent_link::{AgentEvent, AgentLink, BatchResult, LinkError};
