//! # dpu-hw: the DPU's forwarding hardware, as the agent sees it
//!
//! The `qemu-virt` board's forwarding hardware is a memory region with a
//! register-level layout (see [`layout`] and `docs/HARDWARE.md`): a header
//! of table descriptors and write-count registers, then one table of
//! fixed-size entries per object type, then counters. Firmware writes an
//! entry's body first and its valid bit last; the lookup logic only ever
//! looks at valid entries.
//!
//! * [`region`]: maps the region from a file (or a device BAR) with mmap.
//! * [`hal`]: the [`hal::Hal`] trait, the operations firmware performs, and
//!   its implementation on a region.
//! * [`reader`]: an independent reader that decodes the tables from the
//!   region's bytes alone, for tools and tests.
//! * [`lookup`]: the forwarding pipeline the hardware applies to a packet
//!   header, incrementing counters; tests use it to send traffic.
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod hal;
pub mod layout;
pub mod lookup;
pub mod reader;
pub mod region;

pub use hal::{Hal, MmioHal};
pub use layout::{Layout, TableId};
pub use region::Region;
