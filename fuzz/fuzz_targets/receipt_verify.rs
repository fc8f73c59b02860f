//! `receipt::verify_receipt`, the student's check of a signed receipt
//! (CMS SignedData over the receipt JSON), on untrusted bytes. Never
//! panics, and:
//! - mode 0, arbitrary bytes; mode 1, byte edits of one honest receipt:
//!   whatever is accepted was signed by Blackboard `blackboard.invalid` and
//!   says exactly what the honest receipt says (that identity signs nothing
//!   else in this process, so a corpus entry from mode 2 cannot pass);
//! - mode 2, arbitrary bytes as the content, really signed by a second
//!   Blackboard (`other.invalid`): accepted only if the content is receipt
//!   JSON of version 2 with an RFC 3339 `received_at`, and then it is what
//!   serde reads from those bytes;
//! - mode 3, arbitrary strings for the fields, signed by that second
//!   Blackboard now: always accepted, the fields read back unchanged.
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use certboard::ca::{BlackboardIdentity, DEFAULT_BLACKBOARD_NAME};
use certboard::receipt::{verify_receipt, ReceiptContent, RECEIPT_VERSION};
use certboard::time::{now_unix, parse_rfc3339, rfc3339};
use certboard_fuzz::fuzz_target;
use openssl::x509::X509;

mod common;

const OTHER_NAME: &str = "other.invalid";

struct Fixture {
    root: X509,
    honest: BlackboardIdentity,
    other: BlackboardIdentity,
    content: ReceiptContent,
    receipt: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = common::throwaway_ca("rc");
        let honest = ca
            .issue_blackboard(DEFAULT_BLACKBOARD_NAME)
            .expect("Blackboard's certificate");
        let other = ca
            .issue_blackboard(OTHER_NAME)
            .expect("a second Blackboard");
        let content = ReceiptContent {
            sid: "1155000001".into(),
            serial: "0A1B2C3D4E5F".into(),
            receipt: "42".into(),
            received_at: rfc3339(now_unix()),
            report_sha256: "ab".repeat(32),
            transcript_sha256: "cd".repeat(32),
            version: RECEIPT_VERSION,
            log_index: None,
            log_proof: None,
            assignment: None,
            late: None,
            late_seconds: None,
            file: None,
        };
        let receipt = honest
            .sign_receipt(&content.to_json())
            .expect("sign the honest receipt");
        // The fixture must itself pass, or every check below is vacuous.
        let ok = verify_receipt(&receipt, ca.cert(), Some(DEFAULT_BLACKBOARD_NAME))
            .expect("the honest receipt verifies");
        assert_eq!(ok.content, content);
        Fixture {
            root: ca.cert().clone(),
            honest,
            other,
            content,
            receipt,
        }
    })
}

/// Checks a receipt that names the honest Blackboard.
fn check_honest(f: &Fixture, der: &[u8]) {
    if let Ok(v) = verify_receipt(der, &f.root, Some(DEFAULT_BLACKBOARD_NAME)) {
        assert_eq!(v.content, f.content, "accepted a receipt nobody signed");
        assert_eq!(
            v.signer.to_der().ok(),
            f.honest.cert().to_der().ok(),
            "accepted another signer"
        );
    }
}

/// A string from the input: a length byte, then that many bytes.
fn field(data: &mut &[u8]) -> String {
    let Some((&n, rest)) = data.split_first() else {
        return String::new();
    };
    let n = usize::from(n).min(rest.len());
    let s = String::from_utf8_lossy(&rest[..n]).into_owned();
    *data = &rest[n..];
    s
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => check_honest(f, rest),
        1 => {
            // (position, xor) pairs of 3 bytes, at most 8 of them.
            let mut der = f.receipt.clone();
            for e in rest.chunks_exact(3).take(8) {
                let at = usize::from(u16::from_le_bytes([e[0], e[1]])) % der.len();
                der[at] ^= e[2];
            }
            // A one-byte truncation or extension at the end, too.
            match rest.len() % 3 {
                1 => {
                    der.pop();
                }
                2 => der.push(0),
                _ => {}
            }
            check_honest(f, &der);
        }
        2 => {
            let Ok(der) = f.other.sign_receipt(rest) else {
                return;
            };
            let read: Result<ReceiptContent, _> = serde_json::from_slice(rest);
            if let Ok(v) = verify_receipt(&der, &f.root, Some(OTHER_NAME)) {
                let read = read.expect("accepted content that is not receipt JSON");
                assert_eq!(v.content, read);
                assert_eq!(v.content.version, RECEIPT_VERSION);
                assert!(parse_rfc3339(&v.content.received_at).is_ok());
            }
            // Never accepted under the other name.
            assert!(verify_receipt(&der, &f.root, Some(DEFAULT_BLACKBOARD_NAME)).is_err());
        }
        _ => {
            let mut rest = rest;
            let content = ReceiptContent {
                sid: field(&mut rest),
                serial: field(&mut rest),
                receipt: field(&mut rest),
                received_at: rfc3339(now_unix()),
                report_sha256: field(&mut rest),
                transcript_sha256: field(&mut rest),
                version: RECEIPT_VERSION,
                log_index: None,
                log_proof: None,
                assignment: None,
                late: None,
                late_seconds: None,
                file: None,
            };
            let der = f.other.sign_receipt(&content.to_json()).expect("sign");
            let v = verify_receipt(&der, &f.root, Some(OTHER_NAME))
                .expect("an honest receipt of any strings verifies");
            assert_eq!(v.content, content);
        }
    }
});
