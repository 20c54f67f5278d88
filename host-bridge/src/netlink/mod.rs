//! The kernel side: a NETLINK_ROUTE socket and the conversion of its
//! messages into wire objects.
pub mod convert;
pub mod ring;
pub mod socket;
pub mod tc;

pub use convert::{convert, filter_dump_request, kind_of, Change, Kind};
pub use socket::NlSocket;
