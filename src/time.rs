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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_reads_back_what_asn1_time_was_made_from() -> Result<(), ErrorStack> {
        for t in [0, 1_700_000_000, 2_524_608_000] {
            assert_eq!(unix_time(Asn1Time::from_unix(t)?.as_ref())?, t);
        }
        assert_eq!(time_text(0), "Jan  1 00:00:00 1970 GMT");
        Ok(())
    }
}
