//! The clock and the text form of times, shared by the CA, the store, the
//! services and the client, so none of them reaches into another for it.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;

/// Current time as Unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Unix time as text for people (`Dec 23 19:30:36 2026 GMT`).
pub fn time_text(t: i64) -> String {
    Asn1Time::from_unix(t)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// A Unix time in RFC 3339 UTC, to the second (`2026-12-01T14:00:00Z`).
pub fn rfc3339(t: i64) -> String {
    let c = crate::der::CivilTime::from_unix(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// The inverse of [`rfc3339`] for exactly that form; `None` otherwise.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    // GeneralizedTime's form, which OpenSSL parses and range-checks.
    let compact: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    let t = Asn1Time::from_str(&format!("{compact}Z")).ok()?;
    unix_time(&t).ok()
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub fn unix_time(t: &Asn1TimeRef) -> Result<i64, ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_reads_back_what_asn1_time_was_made_from() -> Result<(), ErrorStack> {
        for t in [0, 1_700_000_000, 2_524_608_000] {
            assert_eq!(unix_time(Asn1Time::from_unix(t)?.as_ref())?, t);
        }
        assert_eq!(time_text(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(rfc3339(1_796_133_600), "2026-12-01T14:00:00Z");
        assert_eq!(parse_rfc3339("2026-12-01T14:00:00Z"), Some(1_796_133_600));
        for bad in [
            "2026-12-01 14:00:00Z",
            "2026-13-01T14:00:00Z",
            "2026-12-01T14:00:00+00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        Ok(())
    }
}
