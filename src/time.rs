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

/// Seconds since the Unix epoch of an ASN.1 time.
pub fn unix_time(t: &Asn1TimeRef) -> Result<i64, ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A Unix time in RFC 3339 form, UTC (`2026-12-01T14:00:00Z`): the form
/// of every date in CSV and JSON output and in the wire's reasons.
pub fn rfc3339(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Why a text is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(pub String);

impl std::fmt::Display for BadTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not an RFC 3339 time (like 2026-12-01T14:00:00Z or 2026-12-01T22:00:00+08:00)",
            self.0
        )
    }
}

impl std::error::Error for BadTime {}

/// Reads an RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`;
/// `t` or a space for `T`) as Unix seconds; fractions are dropped.
pub fn parse_rfc3339(text: &str) -> Result<i64, BadTime> {
    let bad = || BadTime(text.to_string());
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Result<i64, BadTime> {
        let part = b.get(from..from + len).ok_or_else(bad)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        Ok(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, ok: &[u8]| -> Result<(), BadTime> {
        match b.get(at) {
            Some(c) if ok.contains(c) => Ok(()),
            _ => Err(bad()),
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut at = 19;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let digits = b[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad());
        }
        at += digits;
    }
    let offset = match b.get(at) {
        Some(b'Z' | b'z') if b.len() == at + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == at + 6 => {
            sep(at + 3, b":")?;
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return Err(bad()),
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    // A leap second (:60) is read as the next second's start.
    if !(1..=12).contains(&mo) || d < 1 || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    if d > month_days[(mo - 1) as usize] {
        return Err(bad());
    }
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_and_agrees_with_openssl() -> Result<(), Box<dyn std::error::Error>> {
        for t in [0, 951_782_400, 1_700_000_000, 2_524_608_000, 4_107_542_399] {
            let text = rfc3339(t);
            assert_eq!(parse_rfc3339(&text)?, t, "{text}");
            // OpenSSL's own reading of the same instant.
            let asn1 = Asn1Time::from_str(&text.replace(['-', 'T', ':'], ""))?;
            assert_eq!(unix_time(&asn1)?, t, "{text}");
        }
        assert_eq!(rfc3339(1_764_597_600), "2025-12-01T14:00:00Z");
        assert_eq!(parse_rfc3339("2025-12-01T22:00:00+08:00")?, 1_764_597_600);
        assert_eq!(parse_rfc3339("2025-12-01t14:00:00.999z")?, 1_764_597_600);
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00-00:30")?, 1_709_166_600);
        for bad in [
            "",
            "2025-12-01",
            "2025-12-01T14:00:00",
            "2025-13-01T14:00:00Z",
            "2025-02-29T14:00:00Z",
            "2025-12-01T24:00:00Z",
            "2025-12-01T14:00:00+0800",
            "2025-12-01T14:00:00.Z",
            "2025-12-01T14:00:00Zjunk",
            "２025-12-01T14:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn unix_time_reads_back_what_asn1_time_was_made_from() -> Result<(), ErrorStack> {
        for t in [0, 1_700_000_000, 2_524_608_000] {
            assert_eq!(unix_time(Asn1Time::from_unix(t)?.as_ref())?, t);
        }
        assert_eq!(time_text(0), "Jan  1 00:00:00 1970 GMT");
        assert_eq!(rfc3339(1_796_133_600), "2026-12-01T14:00:00Z");
        assert_eq!(parse_rfc3339("2026-12-01T14:00:00Z"), Ok(1_796_133_600));
        assert!(parse_rfc3339("2026-13-01T14:00:00Z").is_err());
        Ok(())
    }
}
