//! `time::parse_rfc3339` (dates in admin input and in signed receipts) on
//! arbitrary text, and `time::rfc3339` on arbitrary times. Never panics
//! (no overflow either: the fuzz build has overflow checks), and: what
//! parses prints back (in UTC) to a text that parses to the same time;
//! a `Z` time of years 1950–9999 is the time OpenSSL reads from the same
//! digits; every time of years 0–9999 round-trips through its text.
#![cfg_attr(feature = "libfuzzer", no_main)]

use certboard::time::{parse_rfc3339, rfc3339, unix_time};
use certboard_fuzz::fuzz_target;
use openssl::asn1::Asn1Time;

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const MIN: i64 = -62_167_219_200;
const MAX: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 9 && data[0] == 0xff {
        // A time, not a text.
        let t = i64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
        let text = rfc3339(t);
        if (MIN..=MAX).contains(&t) {
            assert_eq!(parse_rfc3339(&text), Ok(t), "{text}");
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_rfc3339(text) else {
        return;
    };
    let again = rfc3339(t);
    if (MIN..=MAX).contains(&t) {
        assert_eq!(parse_rfc3339(&again), Ok(t), "{text} -> {again}");
    }
    // OpenSSL's reading of the same digits (GeneralizedTime), for a plain
    // UTC time without a leap second.
    let b = text.as_bytes();
    if b.len() == 20 && b[19].eq_ignore_ascii_case(&b'Z') && &b[17..19] != b"60" {
        let digits: String = text[..19].chars().filter(char::is_ascii_digit).collect();
        if let Ok(asn1) = Asn1Time::from_str(&format!("{digits}Z")) {
            if let Ok(theirs) = unix_time(&asn1) {
                assert_eq!(theirs, t, "{text}");
            }
        }
    }
});
