//! The per-connection state machines (CA and Blackboard, with or without
//! admission control and legacy mode) fed a sequence of arbitrary frames,
//! as the reactor would (until it says "close"): never panics, and every
//! frame it sends is a well-formed message. A frame `[0xFE]` stands for a valid SubmitHello with a
//! certificate from this process's CA, so the fuzzer gets past the
//! certificate check to the report (which it cannot MAC).
#![no_main]

use std::sync::{Arc, OnceLock};

use certboard::ca::CertificateAuthority;
use certboard::message::Message;
use certboard::protocol::{ServiceKind, Session, Shared};
use certboard::store::{CertRow, CertStatus, Record, ReportRecord, Storage, StoreError};
use certboard::verify::Verifier;
use libfuzzer_sys::fuzz_target;

mod common;

struct Fixture {
    ca: Arc<CertificateAuthority>,
    verifier: Arc<Verifier>,
    hello: Vec<u8>,
    serial: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = common::throwaway_ca("ss");
        let issued = common::honest_certificate(&ca);
        let hello = Message::SubmitHello {
            sid: "fuzz".into(),
            cert_der: issued.der.clone(),
            chain: vec![],
        }
        .encode();
        Fixture {
            verifier: Arc::new(Verifier::new(ca.cert()).expect("verifier")),
            ca: Arc::new(ca),
            hello,
            serial: issued.serial_hex,
        }
    })
}

/// A store that knows one good certificate and keeps nothing.
struct MemStore {
    good: String,
}

impl Storage for MemStore {
    fn commit(&mut self, _: &[Record]) -> Result<(), StoreError> {
        Ok(())
    }
    fn cert_status(&mut self, serial_hex: &str) -> Result<CertStatus, StoreError> {
        Ok(if serial_hex == self.good {
            CertStatus::Good {
                origin: certboard::store::Origin::Certboard,
            }
        } else {
            CertStatus::Unknown
        })
    }
    fn revoke_serial(&mut self, _: &str, _: &str, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn revoke_sid(&mut self, _: &str, _: &str, _: i64) -> Result<usize, StoreError> {
        Ok(0)
    }
    fn certs(&mut self) -> Result<Vec<CertRow>, StoreError> {
        Ok(vec![])
    }
    fn reports(&mut self) -> Result<Vec<ReportRecord>, StoreError> {
        Ok(vec![])
    }
    fn next_crl_number(&mut self) -> Result<u64, StoreError> {
        Ok(1)
    }
    fn revocations(&mut self) -> Result<Vec<certboard::store::Revocation>, StoreError> {
        Ok(Vec::new())
    }
    fn revocation_mark(&mut self) -> Result<certboard::store::RevocationMark, StoreError> {
        Ok(certboard::store::RevocationMark::default())
    }
    fn check(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let kind = if flags & 1 == 0 {
        ServiceKind::Ca
    } else {
        ServiceKind::Blackboard
    };
    let mut shared = Shared {
        ca: Some(f.ca.clone()),
        verifier: Some(f.verifier.clone()),
        store: Box::new(MemStore {
            good: f.serial.clone(),
        }),
        admission_secret: (flags & 2 != 0).then(|| Arc::new(b"fuzzing admission secret".to_vec())),
        legacy: flags & 4 != 0,
    };
    let (mut session, out) = Session::start(kind, &shared);
    if out.close {
        return;
    }
    // A connection that turned legacy speaks text frames, not our messages.
    let mut legacy_conn = false;
    // Frames: a 2-byte length, then the payload; at most 16 of them.
    for _ in 0..16 {
        if rest.len() < 2 {
            break;
        }
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut payload = &rest[2..2 + n];
        rest = &rest[2 + n..];
        if payload == [0xFE] {
            payload = &f.hello;
        }
        legacy_conn |= shared.legacy && certboard::protocol::legacy::is_command(payload);
        let (next, out) = session.on_frame(payload, &mut shared, "fuzz");
        if !legacy_conn {
            // What the server says must itself be a well-formed message.
            for frame in &out.send {
                assert!(
                    Message::decode(frame).is_ok(),
                    "server sent a malformed message"
                );
            }
        }
        if out.close {
            break;
        }
        session = next;
    }
});
