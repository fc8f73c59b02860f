//! Blackboard's certificate check on arbitrary bytes. Two shapes of input,
//! chosen by the first byte:
//!
//! - raw: a claimed SID, a certificate and up to four chain entries, all
//!   from the input; nothing random may ever be accepted;
//! - edits: byte edits applied to a valid student certificate from this
//!   process's CA, so the parser and the checks see near-valid DER; an
//!   accepted one must still be for the SID claimed.
//!
//! Never panics.
#![cfg_attr(feature = "libfuzzer", no_main)]

use std::sync::OnceLock;

use certboard::verify::Verifier;
use certboard_fuzz::fuzz_target;

mod common;

struct Fixture {
    verifier: Verifier,
    valid: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = common::throwaway_ca("vf");
        let issued = common::honest_certificate(&ca);
        Fixture {
            verifier: Verifier::new(ca.cert()).expect("verifier"),
            valid: issued.der,
        }
    })
}

fn pieces(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while rest.len() >= 2 && out.len() < 5 {
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        out.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    if !rest.is_empty() {
        out.push(rest.to_vec());
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 == 0 {
        let sid_len = usize::from(mode % 40).min(rest.len());
        let (sid, rest) = rest.split_at(sid_len);
        let sid = String::from_utf8_lossy(sid);
        let all = pieces(rest);
        let Some((cert, chain)) = all.split_first() else {
            return;
        };
        let result = f.verifier.verify(&sid, cert, chain);
        assert!(
            result.is_err(),
            "a certificate not from the root was accepted"
        );
    } else {
        // Edits: (2-byte position, xor byte) triples; a position past the
        // end truncates there.
        let mut cert = f.valid.clone();
        for e in rest.chunks_exact(3).take(16) {
            let at = usize::from(u16::from_le_bytes([e[0], e[1]]));
            match cert.get_mut(at) {
                Some(b) => *b ^= e[2],
                None => cert.truncate(at % (cert.len() + 1)),
            }
        }
        let claimed = if mode & 1 == 0 { "fuzz" } else { "other" };
        if let Ok(student) = f.verifier.verify(claimed, &cert, &[]) {
            assert_eq!(student.sid, claimed, "accepted for another SID");
        }
    }
});
