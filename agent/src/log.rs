//! Plain line logs on stderr, in the format both sides share
//! (`dpu_wire::logfmt`): `2026-11-24T20:31:28.123Z LEVEL message`.

pub use dpu_wire::logfmt::{enabled, line, set_level, Level};

#[macro_export]
macro_rules! debug {
    ($($a:tt)*) => { $crate::log::line($crate::log::Level::Debug, format_args!($($a)*)) };
}

#[macro_export]
macro_rules! info {
    ($($a:tt)*) => { $crate::log::line($crate::log::Level::Info, format_args!($($a)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($a:tt)*) => { $crate::log::line($crate::log::Level::Warn, format_args!($($a)*)) };
}

#[macro_export]
macro_rules! error {
    ($($a:tt)*) => { $crate::log::line($crate::log::Level::Error, format_args!($($a)*)) };
}
