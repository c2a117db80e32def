//! .NET's round-trip ("O") UTC format, which the seed's modules put on the wire:
//! `2019-06-19T19:32:16.4161739Z` (7 fractional digits).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Timelike, Utc};
use std::fmt::Write as _;

pub fn round_trip(t: DateTime<Utc>) -> String {
    let mut s = String::with_capacity(28);
    let _ = write!(
        s,
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        // Leap-second nanos (>= 1e9) clamp to the last tick of the second.
        (t.nanosecond() / 100).min(9_999_999)
    );
    s
}

/// The same with an explicit offset, as .NET prints a `DateTimeOffset`: `…4161739+00:00`.
pub fn round_trip_offset(t: DateTime<Utc>) -> String {
    let mut s = round_trip(t);
    s.pop();
    s.push_str("+00:00");
    s
}

/// Parses round-trip or any RFC 3339 time; a time without an offset is taken as UTC
/// (the seed's `DateTime.Parse` assumed the container's zone, which was only right in UTC).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// RFC 3339 with microseconds, for logs.
pub fn display(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_seven_digits() {
        let t = Utc.with_ymd_and_hms(2019, 6, 19, 19, 32, 16).unwrap()
            + chrono::Duration::nanoseconds(416_173_900);
        assert_eq!(round_trip(t), "2019-06-19T19:32:16.4161739Z");
        assert_eq!(parse("2019-06-19T19:32:16.4161739Z"), Some(t));
        assert_eq!(parse("2019-06-19T19:32:16.4161739+00:00"), Some(t));
        assert_eq!(parse("2019-06-19T19:32:16.4161739"), Some(t));
        assert_eq!(parse("nonsense"), None);
    }
}
