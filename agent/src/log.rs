//! Plain line logs on stderr: `2026-11-24T20:31:28.123Z LEVEL message`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Writes one log line: formatted into a fixed buffer (long lines are
/// cut) and written with a single `write`, so lines never interleave and
/// logging never allocates.
pub fn line(level: &str, args: std::fmt::Arguments<'_>) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let mut buf: heapless::String<LINE_MAX> = heapless::String::new();
    let _ = write!(
        buf,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z {level} ",
        s / 3600,
        s / 60 % 60,
        s % 60,
        now.subsec_millis()
    );
    let _ = Truncating(&mut buf).write_fmt(args);
    if buf.push('\n').is_err() {
        buf.pop();
        let _ = buf.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(buf.as_bytes());
}

const LINE_MAX: usize = 512;

/// Keeps what fits of a formatted message.
struct Truncating<'a>(&'a mut heapless::String<LINE_MAX>);

impl std::fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for c in s.chars() {
            if self.0.len() + c.len_utf8() >= LINE_MAX {
                break;
            }
            let _ = self.0.push(c);
        }
        Ok(())
    }
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

#[macro_export]
macro_rules! info {
    ($($a:tt)*) => { $crate::log::line("INFO", format_args!($($a)*)) };
}

#[macro_export]
macro_rules! warn {
    ($($a:tt)*) => { $crate::log::line("WARN", format_args!($($a)*)) };
}

#[macro_export]
macro_rules! error {
    ($($a:tt)*) => { $crate::log::line("ERROR", format_args!($($a)*)) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
    }
}
