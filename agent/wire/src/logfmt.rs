//! The one log line format of both sides, the agent's and host-bridge's:
//!
//! ```text
//! 2026-11-24T20:31:28.123Z INFO message
//! ```
//!
//! UTC with milliseconds, the level, the message; one line each. The
//! formatting is `no_std`; the `std` feature adds [`line`], which writes a
//! line to stderr with a single `write` (lines never interleave, logging
//! never allocates), and the process-wide level filter.

use core::fmt;

/// Log levels, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Error, Level::Warn, Level::Info, Level::Debug];

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    /// `error`, `warn`, `info` or `debug`, in any case.
    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name().eq_ignore_ascii_case(s))
    }
}

/// Writes the line prefix: the time (`unix_ms`, milliseconds since the
/// epoch) and the level, then a space.
pub fn prefix(w: &mut impl fmt::Write, unix_ms: u64, level: Level) -> fmt::Result {
    let secs = unix_ms / 1000;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    write!(
        w,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z {} ",
        s / 3600,
        s / 60 % 60,
        s % 60,
        unix_ms % 1000,
        level.name()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

#[cfg(feature = "std")]
mod sink {
    use super::*;
    use core::sync::atomic::{AtomicU8, Ordering};

    static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

    /// Lines above `level` are dropped from now on.
    pub fn set_level(level: Level) {
        LEVEL.store(level as u8, Ordering::Relaxed);
    }

    pub fn enabled(level: Level) -> bool {
        level as u8 <= LEVEL.load(Ordering::Relaxed)
    }

    const LINE_MAX: usize = 512;

    /// Keeps what fits of a formatted line.
    struct Truncating<'a>(&'a mut heapless::String<LINE_MAX>);

    impl fmt::Write for Truncating<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if self.0.len() + c.len_utf8() >= LINE_MAX {
                    break;
                }
                // A multi-line message (a TOML parse error) stays one
                // line: line breaks and other controls become spaces.
                let _ = self.0.push(if c.is_control() { ' ' } else { c });
            }
            Ok(())
        }
    }

    /// Writes one line to stderr, if `level` is enabled: formatted into a
    /// fixed buffer (a long message is cut, line breaks in it become
    /// spaces) and written at once.
    pub fn line(level: Level, args: fmt::Arguments<'_>) {
        use std::io::Write as _;
        if !enabled(level) {
            return;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut buf: heapless::String<LINE_MAX> = heapless::String::new();
        let mut w = Truncating(&mut buf);
        let _ = prefix(&mut w, now.as_millis() as u64, level);
        let _ = fmt::Write::write_fmt(&mut w, args);
        if buf.push('\n').is_err() {
            buf.pop();
            let _ = buf.push('\n');
        }
        let _ = std::io::stderr().lock().write_all(buf.as_bytes());
    }
}

#[cfg(feature = "std")]
pub use sink::{enabled, line, set_level};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn the_prefix() {
        let mut s: heapless::String<64> = heapless::String::new();
        prefix(&mut s, 1_764_016_288_123, Level::Warn).expect("fits");
        assert_eq!(s.as_str(), "2025-11-24T20:31:28.123Z WARN ");
        assert_eq!(Level::parse("debug"), Some(Level::Debug));
        assert_eq!(Level::parse("loud"), None);
    }
}
